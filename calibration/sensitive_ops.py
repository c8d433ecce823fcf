"""Which nodes of a graph stay in higher precision, for FP16 conversion and INT8 quantization alike.

Every rule of what a reduced-precision variant keeps at full precision lives here
(docs/ARCHITECTURE.md, "Precision"): the ONNX nodes below, used by calibration/fp16.py and
calibration/qdq.py, and the TensorRT layer types that weakly typed FP16 engines pin to FP32.

Kept:

- channel norms (every node under a `/norm` scope): mean and variance over channels, then a
  division by the standard deviation; the variance of small activations underflows in FP16 and
  is badly resolved in INT8;
- softmax, reductions (ReduceMean / ReduceL2), square roots and every MatMul: the attention
  matmuls sum over all pixels of a frame, which overflows FP16's 65504 at 720p, and the
  decomposed degradation path's W X M products do the same over rows and columns;
- the decomposed degradation path as a whole (`/rows/`, `/cols/` scopes, AveragePool, Resize)
  and the step sizes (Softplus), as the design asks;
- the output tail of every graph: the nodes between the last convolution(s) and the graph
  output, those convolutions included, so the residual `v + r` that carries the image is added
  at full precision (8-bit images need all of FP16's ~3 decimal digits).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: export/build_engines.py --from-artifacts runs without onnx
    import onnx

# trt.LayerType member names pinned to FP32 in weakly typed FP16 engines (export/trt_builder.py):
# the same norms, softmax and reductions as the ONNX rule, as TensorRT names its layers.
TENSORRT_FP32_LAYER_TYPES = ("NORMALIZATION", "SOFTMAX", "REDUCE")

KEEP_OP_TYPES = frozenset(
    {"Softmax", "ReduceMean", "ReduceL2", "ReduceSum", "MatMul", "Sqrt", "AveragePool", "Resize", "Softplus"}
)
KEEP_SCOPES = ("/norm", "/rows/", "/cols/")
# Elementwise ops that may sit between the last convolution and the output.
_TAIL_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Clip", "Identity", "Neg"})
_CONV_OPS = frozenset({"Conv", "ConvTranspose", "Gemm"})


def output_tail(graph: onnx.GraphProto) -> set[str]:
    """Names of the nodes from the graph outputs back to (and including) the last convolutions,
    following only elementwise ops."""
    producer = {out: node for node in graph.node for out in node.output}
    tail: set[str] = set()
    stack = [o.name for o in graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in tail or node.op_type == "Constant":
            continue
        if node.op_type in _CONV_OPS:
            tail.add(node.name)
            continue
        if node.op_type in _TAIL_OPS:
            tail.add(node.name)
            stack.extend(node.input)
    return tail


def higher_precision_nodes(graph: onnx.GraphProto) -> list[str]:
    """The nodes kept at full precision (see the module docstring), in graph order."""
    tail = output_tail(graph)
    keep = []
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        if node.op_type in KEEP_OP_TYPES or node.name in tail or any(s in node.name for s in KEEP_SCOPES):
            keep.append(node.name)
    return keep


def check_node_names(graph: onnx.GraphProto) -> None:
    """Precision tools select nodes by name, so names must exist and be unique."""
    names = [n.name for n in graph.node]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise ValueError("every node needs a unique name before precision conversion")
