"""Per-frame device work of the TensorRT path: after warm-up, no allocation and one wait per frame.

No GPU here. `fake_pycuda` and `fake_tensorrt` stand in for the GPU libraries only (they count
allocations, copies, bytes and waits, and execute an engine's ONNX graph with ONNX Runtime over
the fake device memory), and `fake_frame_kernels` for the CUDA side of the native frame kernels;
the pipeline, the TensorRT backend, `cuda_device.py`, `device_frames.py` and the prior cache run
for real, on real video frames, in both TensorRT API spellings (8.6 and 10.x): whole frames,
tiles, prior reuse, float frames and 8-bit frames.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.backends import device_frames
from runtime.backends.device_frames import ON_DEVICE
from runtime.errors import InferenceError
from runtime.pipeline import Pipeline
from runtime.pixels import bgr_to_rgb_float, rgb_float_to_bgr8
from runtime.prior_cache import PriorCache
from runtime.video.loop import run_video
from runtime.video.restore_video import FrameRestorer
from runtime.video.sinks import ImageSequenceSink
from runtime.video.sources import open_source
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


# ----------------------------------------------------------------------- tiles and 8-bit frames
# Tiled frames and 8-bit frames on the device need the native frame kernels: their CUDA entry is
# answered by `fake_frame_kernels` (the GPU side only; the C reference over the fake device
# memory), so the pipeline, the backend, `cuda_device.py` and `device_frames.py` run for real.

TILE = 128  # 160x240 frames in 2 x 3 tiles of 128 x 128 (the default overlap of 32)
TILE_SIZES = ((TILE, TILE),)


def test_tiled_frames_allocate_nothing_and_wait_once_after_warm_up(
    tensorrt_fakes, frame_kernels_on_fakes, clean: np.ndarray
) -> None:
    cuda, root = tensorrt_fakes("10.3.0.30", tile_sizes=TILE_SIZES)
    frame_kernels_on_fakes(cuda)
    frames = _frames(clean, 4)
    with Pipeline.from_manifest(root, backend="tensorrt", device="cuda", precision="fp32", tile=TILE) as pipeline:
        assert pipeline.tile_plan(*frames[0].shape[:2]).tile == TILE
        assert pipeline.frame_work == ON_DEVICE
        pipeline.restore(frames[0])  # warm-up
        counts, outputs = _counting(cuda, pipeline, frames[1:])
    assert counts.allocations == 0
    assert counts.synchronizations == len(frames) - 1  # not one per tile: tiles are blended on the device
    assert counts.blocking_copies == 0
    assert counts.async_copies == 2 * (len(frames) - 1)
    with Pipeline.from_manifest(root, backend="onnxruntime", device="cpu", precision="fp32", tile=TILE) as reference:
        for frame, out in zip(frames[1:], outputs, strict=True):
            np.testing.assert_allclose(out, reference.restore(frame), atol=1e-6)


@pytest.mark.parametrize("how", ["whole", "tiled", "prior reuse"])
def test_8bit_frames_go_up_as_bytes_and_match_the_numpy_path(
    tensorrt_fakes, frame_kernels_on_fakes, clean: np.ndarray, how: str
) -> None:
    cuda, root = tensorrt_fakes("8.6.2.3", tile_sizes=TILE_SIZES)
    bgr = [np.ascontiguousarray(f[:, :, ::-1]) for f in clean[:6]]
    tile = TILE if how == "tiled" else None
    open_args = {"backend": "tensorrt", "device": "cuda", "precision": "fp32", "tile": tile}

    def caches() -> dict:
        return {"prior_cache": PriorCache(max_frames=2)} if how == "prior reuse" else {}

    # The NumPy path on the same fake engines: opened before the kernels are handed over.
    with Pipeline.from_manifest(root, **open_args) as host:
        assert host.frame_work.startswith("NumPy on the host")
        numpy_cache = caches()
        expected = [host.restore_bgr8(frame, **numpy_cache) for frame in bgr]
    frame_kernels_on_fakes(cuda)
    with Pipeline.from_manifest(root, **open_args) as pipeline:
        assert pipeline.frame_work == ON_DEVICE
        device_cache = caches()
        warm = [pipeline.restore_bgr8(frame, **device_cache) for frame in bgr[:2]]
        before = Counts(**vars(cuda.counts))
        outputs = [pipeline.restore_bgr8(frame, **device_cache) for frame in bgr[2:]]
        counts = cuda.counts.since(before)
    for out, want in zip(warm + outputs, expected, strict=True):
        assert out.dtype == np.uint8 and out.shape == want.shape
        np.testing.assert_array_equal(out, want)  # the kernels' C reference is the NumPy path, bit for bit
    if how == "prior reuse":
        assert (
            device_cache["prior_cache"].hits
            and device_cache["prior_cache"].to_dict() == numpy_cache["prior_cache"].to_dict()
        )
    frame_bytes = bgr[0].nbytes  # h * w * 3: one byte per channel, not four
    staged_priors = counts.bytes_to_device - frame_bytes * len(outputs)
    assert counts.bytes_to_host >= frame_bytes * len(outputs)
    assert counts.bytes_to_host - frame_bytes * len(outputs) < frame_bytes  # besides the frames: priors only
    assert 0 <= staged_priors < frame_bytes  # besides the frames: cached priors only (a few floats)
    assert counts.allocations == 0
    assert counts.synchronizations == len(outputs)
    assert counts.blocking_copies == 0
    assert counts.kernel_launches >= 2 * len(outputs)  # in and out, plus blending when tiled


def test_without_the_native_library_8bit_frames_take_the_numpy_path(
    tensorrt_on_fakes, monkeypatch: pytest.MonkeyPatch, clean: np.ndarray
) -> None:
    cuda, root = tensorrt_on_fakes
    monkeypatch.setattr(device_frames, "load_frame_kernels", lambda: None)
    frame = np.ascontiguousarray(clean[0][:, :, ::-1])
    with Pipeline.from_manifest(root, backend="tensorrt", device="cuda", precision="fp32") as pipeline:
        assert pipeline.frame_work == "NumPy on the host (the native frame kernels are not built)"
        out = pipeline.restore_bgr8(frame)
        expected = rgb_float_to_bgr8(pipeline.restore(bgr_to_rgb_float(frame)))
    np.testing.assert_array_equal(out, expected)


# ----------------------------------------------------------------------- NaN/Inf on the 8-bit path


def _nan_at_the_top_left(name: str, values: np.ndarray) -> np.ndarray:
    """What an engine that overflows writes: its estimate x NaN at the top-left pixel (the later
    graphs spread it further)."""
    if name != "x":
        return values
    broken = values.copy()
    broken[:, :, 0, 0] = np.nan
    return broken


@pytest.mark.parametrize("how", ["whole", "tiled"])
def test_a_nan_in_an_8bit_frame_raises_the_float_paths_error_in_the_frames_one_wait(
    tensorrt_fakes, frame_kernels_on_fakes, clean: np.ndarray, how: str
) -> None:
    cuda, root = tensorrt_fakes("10.3.0.30", tile_sizes=TILE_SIZES)
    frame_kernels_on_fakes(cuda)
    bgr = np.ascontiguousarray(clean[0][:, :, ::-1])  # 160 x 240: no padding, both paths count the same samples
    open_args = {"backend": "tensorrt", "device": "cuda", "precision": "fp32", "tile": TILE if how == "tiled" else None}
    with Pipeline.from_manifest(root, **open_args) as pipeline:
        assert pipeline.frame_work == ON_DEVICE
        pipeline.restore_bgr8(bgr)  # warm-up, finite
        sys.modules["tensorrt"].output_filter = _nan_at_the_top_left
        before = Counts(**vars(cuda.counts))
        with pytest.raises(InferenceError, match=r"^TensorRT \(fp32 engines\): \d+ of 115200 output values are NaN"):
            pipeline.restore_bgr8(bgr)
        counts = cuda.counts.since(before)
        on_device = str(_raised_by(pipeline.restore_bgr8, bgr))
        on_host = str(_raised_by(pipeline.restore, bgr_to_rgb_float(bgr)))  # the float path's check_finite
    assert on_device == on_host  # the same error, the same count
    assert counts.synchronizations == 1 and counts.blocking_copies == 0  # counted within the frame's one wait
    with Pipeline.from_manifest(root, **open_args, backend_options={"check_finite": False}) as unchecked:
        out = unchecked.restore_bgr8(bgr)
    assert out[0, 0].tolist() == [0, 0, 0]  # unchecked: NaN becomes 0, as in rgb_float_to_bgr8


def _raised_by(restore, frame: np.ndarray) -> InferenceError:
    with pytest.raises(InferenceError) as raised:
        restore(frame)
    return raised.value


# ----------------------------------------------------------------------- the video loop


def test_the_video_loop_moves_bytes_to_the_device_and_writes_the_numpy_paths_frames(
    tensorrt_fakes, frame_kernels_on_fakes, clean: np.ndarray, tmp_path: Path
) -> None:
    """`runtime/restore.py`'s video path over the GPU fakes: the decoded 8-bit frames go up and
    come back as bytes, and the files written are the ones the NumPy path writes."""
    cuda, root = tensorrt_fakes("8.6.2.3")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, frame in enumerate(clean[:4]):
        cv2.imwrite(str(frames / f"{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    open_args = {"backend": "tensorrt", "device": "cuda", "precision": "fp32"}
    with Pipeline.from_manifest(root, **open_args) as host:  # opened before the kernels: the NumPy path
        run_video(open_source(frames), FrameRestorer(host), [ImageSequenceSink(tmp_path / "numpy")], progress=False)
    frame_kernels_on_fakes(cuda)
    before = Counts(**vars(cuda.counts))
    with Pipeline.from_manifest(root, **open_args) as pipeline:
        assert pipeline.frame_work == ON_DEVICE
        summary = run_video(
            open_source(frames), FrameRestorer(pipeline), [ImageSequenceSink(tmp_path / "device")], progress=False
        )
    counts = cuda.counts.since(before)
    assert summary.frames_out == 4
    frame_bytes = clean[0].nbytes  # one byte per channel: float frames would be four times that
    assert counts.bytes_to_host == 4 * (frame_bytes + 8)  # each frame and its NaN/Inf count (an int64)
    assert 4 * frame_bytes <= counts.bytes_to_device < 5 * frame_bytes  # besides the frames: the constants
    assert counts.kernel_launches == 2 * 4  # converted in and out on the device
    names = sorted(p.name for p in (tmp_path / "numpy").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "device").iterdir()) and len(names) == 4
    for name in names:
        assert (tmp_path / "device" / name).read_bytes() == (tmp_path / "numpy" / name).read_bytes()
