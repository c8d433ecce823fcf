"""Per-frame device work of the TensorRT path: after warm-up, no allocation and one wait per frame.

No GPU here. `fake_pycuda` and `fake_tensorrt` stand in for the GPU libraries only (they count
allocations, copies and waits, and execute an engine's ONNX graph with ONNX Runtime over the
fake device memory); the pipeline, the TensorRT backend, `cuda_device.py` and the prior cache
run for real, on real video frames, in both TensorRT API spellings (8.6 and 10.x).
"""

from __future__ import annotations

import numpy as np

from runtime.pipeline import Pipeline
from runtime.prior_cache import PriorCache
from tests.runtime.fake_pycuda import Counts, FakeCuda


def _frames(clean: np.ndarray, count: int) -> list[np.ndarray]:
    return [f.astype(np.float32) / 255.0 for f in clean[:count]]


def _counting(cuda: FakeCuda, pipeline: Pipeline, frames: list[np.ndarray], **restore) -> tuple[Counts, list]:
    before = Counts(**vars(cuda.counts))
    outputs = [pipeline.restore(frame, **restore) for frame in frames]
    return cuda.counts.since(before), outputs


def test_whole_frames_allocate_nothing_and_wait_once_after_warm_up(tensorrt_on_fakes, clean: np.ndarray) -> None:
    cuda, root = tensorrt_on_fakes
    frames = _frames(clean, 5)
    with Pipeline.from_manifest(root, backend="tensorrt", device="cuda", precision="fp32") as pipeline:
        assert pipeline.backend.name == "tensorrt"
        pipeline.restore(frames[0])  # warm-up: buffers, page-locked staging, constants
        counts, outputs = _counting(cuda, pipeline, frames[1:])
        # pycuda cannot capture: the frame falls back to plain launches and says why.
        assert pipeline.launches == "plain launches (CUDA graphs are not available through pycuda (use torch))"
    assert counts.allocations == 0
    assert counts.synchronizations == len(frames) - 1  # one wait per frame, at the output
    assert counts.blocking_copies == 0
    assert counts.async_copies == 2 * (len(frames) - 1)  # the frame in, the restored frame out
    with Pipeline.from_manifest(root, backend="onnxruntime", device="cpu", precision="fp32") as reference:
        for frame, out in zip(frames[1:], outputs, strict=True):
            np.testing.assert_allclose(out, reference.restore(frame), atol=1e-6)


def test_prior_reuse_allocates_nothing_and_waits_once_per_frame(tensorrt_on_fakes, clean: np.ndarray) -> None:
    cuda, root = tensorrt_on_fakes
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
