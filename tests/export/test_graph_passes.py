"""export/graph_passes.py: channel means rewritten as 1x1 convolutions, with the same results."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from export.graph_passes import channel_mean_as_conv
from runtime.manifest import load_manifest


def _norm_graph(opset: int) -> onnx.ModelProto:
    """x - mean_c(x), then mean_c of the square: the pattern ChannelNorm exports to."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6, "height", "width"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1, "height", "width"])
    if opset >= 18:
        axes = [helper.make_node("Constant", [], ["axes"], value=helper.make_tensor("a", TensorProto.INT64, [1], [1]))]
        mean = helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=1)
        var = helper.make_node("ReduceMean", ["sq", "axes"], ["y"], keepdims=1)
    else:
        axes = []
        mean = helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1)
        var = helper.make_node("ReduceMean", ["sq"], ["y"], axes=[1], keepdims=1)
    other = helper.make_node("ReduceMean", ["x"], ["unused"], axes=[2, 3], keepdims=1) if opset < 18 else None
    nodes = [*axes, mean, helper.make_node("Sub", ["x", "m"], ["c"]), helper.make_node("Mul", ["c", "c"], ["sq"]), var]
    if other is not None:
        nodes.append(other)
    graph = helper.make_graph(nodes, "norm", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [17, 18])
def test_channel_means_become_convolutions_with_the_same_result(opset: int) -> None:
    model = _norm_graph(opset)
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert channel_mean_as_conv(model) == 2
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 2 and ops.count("ReduceMean") == (1 if opset < 18 else 0)  # axes (2, 3) stay
    assert "Constant" not in ops  # the opset-18 axes constant went with its ReduceMean nodes
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 6, 5, 7), dtype=np.float32)
    np.testing.assert_allclose(after.run(None, {"x": x})[0], before.run(None, {"x": x})[0], atol=1e-6)


def test_exported_graphs_carry_the_rewrite(tiny_export) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    assert "channel_mean_as_conv" in manifest.exporter
    proto = onnx.load(str(manifest.graph_file("stage1_prox")))
    assert any(n.name.endswith("_as_conv") for n in proto.graph.node)
    for node in proto.graph.node:
        if node.op_type == "ReduceMean":
            axes = [list(a.ints) for a in node.attribute if a.name == "axes"]
            assert axes != [[1]], node.name
