"""The torch-CUDA path with the real native kernels (marked `gpu`: skipped where there is no GPU).

`runtime/backends/device_frames.py` is shared by the TensorRT and torch backends; on a CPU its
wiring runs over fakes of the GPU libraries (tests/runtime/test_frame_transfers.py). Here the
CUDA kernels themselves run, through torch's device pointers and stream, against the NumPy path
(`rgb_float_to_bgr8(restore(bgr_to_rgb_float(frame)))`) of the same programs on the CPU. The
kernels equal the C reference bit for bit (tests/runtime/test_frame_kernels.py); the graphs'
floats differ between GPU and CPU in the last bits, so one 8-bit level is allowed, on a few pixels.
"""

from __future__ import annotations

import numpy as np
import pytest

from runtime import frame_kernels
from runtime.backends.device_frames import ON_DEVICE
from runtime.pipeline import Pipeline
from runtime.pixels import bgr_to_rgb_float, rgb_float_to_bgr8


def _bgr_frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, size=(75, 101, 3), dtype=np.uint8)  # odd sizes: padding on both axes
    return [np.ascontiguousarray(np.roll(base, shift, axis=1)) for shift in range(count)]


def _assert_close_bytes(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.uint8 and got.shape == want.shape
    difference = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert difference.max() <= 1 and np.count_nonzero(difference) <= 0.01 * difference.size


@pytest.mark.gpu
@pytest.mark.parametrize("tile", [None, 64], ids=["whole", "tiled"])
@pytest.mark.parametrize("cuda_graphs", [True, False], ids=["graphs", "plain"])
def test_torch_cuda_restores_8bit_frames_on_the_device_like_the_numpy_path(
    tiny_export, tile: int | None, cuda_graphs: bool
) -> None:
    kernels = frame_kernels.load_frame_kernels()
    if kernels is None or not kernels.built_with_cuda:
        pytest.skip("the native frame kernels were not built with CUDA (cmake -S . -B build with nvcc on PATH)")
    frames = _bgr_frames(3)
    with Pipeline.from_manifest(
        tiny_export.artifacts, backend="torch", device="cuda", tile=tile, tile_overlap=16, cuda_graphs=cuda_graphs
    ) as pipeline:
        assert pipeline.frame_work == ON_DEVICE
        got = [pipeline.restore_bgr8(frame) for frame in frames]
        if tile is None:
            assert pipeline.launches == ("cuda graph" if cuda_graphs else "plain launches (CUDA graphs off)")
    # The NumPy path (conversion, padding, tiles, blending, quantisation on the host), with the
    # same programs on the CPU.
    with Pipeline.from_manifest(
        tiny_export.artifacts, backend="torch", device="cpu", tile=tile, tile_overlap=16
    ) as reference:
        assert reference.frame_work == "NumPy on the host"
        for frame, out in zip(frames, got, strict=True):
            _assert_close_bytes(out, rgb_float_to_bgr8(reference.restore(bgr_to_rgb_float(frame))))
