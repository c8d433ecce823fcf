"""Run a graph through ONNX's reference evaluator, which computes every node in the dtype the
graph says. ONNX Runtime's CPU provider may run FP16 nodes in FP32 and so hide an overflow; the
reference evaluator does not, so FP16 graphs are checked with it.

onnx 1.23's reference ConvTranspose mishandles `group > 1` (it reshapes the weight as if the
group count divided the output channels, and fails on the Haar branch's grouped up-sampling),
so a corrected ConvTranspose replaces it here. It keeps the input dtype, like the original.
Its DequantizeLinear starts at opset 19, so the Q/DQ graphs (opset 17) get opset 19's operator,
which computes the same for the int8 and int32 inputs they hold (19 added float8 types and
float16 scales).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun
from onnx.reference.ops.op_dequantize_linear import DequantizeLinear_19


class GroupedConvTranspose(OpRun):
    """ConvTranspose for 2-D NCHW with groups, strides, dilations, pads and output padding."""

    op_domain = ""

    def _run(  # noqa: PLR0913 - the operator's attributes
        self,
        x,
        w,
        b=None,
        auto_pad=None,
        dilations=None,
        group=None,
        kernel_shape=None,
        output_padding=None,
        output_shape=None,
        pads=None,
        strides=None,
    ):
        if x.ndim != 4 or (auto_pad not in (None, "NOTSET")) or output_shape:
            raise NotImplementedError("this reference ConvTranspose handles 2-D, explicit pads only")
        group = group or 1
        sh, sw = strides or (1, 1)
        dh, dw = dilations or (1, 1)
        top, left, bottom, right = pads or (0, 0, 0, 0)
        oph, opw = output_padding or (0, 0)
        n, cin, h, wd = x.shape
        _, cout_g, kh, kw = w.shape
        cin_g = cin // group
        full_h = (h - 1) * sh + (kh - 1) * dh + 1 + oph
        full_w = (wd - 1) * sw + (kw - 1) * dw + 1 + opw
        out = np.zeros((n, cout_g * group, full_h, full_w), dtype=x.dtype)
        for g in range(group):
            xg = x[:, g * cin_g : (g + 1) * cin_g]
            wg = w[g * cin_g : (g + 1) * cin_g]
            for i in range(kh):
                for j in range(kw):
                    contrib = np.einsum("nchw,co->nohw", xg, wg[:, :, i, j]).astype(x.dtype)
                    rows = slice(i * dh, i * dh + (h - 1) * sh + 1, sh)
                    cols = slice(j * dw, j * dw + (wd - 1) * sw + 1, sw)
                    out[:, g * cout_g : (g + 1) * cout_g, rows, cols] += contrib
        out = out[:, :, top : full_h - bottom, left : full_w - right]
        if b is not None:
            out = out + b.reshape(1, -1, 1, 1).astype(x.dtype)
        return (out,)


GroupedConvTranspose.__name__ = "ConvTranspose"  # the evaluator matches new ops by class name


class DequantizeLinear(DequantizeLinear_19):
    """DequantizeLinear for the opsets before 19 (see the module docstring)."""

    op_domain = ""

    def _run(self, x, x_scale, x_zero_point=None, axis=1, block_size=0, output_dtype=None):
        # The evaluator passes the newest schema's attributes; an opset 17 graph leaves them unset.
        if block_size or output_dtype:
            raise NotImplementedError("blocked or typed DequantizeLinear needs opset 21 or later")
        return super()._run(x, x_scale, x_zero_point, axis)


def run_reference(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """All outputs of `model` on `feeds`, computed by the ONNX reference evaluator."""
    evaluator = ReferenceEvaluator(model, new_ops=[GroupedConvTranspose, DequantizeLinear])
    return list(evaluator.run(None, dict(feeds)))
