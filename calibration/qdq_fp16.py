"""TensorRT's INT8 graph in FP16: the Q/DQ graph converted like the FP16 variant, Q/DQ kept FP32.

TensorRT 10 and 11 build the Q/DQ graph strongly typed (docs/PRECISION.md, "Engines"): a layer
computes in the type the graph gives it. A Q/DQ graph made from the FP32 graph therefore runs
every layer but the quantized convolutions in FP32, where TensorRT 8.6 (weakly typed, FP16 flag)
ran them in FP16. So the `int8` flavour is the FP16 variant with the same Q/DQ pairs in it:

- the scales come from calibration on the FP32 graph (calibration/qdq.py quantizes the FP32
  graph first), so they do not depend on FP16 rounding;
- the Q/DQ graph is then converted by calibration/fp16.py with the FP16 variant's FP32 islands
  (the manifest's `kept_higher` of `fp16`) and every QuantizeLinear / DequantizeLinear kept in
  FP32: opset 17's QuantizeLinear takes float32 input only (float16 from opset 19), and
  JetPack 6.0's TensorRT 8.6 wants opset <= 17. The converter wraps each pair in Casts:
  FP16 tensor -> Cast(float) -> Q -> DQ -> Cast(float16) -> Conv, and weights likewise
  (int8 initializer -> DQ -> Cast(float16) -> Conv); a DQ output an FP32 island reads reaches
  it through the converter's Casts, exactly as that tensor does in the FP16 variant.

Every node outside the islands then computes in FP16 in the graph itself, the same graph for
TensorRT 8.6, 10 and 11; ONNX Runtime runs it as it is (the accuracy gate). That TensorRT fuses
the Casts into the quantized convolutions has not been measured here (no TensorRT).
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from calibration.fp16 import convert_to_fp16

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def qdq_in_fp16(qdq: onnx.ModelProto, islands: Sequence[str]) -> onnx.ModelProto:
    """The Q/DQ graph `qdq` (made from an FP32 graph) in float16 outside `islands` (node names
    kept FP32) and its Q/DQ nodes; float32 inputs and outputs, opset unchanged."""
    pairs = [node.name for node in qdq.graph.node if node.op_type in QDQ_OPS]
    converted = convert_to_fp16(qdq, extra_fp32=pairs, islands=islands).model
    onnx.checker.check_model(converted)
    return converted
