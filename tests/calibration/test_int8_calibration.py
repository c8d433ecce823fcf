"""INT8 calibration: Q/DQ graphs, the accuracy gate, the manifest's plans; the shipped model's gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from calibration.int8 import CalibrationReport, Int8Settings
from calibration.precision import build_precision
from calibration.sources import BUILTIN, BUILTIN_HELDOUT, CalibrationFrame, load_frames
from runtime.errors import CalibrationError
from runtime.manifest import load_manifest
from runtime.pipeline import Pipeline


def _zero_point_types(path: Path) -> set[int]:
    """Element types of the QuantizeLinear zero points of a graph (int8 or uint8)."""
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    types = set()
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2:
            types.add(inits[node.input[2]].data_type)
    return types


def _symmetric_zero_points(path: Path) -> bool:
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    points = [numpy_helper.to_array(inits[n.input[2]]) for n in model.graph.node if n.op_type == "QuantizeLinear"]
    return bool(points) and all(np.all(p == 0) for p in points)


@pytest.fixture()
def tiny_artifacts(export_tiny, tmp_path: Path) -> Path:
    root = tmp_path / "art"
    shutil.copytree(export_tiny().artifacts, root)
    return root


def _small(source: str, count: int) -> list[CalibrationFrame]:
    return load_frames(source, count, (48, 64), seed=0)


def calibrate_artifacts(root: Path, calibration, heldout, source: str, threads=None, progress=True, **options):
    """The precision step with INT8 only (FP16 variants kept), as calibration/calibrate.py runs it."""
    settings = Int8Settings(calibration, heldout, source, **options)
    report = build_precision(root, int8=settings, threads=threads, progress=progress).int8
    assert isinstance(report, CalibrationReport)
    return report


def test_calibration_writes_both_flavours_a_report_and_plans(tiny_artifacts: Path) -> None:
    report = calibrate_artifacts(
        tiny_artifacts, _small(BUILTIN, 3), _small(BUILTIN_HELDOUT, 2), "builtin", method="minmax",
        gate_db=10.0, graph_screen_db=10.0, max_gt_loss_db=30.0, threads=1, progress=False,
    )  # fmt: skip
    manifest = load_manifest(tiny_artifacts)  # verifies every sha256
    assert manifest.calibration is not None and manifest.calibration.frames == 3
    saved = json.loads((tiny_artifacts / manifest.calibration.report.path).read_text())
    assert set(saved["graphs"]) == set(manifest.graphs_in_use())
    int8_graphs = [g for g, e in manifest.graphs.items() if "int8" in e.variants]
    assert int8_graphs and sorted(int8_graphs) == list(manifest.calibration.graphs)
    for graph in int8_graphs:
        variants = manifest.graphs[graph].variants
        assert variants["int8"].parent_sha256 == variants["fp32"].onnx.sha256
        assert variants["int8"].kept_higher and variants["int8"].checked_on.startswith("2 held-out frames")
        assert _zero_point_types(manifest.graph_file(graph, "int8")) == {TensorProto.INT8}
        assert _symmetric_zero_points(manifest.graph_file(graph, "int8"))
        if "int8-cpu" in variants:
            assert _zero_point_types(manifest.graph_file(graph, "int8-cpu")) == {TensorProto.UINT8}
    assert report.plans["tensorrt/cuda"] == {g: "int8" for g in int8_graphs}
    for plan in report.plans.values():
        assert all(p in manifest.graphs[g].variants for g, p in plan.items())
    # The runtime runs what the plan names.
    frame = _small(BUILTIN_HELDOUT, 1)[0].image
    with Pipeline.from_manifest(tiny_artifacts, "onnxruntime", "cpu", precision="int8", threads=1) as pipeline:
        assert {pipeline.backend.graph_precision(g) for g in int8_graphs} <= {"int8", "int8-cpu"}
        assert np.isfinite(pipeline.restore(frame)).all()


def test_a_gate_nothing_can_pass_leaves_no_int8_behind(tiny_artifacts: Path) -> None:
    first = calibrate_artifacts(
        tiny_artifacts, _small(BUILTIN, 2), _small(BUILTIN_HELDOUT, 1), "builtin", method="minmax",
        gate_db=10.0, graph_screen_db=10.0, max_gt_loss_db=30.0, threads=1, progress=False,
    )  # fmt: skip
    assert first.int8_pipeline is not None
    report = calibrate_artifacts(
        tiny_artifacts, _small(BUILTIN, 2), _small(BUILTIN_HELDOUT, 1), "builtin", method="minmax",
        gate_db=150.0, graph_screen_db=150.0, threads=1, progress=False,
    )  # fmt: skip
    manifest = load_manifest(tiny_artifacts)
    assert report.int8_pipeline is None and manifest.calibration.graphs == ()
    assert not any("int8" in e.variants or "int8-cpu" in e.variants for e in manifest.graphs.values())
    assert not list((tiny_artifacts / "graphs").glob("*.int8*.onnx"))  # the first run's files are gone too
    assert all(r.level is None and r.note for r in report.graphs.values())
    assert "tensorrt/cuda" not in manifest.auto_precision or all(
        p == "fp16" for p in manifest.auto_precision["tensorrt/cuda"].values()
    )


def test_calibration_refuses_empty_frame_lists(tiny_artifacts: Path) -> None:
    with pytest.raises(CalibrationError, match="no calibration frames"):
        calibrate_artifacts(tiny_artifacts, [], _small(BUILTIN_HELDOUT, 1), "x", progress=False)
    with pytest.raises(CalibrationError, match="held-out"):
        calibrate_artifacts(tiny_artifacts, _small(BUILTIN, 1), [], "x", progress=False)


@pytest.mark.slow
def test_shipped_model_int8_pipeline_passes_the_gate_on_real_photos(
    edge_export, shared_data: Path, tmp_path: Path
) -> None:
    """Calibrated on the built-in photos, checked on CBSD68 photos never
    used for calibration (Gaussian noise 25): the symmetric INT8 pipeline is >= 40 dB against
    FP32 and loses <= 0.3 dB against ground truth, and a proximal graph ships INT8 with Q/DQ."""
    from model.degradations import apply_case
    from runtime.image_io import list_images, read_image

    root = tmp_path / "art"
    shutil.copytree(edge_export.artifacts, root)
    heldout = []
    for i, path in enumerate(list_images(shared_data / "val" / "CBSD68")[::17]):  # 4 photos across the set
        clean = read_image(path).rgb[:256, :256]
        heldout.append(CalibrationFrame(path.name, apply_case(clean, "noise25", seed=i), clean))
    report = calibrate_artifacts(root, load_frames(BUILTIN, 8, (256, 256), seed=0), heldout, "builtin", progress=False)
    accuracy = report.int8_pipeline
    assert accuracy is not None and accuracy.finite
    assert accuracy.psnr_vs_fp32_db >= 40.0
    assert accuracy.gt_loss_db is not None and accuracy.gt_loss_db <= 0.3
    manifest = load_manifest(root)
    proximal = [g for g, e in manifest.graphs.items() if e.role == "proximal" and "int8" in e.variants]
    assert proximal, report.notes
    for graph in proximal:
        assert _symmetric_zero_points(manifest.graph_file(graph, "int8"))
