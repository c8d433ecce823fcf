"""Q/DQ INT8 per graph with ONNX Runtime's static quantizer, in two flavours.

- `int8`: symmetric INT8 activations and weights, zero points 0, per-channel weights. This is
  the graph TensorRT gets (TensorRT supports symmetric quantization only). Given the graph's
  FP16 islands (`fp16_islands`), it is then converted to FP16 around its Q/DQ pairs
  (calibration/qdq_fp16.py), so that TensorRT runs the layers between convolutions in FP16.
- `int8-cpu`: uint8 activations (asymmetric) with per-channel int8 weights, the combination
  ONNX Runtime's x86 kernels are fastest with. Always FP32 around its Q/DQ pairs: ONNX Runtime's
  CPU provider gains nothing from FP16.

Only convolutions are quantized; the nodes calibration/sensitive_ops.py keeps at full precision
(norms, softmax, matmuls, the decomposed path, the output tail) are excluded by name. Each
float/INT8 boundary costs a full-frame (De)QuantizeLinear, so INT8 only pays on the CPU where
long runs of convolutions stay quantized: the speed measurement decides, not this module.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path

from calibration.qdq_fp16 import qdq_in_fp16
from calibration.replay import GraphFeeds
from calibration.sensitive_ops import higher_precision_nodes
from runtime.atomic_io import atomic_target
from runtime.errors import CalibrationError

log = logging.getLogger(__name__)

FLAVOURS = ("int8", "int8-cpu")
METHODS = ("minmax", "percentile", "entropy")
QUANTIZED_OPS = ("Conv",)
# TensorRT's ONNX parser takes DequantizeLinear of activation types only: the quantizer's default
# int32 bias (and, on 8.x, int8 weight initializers) feeding a DequantizeLinear fail to parse
# ("only activation types allowed as input to this layer"). For TensorRT's flavour the bias
# stays float and each weight is a float initializer through a Q/DQ pair, the form NVIDIA's own
# quantization tools export; TensorRT folds it into INT8 weights at build time.
TENSORRT_LAYOUT = {"QuantizeBias": False, "AddQDQPairToWeight": True}


def quantize_graph(
    fp32_path: Path,
    out_path: Path,
    feeds: Sequence[GraphFeeds],
    flavour: str,
    method: str = "minmax",
    extra_excluded: Sequence[str] = (),
    fp16_islands: Sequence[str] | None = None,
) -> tuple[str, ...]:
    """Write the `flavour` Q/DQ graph of `fp32_path` to `out_path` (atomically), calibrated on
    `feeds`; returns the names of the nodes left unquantized by rule. With `fp16_islands` (the
    FP16 variant's FP32 nodes; `int8` only) the graph is FP16 outside them and the Q/DQ pairs;
    the scales are still calibrated on the FP32 graph."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if flavour not in FLAVOURS:
        raise CalibrationError(f"unknown INT8 flavour {flavour!r} (use one of {', '.join(FLAVOURS)})")
    if method not in METHODS:
        raise CalibrationError(f"unknown calibration method {method!r} (use one of {', '.join(METHODS)})")
    if not feeds:
        raise CalibrationError(f"{fp32_path.name}: no recorded inputs to calibrate on")
    if fp16_islands is not None and flavour != "int8":
        raise CalibrationError(f"the {flavour} flavour stays FP32 around its Q/DQ pairs (only int8 is for TensorRT)")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(feeds)

        def get_next(self) -> GraphFeeds | None:
            return next(self._feeds, None)

    excluded = tuple(higher_precision_nodes(onnx.load(str(fp32_path), load_external_data=False).graph))
    excluded += tuple(n for n in extra_excluded if n not in excluded)
    symmetric = flavour == "int8"
    calibrate_method = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[method]
    # ONNX Runtime's calibrators print their progress ("Collecting tensor data ...") to stdout;
    # it goes to the debug log instead, so the tools show it under -v only.
    chatter = io.StringIO()
    with atomic_target(out_path, suffix=".onnx") as tmp, contextlib.redirect_stdout(chatter):
        quantize_static(
            str(fp32_path),
            str(tmp),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(excluded),
            calibrate_method=calibrate_method,
            extra_options={
                "ActivationSymmetric": symmetric,
                "WeightSymmetric": True,
                **(TENSORRT_LAYOUT if symmetric else {}),
            },
        )
        if fp16_islands is not None:
            onnx.save(qdq_in_fp16(onnx.load(str(tmp)), fp16_islands), str(tmp))
    for line in chatter.getvalue().splitlines():
        log.debug("%s: %s", fp32_path.name, line)
    return excluded


def count_quantize_nodes(path: Path) -> int:
    """How many QuantizeLinear nodes a graph holds (0 means nothing was quantized)."""
    import onnx

    return sum(1 for node in onnx.load(str(path)).graph.node if node.op_type == "QuantizeLinear")
