"""Per-frame device work of the TensorRT path: after warm-up, no allocation and one wait per frame.

No GPU here. `fake_pycuda` and `fake_tensorrt` stand in for the GPU libraries only (they count
allocations, copies and waits, and execute an engine's ONNX graph with ONNX Runtime over the
fake device memory); the pipeline, the TensorRT backend, `cuda_device.py` and the prior cache
run for real, on real video frames, in both TensorRT API spellings (8.6 and 10.x).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from runtime import trt_logger
from runtime.gpu_info import query_gpu
from runtime.pipeline import Pipeline
from runtime.trt_version import detect
from runtime.video.reuse import PriorCache
from tests.runtime.fake_pycuda import Counts, FakeCuda, install_fake_pycuda
from tests.runtime.fake_tensorrt import install_fake_tensorrt, write_fake_engines

SIZE = (160, 240)  # (H, W) of the `clean` frames


@pytest.fixture(params=["8.6.2.3", "10.3.0.30"])
def on_fakes(request, monkeypatch: pytest.MonkeyPatch, export_tiny, tmp_path: Path) -> Iterator[tuple[FakeCuda, Path]]:
    """Fake pycuda + fake TensorRT of one version, and the tiny model's artifacts with engines."""
    cuda = install_fake_pycuda(monkeypatch)
    install_fake_tensorrt(monkeypatch, cuda, request.param)
    monkeypatch.setattr(trt_logger, "_shared", None)
    detect.cache_clear()
    query_gpu.cache_clear()
    root = tmp_path / "artifacts"
    shutil.copytree(export_tiny().artifacts, root)
    write_fake_engines(root, SIZE, request.param, query_gpu())
    yield cuda, root
    detect.cache_clear()  # the fakes leave with this test: nothing may remember them
    query_gpu.cache_clear()


def _frames(clean: np.ndarray, count: int) -> list[np.ndarray]:
    return [f.astype(np.float32) / 255.0 for f in clean[:count]]


def _counting(cuda: FakeCuda, pipeline: Pipeline, frames: list[np.ndarray], **restore) -> tuple[Counts, list]:
    before = Counts(**vars(cuda.counts))
    outputs = [pipeline.restore(frame, **restore) for frame in frames]
    return cuda.counts.since(before), outputs


def test_whole_frames_allocate_nothing_and_wait_once_after_warm_up(on_fakes, clean: np.ndarray) -> None:
    cuda, root = on_fakes
    frames = _frames(clean, 5)
    with Pipeline.from_manifest(root, backend="tensorrt", device="cuda", precision="fp32") as pipeline:
        assert pipeline.backend.name == "tensorrt"
        pipeline.restore(frames[0])  # warm-up: buffers, page-locked staging, constants
        counts, outputs = _counting(cuda, pipeline, frames[1:])
    assert counts.allocations == 0
    assert counts.synchronizations == len(frames) - 1  # one wait per frame, at the output
    assert counts.blocking_copies == 0
    assert counts.async_copies == 2 * (len(frames) - 1)  # the frame in, the restored frame out
    with Pipeline.from_manifest(root, backend="onnxruntime", device="cpu", precision="fp32") as reference:
        for frame, out in zip(frames[1:], outputs, strict=True):
            np.testing.assert_allclose(out, reference.restore(frame), atol=1e-6)


def test_prior_reuse_allocates_nothing_and_waits_once_per_frame(on_fakes, clean: np.ndarray) -> None:
    cuda, root = on_fakes
    frames = _frames(clean, 12)
    cache = PriorCache(max_frames=3)
    with Pipeline.from_manifest(root, backend="tensorrt", device="cuda", precision="fp32") as pipeline:
        for frame in frames[:4]:  # warm-up: a miss (priors fetched) then hits (priors staged in)
            pipeline.restore(frame, prior_cache=cache)
        hits, misses = cache.hits, sum(cache.misses_by_reason.values())
        counts, outputs = _counting(cuda, pipeline, frames[4:], prior_cache=cache)
    assert cache.hits > hits and sum(cache.misses_by_reason.values()) > misses  # both paths measured
    assert counts.allocations == 0
    assert counts.synchronizations == len(frames) - 4
    assert counts.blocking_copies == 0
    reference_cache = PriorCache(max_frames=3)
    with Pipeline.from_manifest(root, backend="onnxruntime", device="cpu", precision="fp32") as reference:
        expected = [reference.restore(frame, prior_cache=reference_cache) for frame in frames]
    for out, want in zip(outputs, expected[4:], strict=True):
        np.testing.assert_allclose(out, want, atol=1e-6)
