"""runtime/: backends, fallback order, the pipeline with padding and tiling, import hygiene."""

from __future__ import annotations

import ast
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from runtime.backends.select import DEFAULT_ORDER, candidate_order, create_backend, open_backend
from runtime.errors import BackendUnavailable, InputError, ManifestError, ShapeError
from runtime.manifest import MANIFEST_NAME, load_manifest, sha256_file
from runtime.pipeline import Pipeline, pad_nchw, padded_size, sampler_noise
from runtime.tiling import Blender, plan_tiles, tile_starts

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)


def _reference(exported, frame: np.ndarray) -> np.ndarray:
    """PyTorch eager on the reflect-padded frame, cropped and clipped: what the pipeline must give."""
    manifest = load_manifest(exported.artifacts, verify=False)
    h, w, _ = frame.shape
    ph, pw = padded_size(h, w, manifest.pad_multiple, manifest.min_size)
    y = pad_nchw(np.ascontiguousarray(frame.transpose(2, 0, 1))[None], ph, pw)
    noise = torch.from_numpy(sampler_noise(manifest))
    with torch.no_grad():
        out = exported.model(torch.from_numpy(y), noise)
    return out[0, :, :h, :w].clamp(0, 1).permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def pipelines(tiny_export):
    """One open pipeline per backend, shared by the parity tests (loading programs takes seconds)."""
    torch.set_num_threads(1)
    opened = {
        b: Pipeline.from_manifest(tiny_export.artifacts, backend=b, device="cpu", threads=1)
        for b in ("onnxruntime", "torch")
    }
    yield opened
    for pipeline in opened.values():
        pipeline.close()


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
@pytest.mark.parametrize("size", [(37, 53), (16, 21), (5, 9), (64, 48)])
def test_pipeline_matches_pytorch_at_odd_sizes_through_padding(
    tiny_export, pipelines, backend: str, size: tuple[int, int]
) -> None:
    frame = _frame(*size)
    pipeline = pipelines[backend]
    assert (pipeline.backend.name, pipeline.backend.device) == (backend, "cpu")
    got = pipeline.restore(frame)
    assert got.shape == frame.shape and got.dtype == np.float32
    assert np.abs(got - _reference(tiny_export, frame)).max() <= 1e-4


def test_a_batch_gives_the_same_frames_as_one_at_a_time(tiny_export) -> None:
    frames = np.stack([_frame(30, 34, seed) for seed in range(3)])
    with Pipeline.from_manifest(tiny_export.artifacts, backend="onnxruntime", threads=1) as pipeline:
        batch = pipeline.restore_batch(frames)
        single = np.stack([pipeline.restore(f) for f in frames])
    assert np.abs(batch - single).max() <= 1e-5


def test_io_binding_gives_the_same_result_as_plain_runs(tiny_export) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    frame = _frame(33, 40)
    results = []
    for binding in (False, True):
        backend = OnnxRuntimeBackend(manifest, "cpu", threads=1, io_binding=binding).open()
        with Pipeline(manifest, backend) as pipeline:
            results.append(pipeline.restore(frame))
    assert np.abs(results[0] - results[1]).max() == 0.0


def test_a_frame_smaller_than_the_model_multiple_is_refused(tiny_export) -> None:
    with Pipeline.from_manifest(tiny_export.artifacts, backend="onnxruntime", threads=1) as pipeline:
        with pytest.raises(ShapeError, match="frame 7x1 is smaller than the model multiple 2"):
            pipeline.restore(_frame(1, 7))
        with pytest.raises(ShapeError, match="expected NxHxWx3"):
            pipeline.restore(np.zeros((8, 8, 4), np.float32))
        with pytest.raises(InputError, match="float32"):
            pipeline.restore(np.zeros((8, 8, 3), np.float64))


def test_backend_run_validates_feeds(tiny_export) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    backend = create_backend("onnxruntime", manifest, "cpu", threads=1)
    x = np.zeros((1, 3, 16, 16), np.float32)
    with pytest.raises(BackendUnavailable, match="not open"):
        backend.run("stage1_gd", {"x": x, "y": x})
    with backend:
        assert backend.run("stage1_gd", {"x": x, "y": x})["v"].shape == (1, 3, 16, 16)
        with pytest.raises(ShapeError, match=r"takes inputs \['x', 'y'\]"):
            backend.run("stage1_gd", {"x": x})
        with pytest.raises(ShapeError, match="must be float32, got float64"):
            backend.run("stage1_gd", {"x": x.astype(np.float64), "y": x})
        with pytest.raises(ShapeError, match="height 17 must be a multiple of 2"):
            odd = np.zeros((1, 3, 17, 16), np.float32)
            backend.run("stage1_gd", {"x": odd, "y": odd})
        with pytest.raises(ShapeError, match="width is 18, but another input has 16"):
            backend.run("stage1_gd", {"x": x, "y": np.zeros((1, 3, 16, 18), np.float32)})
        with pytest.raises(ShapeError, match=r"has shape \[1, 4, 16, 16\]"):
            four = np.zeros((1, 4, 16, 16), np.float32)
            backend.run("stage1_gd", {"x": four, "y": four})
        with pytest.raises(ManifestError, match="no graph named 'stage9_gd'"):
            backend.run("stage9_gd", {"x": x, "y": x})


def test_fallback_order_is_resolved_once_and_logged(tiny_export, caplog: pytest.LogCaptureFixture) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    caplog.set_level(logging.INFO, logger="runtime.backends.select")
    order = [("tensorrt", "cuda"), ("onnxruntime", "cuda"), ("onnxruntime", "cpu")]
    with open_backend(manifest, order, threads=1) as backend:
        assert (backend.name, backend.device) == ("onnxruntime", "cpu")
    assert "backend tensorrt on cuda unavailable" in caplog.text
    assert "backend onnxruntime on cuda unavailable" in caplog.text
    assert "using backend onnxruntime on cpu" in caplog.text
    with pytest.raises(
        BackendUnavailable, match="no backend could be opened: tensorrt on cuda: .*; onnxruntime on cuda"
    ):
        open_backend(manifest, order[:2])


def test_candidate_order() -> None:
    assert candidate_order(None, None) == list(DEFAULT_ORDER)
    assert candidate_order(None, "cpu") == [("onnxruntime", "cpu"), ("torch", "cpu")]
    assert candidate_order(["onnxruntime"], None) == [("onnxruntime", "cuda"), ("onnxruntime", "cpu")]
    assert candidate_order(["tensorrt", "torch"], "cpu") == [("torch", "cpu")]
    with pytest.raises(InputError, match="needs --device cuda"):
        candidate_order(["tensorrt"], "cpu")
    with pytest.raises(InputError, match="unknown backend 'tflite'"):
        candidate_order(["tflite"], None)


def test_tensorrt_is_unavailable_with_a_clear_reason(tiny_export) -> None:
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed|only the TensorRT type stubs"):
        Pipeline.from_manifest(tiny_export.artifacts, backend="tensorrt")


def test_torch_backend_needs_torch_programs(export_tiny) -> None:
    with pytest.raises(ManifestError, match="exported without a torch program"):
        Pipeline.from_manifest(export_tiny().artifacts, backend="torch", device="cpu")


def test_a_graph_from_another_model_is_refused_when_opened(tiny_export, export_tiny, tmp_path: Path) -> None:
    """A prior graph of another model (prior_dim 8, not 16) dropped in with its hash updated."""
    other = export_tiny(share_stage_weights=True, stages=3, prior_dim=8)
    out = tmp_path / "mixed"
    shutil.copytree(tiny_export.artifacts, out)
    shutil.copy(other.artifacts / "graphs" / "prior.fp32.onnx", out / "graphs" / "prior.fp32.onnx")
    data = json.loads((out / MANIFEST_NAME).read_text())
    data["graphs"]["prior"]["variants"]["fp32"]["onnx"]["sha256"] = sha256_file(out / "graphs" / "prior.fp32.onnx")
    (out / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"prior.fp32.onnx: input 'noise' dimension 1 is 8 in the graph but 16"):
        Pipeline.from_manifest(out, backend="onnxruntime", threads=1)


# --------------------------------------------------------------------------- tiling


def test_tiles_cover_the_frame_on_the_model_grid() -> None:
    assert tile_starts(100, 128, 32) == [0]
    assert tile_starts(256, 96, 32) == [0, 53, 106, 160]
    assert tile_starts(256, 96, 32, multiple=4) == [0, 52, 104, 160]
    assert tile_starts(484, 256, 32, multiple=4) == [0, 112, 228]
    for length, tile, overlap, multiple in [(200, 64, 16, 4), (1280, 256, 32, 8), (720, 96, 8, 4), (4096, 512, 64, 8)]:
        starts = tile_starts(length, tile, overlap, multiple)
        assert starts[0] == 0 and starts[-1] == length - tile
        assert all(s % multiple == 0 for s in starts)
        assert all(0 < b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))
    tiles = plan_tiles(200, 120, 64, 16, 4)
    covered = np.zeros((200, 120), int)
    for t in tiles:
        covered[t.rows, t.cols] += 1
        assert (t.height, t.width) == (64, 64)
    assert covered.min() >= 1


def test_blending_constant_tiles_gives_the_constant() -> None:
    blend = Blender(1, 3, 200, 120, 16)
    for t in plan_tiles(200, 120, 64, 16):
        blend.add(t, np.full((1, 3, t.height, t.width), 0.25, np.float32))
    assert np.allclose(blend.result(), 0.25, atol=1e-6)


def test_tiling_with_one_tile_is_the_whole_frame_and_bad_tiles_are_refused(tiny_export) -> None:
    frame = _frame(40, 50)
    with Pipeline.from_manifest(tiny_export.artifacts, backend="onnxruntime", threads=1) as whole:
        expected = whole.restore(frame)
    with Pipeline.from_manifest(tiny_export.artifacts, backend="onnxruntime", threads=1, tile=64) as tiled:
        assert np.abs(tiled.restore(frame) - expected).max() <= 1e-6
    for tile, overlap, message in [(63, 8, "multiple of 2"), (8, 2, "at least 16"), (32, 32, "overlap 32")]:
        with pytest.raises(InputError, match=message):
            Pipeline.from_manifest(tiny_export.artifacts, backend="onnxruntime", tile=tile, tile_overlap=overlap)


def test_tiled_runs_share_one_whole_frame_prior_per_stage(tiny_export) -> None:
    frame = _frame(90, 70)
    with Pipeline.from_manifest(
        tiny_export.artifacts, backend="onnxruntime", threads=1, tile=32, tile_overlap=8
    ) as tiled:
        tiled.backend.record_timings = True
        out = tiled.restore(frame)
        runs = {name: len(times) for name, times in tiled.backend.timings.items()}
    tiles = len(plan_tiles(90, 70, 32, 8, 2))
    assert runs == {"stage1_gd": tiles, "stage2_gd": tiles, "stage1_prox": tiles, "stage2_prox": tiles, "prior": 2}
    assert out.shape == frame.shape and np.isfinite(out).all()
    # Tiny random weights: tiled differs from whole-frame, but stays close (the real cost is measured on photos).
    assert np.abs(out - _reference(tiny_export, frame)).mean() < 0.02


# --------------------------------------------------------------------------- import hygiene


def test_runtime_imports_no_heavy_library_and_nothing_from_model_export_calibration() -> None:
    code = (
        "import sys\n"
        "import runtime.pipeline, runtime.restore, runtime.manifest, runtime.tiling\n"
        "import runtime.backends.select, runtime.backends.onnxruntime_backend\n"
        "import runtime.backends.torch_backend, runtime.backends.tensorrt_backend\n"
        "import runtime.backends.openvino_backend\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'onnx', 'onnxruntime', 'tensorrt', 'openvino', 'model', 'export', 'calibration'))\n"
        "print(bad)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"


def test_no_runtime_module_imports_model_export_or_calibration() -> None:
    for path in (REPO / "runtime").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("model", "export", "calibration"), f"{path}: imports {name}"
        assert path.stem not in ("torch", "onnx", "onnxruntime", "tensorrt", "cv2"), path
