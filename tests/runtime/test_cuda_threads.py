"""The pycuda device used from the video loop's inference thread, and no kernel compiled at run time.

No GPU here: `tests/runtime/fake_pycuda.py` stands in for pycuda only, and enforces what the
real driver does (a context is current per thread; `autoprimaryctx` pushes it in the importing
thread alone; `GPUArray.astype` compiles a kernel). `runtime/backends/cuda_device.py` and the
video loop run for real, on the real Vid4 frames.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.backends.cuda_device import open_cuda_device
from runtime.backends.tensorrt_backend import host_array_for_engines
from runtime.errors import ShapeError
from runtime.video.loop import END_OF_INPUT, run_video
from runtime.video.sinks import ImageSequenceSink
from runtime.video.sources import open_source
from tests.runtime.fake_pycuda import install_fake_pycuda


def test_a_device_opened_in_the_main_thread_restores_frames_in_the_video_loop_thread(
    monkeypatch: pytest.MonkeyPatch, shared_data: Path, tmp_path: Path
) -> None:
    cuda = install_fake_pycuda(monkeypatch)
    device = open_cuda_device("pycuda")  # in the main thread, as Pipeline.from_manifest opens it
    threads = set()

    def process(rgb: np.ndarray) -> np.ndarray:
        # What a backend does per frame: upload, device buffers, timing, download.
        threads.add(threading.get_ident())
        frame = device.upload(rgb)
        out = device.empty(rgb.shape, "float32")
        with device.timer():
            device.copy_from_host(out, device.download(frame))
        return device.download(out)

    frames = shared_data / "video" / "vid4_walk"
    summary = run_video(open_source(frames), process, [ImageSequenceSink(tmp_path / "out")], progress=False)

    assert summary.end_reason == END_OF_INPUT and summary.frames_out == summary.frames_in == 47
    assert threads and threading.get_ident() not in threads  # it really ran in another thread
    first_in, first_out = sorted(frames.glob("*.png"))[0], tmp_path / "out" / "000001.png"
    np.testing.assert_array_equal(cv2.imread(str(first_out)), cv2.imread(str(first_in)))
    assert cuda.stack() == []  # no context left pushed in this thread
    closing = threading.Thread(target=device.close)  # closing from yet another thread works too
    closing.start()
    closing.join()


def test_the_fake_refuses_a_thread_without_a_current_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule the test above relies on, shown with the import the device used to make."""
    install_fake_pycuda(monkeypatch)
    import pycuda.autoprimaryctx  # noqa: F401  current in this thread only
    import pycuda.gpuarray as gpuarray

    gpuarray.empty((2,), np.float32)  # fine here
    failures = []
    worker = threading.Thread(target=lambda: failures.append(_error_of(lambda: gpuarray.empty((2,), np.float32))))
    worker.start()
    worker.join()
    assert failures == ["cuMemAlloc failed: invalid device context"]


def _error_of(call) -> str | None:
    try:
        call()
    except Exception as exc:
        return str(exc)
    return None


def test_int64_stage_indices_are_narrowed_on_the_host_never_cast_on_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT 8.6 engines take int64 inputs as int32: narrowed before upload, no device kernel."""
    cuda = install_fake_pycuda(monkeypatch)
    device = open_cuda_device("pycuda")
    stages = np.full((2,), 3, np.int64)
    narrowed = host_array_for_engines(stages, int64_as_int32=True)
    assert narrowed.dtype == np.int32 and narrowed.tolist() == [3, 3]
    assert host_array_for_engines(stages, int64_as_int32=False) is stages  # TensorRT 10 takes int64
    frame = np.zeros((1, 3, 4, 4), np.float32)
    assert host_array_for_engines(frame, int64_as_int32=True) is frame
    assert device.describe(device.upload(narrowed)) == ((2,), "int32")
    assert not hasattr(device, "cast")  # the device offers no cast (pycuda's would compile a kernel)
    with pytest.raises(ShapeError, match="outside the int32 range"):
        host_array_for_engines(np.array([2**40], np.int64), int64_as_int32=True)
    assert cuda.counts.allocations == 1


def test_the_tensorrt_pipeline_opened_in_the_main_thread_runs_in_the_video_loop_thread(
    tensorrt_on_fakes, clean: np.ndarray, tmp_path: Path
) -> None:
    """The whole GPU path as `runtime/restore.py` drives a video: opened here, run over there."""
    from runtime.pipeline import Pipeline

    _, root = tensorrt_on_fakes
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, frame in enumerate(clean[:6]):
        cv2.imwrite(str(frames / f"{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    with Pipeline.from_manifest(root, backend="tensorrt", device="cuda", precision="fp32") as pipeline:
        summary = run_video(
            open_source(frames), pipeline.restore, [ImageSequenceSink(tmp_path / "out")], progress=False
        )
    assert summary.end_reason == END_OF_INPUT and summary.frames_out == 6
