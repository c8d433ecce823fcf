"""Exact rewrites of exported ONNX graphs that make them faster to run; the parity check
against PyTorch runs on the rewritten graph.

`channel_mean_as_conv`: the model's channel LayerNorm (`ChannelNorm`, written out so it exports
without transposes) becomes two ReduceMean nodes over axis 1 of an NCHW tensor. ONNX Runtime's
CPU provider reduces over a strided axis slowly, and each of these nodes also forces layout
reorders around the neighbouring blocked (NCHWc) convolutions. A mean over C channels is a
1x1 convolution with C weights equal to 1/C, which runs as one GEMM and keeps the blocked
layout. The result is the same up to float summation order (a few ulp).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _reduce_axes(node: onnx.NodeProto, graph: onnx.GraphProto) -> list[int] | None:
    """Axes of a ReduceMean: an attribute up to opset 17, a constant second input from 18."""
    for attr in node.attribute:
        if attr.name == "axes":
            return list(attr.ints)
    if len(node.input) < 2 or not node.input[1]:
        return None
    name = node.input[1]
    for init in graph.initializer:
        if init.name == name:
            return [int(a) for a in numpy_helper.to_array(init).ravel()]
    for other in graph.node:
        if other.op_type == "Constant" and name in other.output:
            for attr in other.attribute:
                if attr.name == "value":
                    return [int(a) for a in numpy_helper.to_array(attr.t).ravel()]
    return None


def _keepdims(node: onnx.NodeProto) -> bool:
    for attr in node.attribute:
        if attr.name == "keepdims":
            return bool(attr.i)
    return True


def channel_mean_as_conv(model: onnx.ModelProto) -> int:
    """Rewrite in place every ReduceMean over axis 1 (keepdims) of a 4-D tensor whose channel
    count is known as a 1x1 Conv; returns how many nodes were rewritten."""
    inferred = onnx.shape_inference.infer_shapes(model)
    channels: dict[str, int] = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input):
        tensor = value.type.tensor_type
        dims = tensor.shape.dim
        if tensor.elem_type == onnx.TensorProto.FLOAT and len(dims) == 4 and dims[1].HasField("dim_value"):
            channels[value.name] = dims[1].dim_value
    graph = model.graph
    rewritten, nodes, dropped_axes = 0, [], set()
    for node in graph.node:
        axes = _reduce_axes(node, graph) if node.op_type == "ReduceMean" else None
        count = channels.get(node.input[0]) if node.input else None
        if axes in ([1], [-3]) and _keepdims(node) and count:
            weight = f"{node.output[0]}__channel_mean_weight"
            graph.initializer.append(
                numpy_helper.from_array(np.full((1, count, 1, 1), 1.0 / count, np.float32), weight)
            )
            nodes.append(
                helper.make_node(
                    "Conv", [node.input[0], weight], list(node.output), name=f"{node.name or node.output[0]}_as_conv"
                )
            )
            rewritten += 1
            dropped_axes.update(node.input[1:2])
        else:
            nodes.append(node)
    # Opset 18+: drop the axes constants that only the rewritten nodes read.
    read = {name for node in nodes for name in node.input}
    nodes = [
        n for n in nodes if not (n.op_type == "Constant" and set(n.output) <= dropped_axes and not set(n.output) & read)
    ]
    unused = [init for init in graph.initializer if init.name not in read and init.name in dropped_axes]
    for init in unused:
        graph.initializer.remove(init)
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten
