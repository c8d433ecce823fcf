"""Fixtures shared by the runtime tests."""

from __future__ import annotations

import inspect
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime import trt_logger
from runtime.backends import device_frames
from runtime.frame_kernels import FrameKernels, find_library
from runtime.gpu_info import query_gpu
from runtime.trt_version import detect
from tests.runtime.fake_frame_kernels import fake_cuda_frame_kernels
from tests.runtime.fake_pycuda import FakeCuda, install_fake_pycuda
from tests.runtime.fake_tensorrt import install_fake_tensorrt, write_fake_engines

WALK_SIZE = (240, 160)  # (width, height): small, so video tests stay fast


@pytest.fixture(scope="session")
def clean(shared_data: Path) -> np.ndarray:
    """The 47 real Vid4 'walk' frames as uint8 RGB, 240x160, stacked (47, 160, 240, 3)."""
    files = sorted((shared_data / "video" / "vid4_walk").glob("*.png"))
    assert len(files) == 47
    frames = [cv2.resize(cv2.imread(str(f)), WALK_SIZE, interpolation=cv2.INTER_AREA) for f in files]
    return np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames])


@pytest.fixture(scope="session")
def encode_clip() -> Callable[..., Path]:
    """A function that writes RGB uint8 frames (N, H, W, 3) to a video file with OpenCV."""

    def encode(path: Path, frames_rgb: np.ndarray, fourcc: str, fps: float = 24.0) -> Path:
        height, width = frames_rgb.shape[1:3]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
        assert writer.isOpened()
        for frame in frames_rgb:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        return path

    return encode


def _read_video(path: Path) -> tuple[list[np.ndarray], float, tuple[int, int]]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"{path} is not playable"
    fps = capture.get(cv2.CAP_PROP_FPS)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)
    capture.release()
    return frames, fps, size


@pytest.fixture(scope="session")
def read_video() -> Callable[[Path], tuple[list[np.ndarray], float, tuple[int, int]]]:
    """`read_video(path)`: every frame of a video file as float RGB, its fps and (width, height)."""
    return _read_video


def _nearest(frames: list[np.ndarray], clean: np.ndarray, grid: tuple[int, int]) -> list[int]:
    def small(x: np.ndarray) -> np.ndarray:
        return cv2.resize(x, grid, interpolation=cv2.INTER_AREA)

    refs = np.stack([small(c.astype(np.float32) / 255.0) for c in clean])
    return [int(np.argmin(((refs - small(f)) ** 2).mean(axis=(1, 2, 3)))) for f in frames]


@pytest.fixture(scope="session")
def nearest_frames() -> Callable[..., list[int]]:
    """`nearest_frames(frames, clean_u8, grid=(w, h))`: for each float frame, the index of the
    closest clean uint8 frame, compared on a small grid (robust to noise and codecs)."""
    return _nearest


FAKE_ENGINE_SIZE = (160, 240)  # (H, W) of the `clean` frames


@pytest.fixture
def tensorrt_fakes(
    monkeypatch: pytest.MonkeyPatch, export_tiny, tmp_path: Path
) -> Iterator[Callable[..., tuple[FakeCuda, Path]]]:
    """`install(version, dla_core=None, tile_sizes=())`: fake pycuda + fake TensorRT
    (`tests/runtime/fake_*.py`, GPU libraries only) of that TensorRT version, and a copy of the
    tiny model's artifacts with engines at FAKE_ENGINE_SIZE and at each of `tile_sizes` (H, W);
    returns the fake driver's state and the artifacts folder."""

    def install(
        version: str, dla_core: int | None = None, tile_sizes: tuple[tuple[int, int], ...] = ()
    ) -> tuple[FakeCuda, Path]:
        cuda = install_fake_pycuda(monkeypatch)
        install_fake_tensorrt(monkeypatch, cuda, version)
        monkeypatch.setattr(trt_logger, "_shared", None)
        detect.cache_clear()
        query_gpu.cache_clear()
        root = tmp_path / "artifacts"
        shutil.copytree(export_tiny().artifacts, root)
        write_fake_engines(root, FAKE_ENGINE_SIZE, version, query_gpu(), dla_core, tile_sizes)
        return cuda, root

    yield install
    detect.cache_clear()  # the fakes leave with this test: nothing may remember them
    query_gpu.cache_clear()
    monkeypatch.undo()
    # inspect.getmodule caches each module's __file__ by name; the fake's file would stay cached
    # for "tensorrt" and make the next getmodule (torch.export calls it) fail on the real,
    # file-less tensorrt-stubs namespace package. CPython keeps that cache in a private dict.
    inspect._filesbymodname.pop("tensorrt", None)


@pytest.fixture(params=["8.6.2.3", "10.3.0.30"])
def tensorrt_on_fakes(request, tensorrt_fakes) -> tuple[FakeCuda, Path]:
    """The fakes of one TensorRT version each (both API spellings), and the artifacts."""
    return tensorrt_fakes(request.param)


@pytest.fixture
def frame_kernels_on_fakes(monkeypatch: pytest.MonkeyPatch) -> Callable[[FakeCuda], FrameKernels]:
    """`install(cuda)`: the native frame kernels (built from native/; the test skips without
    them) with their CUDA entry answered over the fake pycuda's memory
    (`tests/runtime/fake_frame_kernels.py`, the GPU side only), handed to the CUDA backends
    opened after this call. Backends opened before it keep the NumPy path."""

    def install(cuda: FakeCuda) -> FrameKernels:
        path = find_library()
        if path is None:
            pytest.skip("native frame kernels not built (cmake -S . -B build && cmake --build build)")
        kernels = fake_cuda_frame_kernels(FrameKernels(path), cuda, monkeypatch)
        monkeypatch.setattr(device_frames, "load_frame_kernels", lambda: kernels)
        return kernels

    return install
