"""runtime/backends/openvino_backend.py: parity with ONNX Runtime, the backend contract, threads,
precision, a missing package, and the restore CLI on a real photo."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.backends.select import candidate_order, create_backend
from runtime.errors import BackendUnavailable, InputError, ManifestError, ShapeError
from runtime.manifest import MANIFEST_NAME, load_manifest, sha256_file
from runtime.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[2]


def _feeds(manifest, graph: str, height: int, width: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for `graph` at one batch item of height x width."""
    rng = np.random.default_rng(seed)
    sizes = {"batch": 1, "height": height, "width": width}
    feeds = {}
    for spec in manifest.graph(graph).inputs:
        shape = tuple(sizes.get(d, d) if isinstance(d, str) else d for d in spec.shape)
        if spec.dtype == "int64":
            feeds[spec.name] = np.zeros(shape, np.int64)
        else:
            feeds[spec.name] = rng.random(shape, dtype=np.float32)
    return feeds


@pytest.fixture(scope="module")
def opened(tiny_export):
    """The tiny model opened on OpenVINO and on ONNX Runtime, one thread each."""
    manifest = load_manifest(tiny_export.artifacts)
    with (
        create_backend("openvino", manifest, "cpu", threads=1) as ov,
        create_backend("onnxruntime", manifest, "cpu", threads=1) as ort,
    ):
        yield manifest, ov, ort


def test_every_graph_matches_onnxruntime(opened) -> None:
    manifest, ov, ort = opened
    for graph in manifest.graphs_in_use():
        feeds = _feeds(manifest, graph, 24, 36)
        got, want = ov.run(graph, feeds), ort.run(graph, feeds)
        assert sorted(got) == sorted(want)
        for name in want:
            assert got[name].shape == want[name].shape and got[name].dtype == want[name].dtype
            assert np.abs(got[name] - want[name]).max() <= 1e-4, (graph, name)


def test_the_pipeline_matches_onnxruntime_at_an_odd_size(tiny_export) -> None:
    frame = np.random.default_rng(3).random((37, 53, 3), dtype=np.float32)
    restored = {}
    for backend in ("openvino", "onnxruntime"):
        with Pipeline.from_manifest(tiny_export.artifacts, backend=backend, device="cpu", threads=1) as pipeline:
            assert pipeline.backend.name == backend
            restored[backend] = pipeline.restore(frame)
    assert restored["openvino"].shape == frame.shape and restored["openvino"].dtype == np.float32
    assert np.abs(restored["openvino"] - restored["onnxruntime"]).max() <= 1e-4


def test_each_shape_is_compiled_once_and_kept(opened) -> None:
    manifest, ov, _ = opened
    graph = manifest.graphs_in_use()[0]
    for _ in range(2):
        ov.run(graph, _feeds(manifest, graph, 16, 20))
    ov.run(graph, _feeds(manifest, graph, 20, 16))
    shapes = ov.compiled_shapes(graph)
    assert shapes.count(((1, 3, 16, 20), (1, 3, 16, 20))) == 1
    assert shapes[-1] == ((1, 3, 20, 16), (1, 3, 20, 16))


def test_bad_inputs_are_refused_before_openvino_sees_them(opened) -> None:
    manifest, ov, _ = opened
    feeds = _feeds(manifest, "stage1_gd", 16, 16)
    with pytest.raises(ShapeError, match="must be float32, got float64"):
        ov.run("stage1_gd", {**feeds, "x": feeds["x"].astype(np.float64)})
    with pytest.raises(ShapeError, match=r"has shape \[1, 4, 16, 16\]"):
        four = np.zeros((1, 4, 16, 16), np.float32)
        ov.run("stage1_gd", {"x": four, "y": four})
    with pytest.raises(ShapeError, match="height 17 must be a multiple of 2"):
        odd = np.zeros((1, 3, 17, 16), np.float32)
        ov.run("stage1_gd", {"x": odd, "y": odd})
    with pytest.raises(ShapeError, match=r"takes inputs \['x', 'y'\]"):
        ov.run("stage1_gd", {"x": feeds["x"]})


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_are_what_openvino_compiles_with(tiny_export, threads: int) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    with create_backend("openvino", manifest, "cpu", threads=threads) as ov:
        ov.run("stage1_gd", _feeds(manifest, "stage1_gd", 16, 16))
        assert ov.inference_threads("stage1_gd") == threads


def test_precision_follows_the_manifest_and_refuses_missing_variants(tiny_export) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    backend = create_backend("openvino", manifest, "cpu", precision="auto")
    assert backend.target == "openvino/cpu"
    assert set(backend.precision_plan().values()) == {"fp32"}  # no openvino/cpu plan in this manifest
    if all("int8" not in manifest.graph(g).variants for g in manifest.graphs_in_use()):
        with pytest.raises(ManifestError, match="precision int8 was asked for, but there is no int8 variant"):
            create_backend("openvino", manifest, "cpu", precision="int8").open()


def test_int8_prefers_the_uint8_activation_flavour_unless_planned(tiny_export) -> None:
    """The variants point at the FP32 files: only the choice of variant is under test here."""
    manifest = load_manifest(tiny_export.artifacts)
    graphs = dict(manifest.graphs)
    first, second = manifest.graphs_in_use()[:2]
    for name, flavours in ((first, ("int8", "int8-cpu")), (second, ("int8",))):
        fp32 = graphs[name].variants["fp32"]
        extra = {f: dataclasses.replace(fp32, precision=f) for f in flavours}
        graphs[name] = dataclasses.replace(graphs[name], variants={**graphs[name].variants, **extra})
    manifest = dataclasses.replace(manifest, graphs=graphs)
    backend = create_backend("openvino", manifest, "cpu", precision="int8")
    assert (backend.graph_precision(first), backend.graph_precision(second)) == ("int8-cpu", "int8")
    planned = dataclasses.replace(manifest, auto_precision={"openvino/cpu": {first: "int8"}})
    assert create_backend("openvino", planned, "cpu", precision="int8").graph_precision(first) == "int8"


def test_a_graph_openvino_cannot_read_or_of_another_model_is_refused_at_open(
    tiny_export, export_tiny, tmp_path: Path
) -> None:
    other = export_tiny(share_stage_weights=True, stages=3, prior_dim=8)
    for name, content in (("garbage", b"not an onnx graph"), ("other", None)):
        out = tmp_path / name
        shutil.copytree(tiny_export.artifacts, out)
        graph = out / "graphs" / "prior.fp32.onnx"
        if content is None:
            shutil.copy(other.artifacts / "graphs" / "prior.fp32.onnx", graph)
        else:
            graph.write_bytes(content)
        data = json.loads((out / MANIFEST_NAME).read_text())
        data["graphs"]["prior"]["variants"]["fp32"]["onnx"]["sha256"] = sha256_file(graph)
        (out / MANIFEST_NAME).write_text(json.dumps(data))
        expected = "OpenVINO cannot read this graph" if content else "'noise' dimension 1 is 8 in the graph but 16"
        with pytest.raises(ManifestError, match=expected):
            Pipeline.from_manifest(out, backend="openvino", device="cpu", threads=1)


def test_a_missing_openvino_is_one_clear_line(tiny_export, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with pytest.raises(BackendUnavailable) as caught:
        Pipeline.from_manifest(tiny_export.artifacts, backend="openvino", device="cpu")
    assert str(caught.value) == "openvino on cpu: openvino is not installed (pip install openvino)"


def test_openvino_runs_on_the_cpu_only() -> None:
    assert candidate_order(["openvino"], None) == [("openvino", "cpu")]
    with pytest.raises(InputError, match="the openvino backend needs --device cpu"):
        candidate_order(["openvino"], "cuda")


def test_restore_cli_restores_a_real_photo_on_openvino(tiny_export, shared_data: Path, tmp_path: Path) -> None:
    source = sorted((shared_data / "val" / "CBSD68").glob("*.png"))[0]
    target = tmp_path / "restored.png"
    result = subprocess.run(
        [sys.executable, "runtime/restore.py", str(source), "-o", str(target),
         "--artifacts", str(tiny_export.artifacts), "--backend", "openvino", "--threads", "1", "-q"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    original = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
    restored = cv2.imread(str(target), cv2.IMREAD_UNCHANGED)
    assert restored is not None and restored.shape == original.shape and restored.dtype == original.dtype
