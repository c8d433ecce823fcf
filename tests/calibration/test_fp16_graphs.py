"""FP16 graphs: which nodes stay FP32, the converted graph's interface, and the shipped model's
FP16 graphs through ONNX's reference evaluator (which computes FP16 nodes in FP16)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from calibration.fp16 import convert_to_fp16, sort_nodes
from calibration.precision import build_precision
from calibration.replay import replay
from calibration.sensitive_ops import higher_precision_nodes, output_tail
from export.reference_check import run_reference
from runtime.manifest import load_manifest
from runtime.metrics import psnr


def _session(model: onnx.ModelProto):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_sensitive_nodes_of_a_real_proximal_graph(export_tiny) -> None:
    manifest = load_manifest(export_tiny().artifacts)
    graph = onnx.load(str(manifest.graph_file("stage1_prox"))).graph
    kept = set(higher_precision_nodes(graph))
    by_type = {n.name: n.op_type for n in graph.node}
    assert {by_type[n] for n in kept} >= {"Softmax", "MatMul"}
    assert any("/norm" in n for n in kept)  # channel norms
    tail = output_tail(graph)
    assert any(by_type[n] in ("Conv", "ConvTranspose") for n in tail)  # the last convolution(s)
    # Most convolutions are converted: the islands are the exceptions, not the rule.
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    assert sum(c not in kept for c in convs) > len(convs) // 2


def test_fp16_graph_keeps_float32_io_and_runs_close_to_fp32(export_tiny) -> None:
    manifest = load_manifest(export_tiny().artifacts)
    fp32 = onnx.load(str(manifest.graph_file("stage1_prox")))
    converted = convert_to_fp16(fp32)
    onnx.checker.check_model(converted.model)
    io = [*converted.model.graph.input, *converted.model.graph.output]
    assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in io)
    halves = [i for i in converted.model.graph.initializer if i.data_type == TensorProto.FLOAT16]
    assert halves  # weights really are FP16
    rng = np.random.default_rng(0)
    feeds = {"v": rng.random((1, 3, 32, 48), dtype=np.float32), "z": rng.standard_normal((1, 8), dtype=np.float32)}
    feeds["z"] = rng.standard_normal((1, manifest.prior_dim), dtype=np.float32)
    want = _session(fp32).run(None, feeds)[0]
    got = _session(converted.model).run(None, feeds)[0]
    assert np.isfinite(got).all() and psnr(got, want, data_range=float(np.ptp(want))) > 45


def test_sort_nodes_restores_topological_order() -> None:
    a = helper.make_node("Relu", ["x"], ["a"], name="first")
    b = helper.make_node("Neg", ["a"], ["y"], name="second")
    graph = helper.make_graph(
        [b, a],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    sort_nodes(graph)
    assert [n.name for n in graph.node] == ["first", "second"]


def test_reference_conv_transpose_handles_groups() -> None:
    """onnx's own reference ConvTranspose fails on group > 1; ours must equal ONNX Runtime."""
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)  # 4 in, group 2 -> 6 out
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], group=2, strides=[2, 2], kernel_shape=[2, 2])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((1, 4, 3, 5)).astype(np.float32)
    want = _session(model).run(None, {"x": x})[0]
    got = run_reference(model, {"x": x})[0]
    assert got.shape == want.shape == (1, 6, 6, 10)
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.slow
def test_every_fp16_graph_of_the_shipped_model_passes_the_reference_evaluator(
    edge_export, shared_data: Path, tmp_path: Path
) -> None:
    """At 256x256, on the inputs a real noisy photo produces, every FP16
    graph computed in FP16 by the reference evaluator has no NaN/Inf and >= 45 dB against FP32."""
    from model.degradations import apply_case
    from runtime.image_io import read_image

    root = tmp_path / "art"
    shutil.copytree(edge_export.artifacts, root)
    manifest = load_manifest(root)
    clean = read_image(shared_data / "val" / "CBSD68" / "101085.png").rgb[:256, :256]
    noisy = apply_case(clean, "noise25", seed=0)
    records, _ = replay(manifest, [noisy], threads=None, progress=False)
    for graph in manifest.graphs_in_use():
        fp32 = onnx.load(str(manifest.graph_file(graph)))
        fp16 = convert_to_fp16(fp32).model
        feeds = records[graph][0]
        want = _session(fp32).run(None, feeds)[0]
        got = run_reference(fp16, feeds)[0]
        assert np.isfinite(got).all(), graph
        score = psnr(got.astype(np.float32), want, data_range=float(np.ptp(want)))
        assert score >= 45.0, (graph, score)


def test_fp16_variants_are_recorded_with_their_fp32_islands(export_tiny, tmp_path: Path) -> None:
    from calibration.sources import BUILTIN_HELDOUT, load_frames

    root = tmp_path / "art"
    shutil.copytree(export_tiny().artifacts, root)
    rows = build_precision(root, fp16_heldout=load_frames(BUILTIN_HELDOUT, 1, (48, 64)), threads=1, progress=False).fp16
    assert rows is not None
    manifest = load_manifest(root)
    for row in rows:
        variant = manifest.graphs[row.graph].variants.get("fp16")
        assert row.accepted == (variant is not None)
        if variant is not None:
            assert variant.parent_sha256 == manifest.graphs[row.graph].variants["fp32"].onnx.sha256
            assert len(variant.kept_higher) == row.kept_fp32 > 0
            assert variant.psnr_vs_fp32_db is not None and variant.psnr_vs_fp32_db >= 45
            assert (root / variant.onnx.path).is_file()
    assert any(r.accepted for r in rows)
    assert not math.isnan(rows[0].min_psnr_db)
