"""Tests for runtime/video/loop.py and sinks.py on a real clip (Vid4 walk, 47 frames).

The clean frames are downscaled to 240x160, degraded with seeded Gaussian noise, encoded with
OpenCV (MJPG .avi, mp4v .mp4) and restored by real OpenCV filters (non-local means, Gaussian
blur) through the real three-thread loop. Only a camera device is faked, in the reconnect test.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from runtime.errors import InputError, ShapeError
from runtime.metrics import psnr
from runtime.video.loop import INTERRUPTED, SOURCE_LOST, STOPPED_BY_SINK, VideoSummary, run_video
from runtime.video.sinks import FrameSink, ImageSequenceSink, PreviewSink, SideBySide, VideoFileSink
from runtime.video.sources import LiveSource, ReconnectPolicy, open_source
from runtime.video.wrappers import DelayedProcess

cv2.setNumThreads(1)

SIZE = (240, 160)  # (width, height)
FPS = 24.0
NOISE_SIGMA = 20.0 / 255.0


@pytest.fixture(scope="module")
def noisy(clean: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1234)
    degraded = clean.astype(np.float32) / 255.0 + rng.normal(0.0, NOISE_SIGMA, clean.shape).astype(np.float32)
    return np.rint(np.clip(degraded, 0.0, 1.0) * 255.0).astype(np.uint8)


@pytest.fixture(scope="module")
def noisy_avi(noisy: np.ndarray, tmp_path_factory: pytest.TempPathFactory, encode_clip) -> Path:
    return encode_clip(tmp_path_factory.mktemp("clips") / "noisy.avi", noisy, "MJPG")


@pytest.fixture(scope="module")
def noisy_mp4(noisy: np.ndarray, tmp_path_factory: pytest.TempPathFactory, encode_clip) -> Path:
    return encode_clip(tmp_path_factory.mktemp("clips") / "noisy.mp4", noisy, "mp4v")


def _unit(frame_u8: np.ndarray) -> np.ndarray:
    return frame_u8.astype(np.float32) / 255.0


def denoise(rgb: np.ndarray) -> np.ndarray:
    """A real denoiser: OpenCV's non-local means on the 8-bit frame."""
    bgr = cv2.cvtColor(np.rint(rgb * 255.0).astype(np.uint8), cv2.COLOR_RGB2BGR)
    out = cv2.fastNlMeansDenoisingColored(bgr, None, 12, 12, 3, 9)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def blur(rgb: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(rgb, (5, 5), 0)


def _hidden_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- whole runs


def test_restores_a_noisy_clip_into_a_video_file(
    tmp_path: Path,
    clean: np.ndarray,
    noisy_avi: Path,
    read_video: Callable[..., Any],
    nearest_frames: Callable[..., list[int]],
) -> None:
    source = open_source(noisy_avi)
    inputs = [f.rgb for f in open_source(noisy_avi)]  # what the loop will see, after MJPG
    out = tmp_path / "restored.mp4"
    summary = run_video(source, denoise, [VideoFileSink(out, source.fps, source.size)], progress=False)

    assert isinstance(summary, VideoSummary)
    assert (summary.frames_in, summary.frames_out, summary.dropped, summary.discarded) == (47, 47, 0, 0)
    assert summary.decode_errors == 0 and summary.reconnects == 0
    assert summary.end_reason == "end of input"
    assert 0 < summary.latency_p50_ms <= summary.latency_p99_ms
    assert summary.process_ms_mean > 0 and summary.fps > 0 and summary.wall_s > 0
    text = summary.format()
    assert "47 in, 47 out, 0 dropped" in text and "p50" in text and "pure processing" in text

    frames, fps, size = read_video(out)
    assert len(frames) == 47
    assert fps == pytest.approx(FPS)
    assert size == SIZE
    assert nearest_frames(frames, clean, grid=(60, 40)) == list(range(47))  # order kept
    restored = np.mean([psnr(f, _unit(c)) for f, c in zip(frames, clean, strict=True)])
    degraded = np.mean([psnr(f, _unit(c)) for f, c in zip(inputs, clean, strict=True)])
    assert restored > degraded + 1.0, (restored, degraded)
    assert _hidden_leftovers(tmp_path) == []


def test_side_by_side_image_sequence_and_progress_bar(
    tmp_path: Path,
    clean: np.ndarray,
    noisy_mp4: Path,
    capsys: pytest.CaptureFixture[str],
    read_video: Callable[..., Any],
) -> None:
    source = open_source(noisy_mp4)
    inputs = [f.rgb for f in open_source(noisy_mp4)]
    out = tmp_path / "restored.avi"
    sinks = [
        VideoFileSink(out, source.fps, source.size),
        SideBySide(ImageSequenceSink(tmp_path / "compare")),
    ]
    summary = run_video(source, blur, sinks, progress=True)
    assert summary.frames_out == 47
    assert "47/47" in capsys.readouterr().err

    frames, fps, size = read_video(out)
    assert len(frames) == 47 and fps == pytest.approx(FPS) and size == SIZE
    images = sorted((tmp_path / "compare").iterdir())
    assert [p.name for p in images] == [f"{n:06d}.png" for n in range(1, 48)]
    for path, given in zip(images, inputs, strict=True):
        pair = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        assert pair.shape == (160, 480, 3)
        np.testing.assert_allclose(pair[:, :240], given, atol=0.5 / 255)  # left: the input, in order
        np.testing.assert_allclose(pair[:, 240:], blur(given), atol=1.0 / 255)  # right: the output


def test_realtime_with_a_slow_process_drops_the_oldest_frames(
    tmp_path: Path,
    clean: np.ndarray,
    noisy_avi: Path,
    read_video: Callable[..., Any],
    nearest_frames: Callable[..., list[int]],
) -> None:
    # The file is played at 50 fps (a frame every 20 ms); each frame takes 60 ms to restore.
    source = open_source(noisy_avi, fps=50.0)
    out = tmp_path / "live.avi"
    slow = DelayedProcess(blur, delay_s=0.06)
    summary = run_video(source, slow, [VideoFileSink(out, source.fps, source.size)], realtime=True, queue_size=2)

    assert summary.frames_in == 47
    assert summary.dropped > 10
    assert summary.dropped + summary.frames_out == summary.frames_in
    assert summary.discarded == 0
    assert "dropped" in summary.format() and summary.realtime
    frames, fps, _ = read_video(out)
    assert len(frames) == summary.frames_out and fps == pytest.approx(50.0)
    order = nearest_frames(frames, clean, grid=(60, 40))
    assert order == sorted(set(order))  # written in order, each frame once
    assert order[-1] == 46  # the oldest are dropped, never the newest


def test_without_realtime_a_slow_process_drops_nothing(tmp_path: Path, clean: np.ndarray, noisy_avi: Path) -> None:
    source = open_source(noisy_avi)
    summary = run_video(source, DelayedProcess(blur, 0.005), [], queue_size=1, progress=False)
    assert (summary.frames_in, summary.frames_out, summary.dropped) == (47, 47, 0)
    assert summary.process_ms_mean >= 5.0
    with pytest.raises(InputError, match="delay"):
        DelayedProcess(blur, -0.1)


def test_truncated_input_ends_cleanly_with_a_playable_output(
    tmp_path: Path,
    clean: np.ndarray,
    noisy_avi: Path,
    read_video: Callable[..., Any],
    nearest_frames: Callable[..., list[int]],
) -> None:
    data = noisy_avi.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    source = open_source(cut)
    out = tmp_path / "restored.mp4"
    summary = run_video(source, blur, [VideoFileSink(out, source.fps, source.size)], progress=False)
    assert summary.decode_errors == 1
    assert 20 <= summary.frames_out < 47 and summary.frames_out == summary.frames_in
    assert summary.end_reason == "end of input"
    frames, _, _ = read_video(out)
    assert len(frames) == summary.frames_out
    assert nearest_frames(frames, clean, grid=(60, 40)) == list(range(len(frames)))


def test_keyboard_interrupt_inside_process_leaves_a_playable_file(
    tmp_path: Path,
    clean: np.ndarray,
    noisy_avi: Path,
    read_video: Callable[..., Any],
    nearest_frames: Callable[..., list[int]],
) -> None:
    calls = 0

    def interrupted_after_ten(rgb: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 11:
            raise KeyboardInterrupt
        return blur(rgb)

    source = open_source(noisy_avi)
    out = tmp_path / "partial.mp4"
    summary = run_video(source, interrupted_after_ten, [VideoFileSink(out, source.fps, source.size)], progress=False)
    assert summary.end_reason == INTERRUPTED and summary.interrupted
    assert summary.frames_out == 10
    assert summary.frames_in == summary.frames_out + summary.discarded
    frames, fps, _ = read_video(out)
    assert len(frames) == 10 and fps == pytest.approx(FPS)
    assert nearest_frames(frames, clean, grid=(60, 40)) == list(range(10))
    assert _hidden_leftovers(tmp_path) == []


def test_ctrl_c_in_the_main_thread_stops_cleanly(
    tmp_path: Path,
    clean: np.ndarray,
    noisy_avi: Path,
    read_video: Callable[..., Any],
    nearest_frames: Callable[..., list[int]],
) -> None:
    calls = 0

    def press_ctrl_c_at_eight(rgb: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 8:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C in the terminal does
        return blur(rgb)

    source = open_source(noisy_avi)
    out = tmp_path / "partial.avi"
    process = DelayedProcess(press_ctrl_c_at_eight, 0.02)
    # Python leaves SIGINT ignored when it started ignored (a background CI job): restore the
    # interactive behaviour, Ctrl-C -> KeyboardInterrupt in the main thread, for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        summary = run_video(source, process, [VideoFileSink(out, source.fps, source.size)], progress=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert summary.interrupted
    assert 8 <= summary.frames_out < 47
    frames, _, _ = read_video(out)
    assert len(frames) == summary.frames_out
    assert nearest_frames(frames, clean, grid=(60, 40)) == list(range(len(frames)))


def test_an_error_in_process_is_raised_after_the_output_is_finalised(
    tmp_path: Path, clean: np.ndarray, noisy_avi: Path, read_video: Callable[..., Any]
) -> None:
    calls = 0

    def fails_at_six(rgb: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 6:
            raise ValueError("model exploded")
        return blur(rgb)

    source = open_source(noisy_avi)
    out = tmp_path / "partial.mp4"
    with pytest.raises(ValueError, match="model exploded"):
        run_video(source, fails_at_six, [VideoFileSink(out, source.fps, source.size)], progress=False)
    frames, _, _ = read_video(out)
    assert len(frames) == 5
    assert _hidden_leftovers(tmp_path) == []


class BrokenSink(FrameSink):
    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.written = 0
        self.closed = False

    def write(self, output_rgb: np.ndarray, input_rgb: np.ndarray) -> None:
        self.written += 1
        if self.written == self.fail_at:
            raise OSError("disk gone")

    def close(self) -> None:
        self.closed = True


def test_a_failing_sink_stops_all_threads_promptly(
    tmp_path: Path, noisy_avi: Path, read_video: Callable[..., Any]
) -> None:
    source = open_source(noisy_avi)
    out = tmp_path / "partial.avi"
    broken = BrokenSink(fail_at=4)
    started = time.perf_counter()
    with pytest.raises(OSError, match="disk gone"):
        run_video(source, blur, [VideoFileSink(out, source.fps, source.size), broken], queue_size=2, progress=False)
    assert time.perf_counter() - started < 5.0
    assert broken.closed and broken.written == 4
    frames, _, _ = read_video(out)
    assert len(frames) == 4  # the first sink had written frame 4 before the second failed


class StopAfter(FrameSink):
    """Asks the loop to stop after `count` frames, as the preview does when 'q' is pressed."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.written = 0

    @property
    def wants_stop(self) -> bool:
        return self.written >= self.count

    def write(self, output_rgb: np.ndarray, input_rgb: np.ndarray) -> None:
        self.written += 1

    def close(self) -> None:
        pass


def test_a_sink_can_stop_the_loop(noisy_avi: Path) -> None:
    sink = StopAfter(5)
    summary = run_video(open_source(noisy_avi), DelayedProcess(blur, 0.01), [sink], queue_size=2, progress=False)
    assert summary.end_reason == STOPPED_BY_SINK
    assert 5 <= summary.frames_out <= 5 + 2 * 2 + 1  # what was already restored is still written
    assert sink.written == summary.frames_out


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[float, int]] = []

    def on_latency(self, seconds: float, queue_depth: int) -> None:
        self.calls.append((seconds, queue_depth))


def test_controller_hears_about_every_restored_frame(noisy_avi: Path) -> None:
    recorder = Recorder()
    summary = run_video(open_source(noisy_avi), blur, [], queue_size=3, controller=recorder, progress=False)
    assert len(recorder.calls) == summary.frames_out == 47
    assert all(seconds > 0 and 0 <= depth <= 3 for seconds, depth in recorder.calls)


def test_process_must_keep_the_frame_shape(tmp_path: Path, noisy_avi: Path) -> None:
    source = open_source(noisy_avi)
    with pytest.raises(ShapeError, match="must keep the shape"):
        run_video(source, lambda rgb: rgb[::2], [], progress=False)
    with pytest.raises(InputError, match="queue_size"):
        run_video(open_source(noisy_avi), blur, [], queue_size=0)


# --------------------------------------------------------------------------- live source


class FakeCamera:
    """Stands in for a cv2.VideoCapture on a camera: delivers `frames` (BGR), then (False, None)."""

    def __init__(self, frames: list[np.ndarray], opened: bool = True) -> None:
        self.frames = list(frames)
        self.opened = opened

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def get(self, prop_id: int) -> float:
        return 30.0 if prop_id == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.opened = False


def test_a_live_source_that_stops_is_reopened_and_counted(
    tmp_path: Path, clean: np.ndarray, read_video: Callable[..., Any]
) -> None:
    bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in clean[:20]]
    cameras = iter([FakeCamera(bgr[:10]), FakeCamera([], opened=False), FakeCamera(bgr[10:])])
    source = LiveSource(
        lambda: next(cameras, None) or FakeCamera([], opened=False),
        "fake camera",
        reconnect=ReconnectPolicy(max_attempts=2, initial_delay_s=0.01, max_delay_s=0.02),
    )
    out = tmp_path / "camera.avi"
    summary = run_video(source, blur, [VideoFileSink(out, source.fps, source.size)], realtime=True)
    assert summary.reconnects == 1
    assert summary.end_reason == SOURCE_LOST
    assert summary.frames_out + summary.dropped == summary.frames_in == 20
    frames, fps, _ = read_video(out)
    assert len(frames) == summary.frames_out and fps == pytest.approx(30.0)
    assert "1 reconnects" in summary.format()


# --------------------------------------------------------------------------- sinks


def test_sinks_reject_what_they_cannot_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="unsupported video extension"):
        VideoFileSink(tmp_path / "out.xyz", 25.0, SIZE)
    with pytest.raises(InputError, match="does not exist"):
        VideoFileSink(tmp_path / "missing" / "out.mp4", 25.0, SIZE)
    with pytest.raises(InputError, match="frame rate"):
        VideoFileSink(tmp_path / "out.mp4", 0.0, SIZE)
    with pytest.raises(InputError, match="%d"):
        ImageSequenceSink(tmp_path / "seq", pattern="frame.png")
    with pytest.raises(InputError, match="extension"):
        ImageSequenceSink(tmp_path / "seq", pattern="%04d.gif")
    sink = VideoFileSink(tmp_path / "out.mp4", 25.0, SIZE)
    with pytest.raises(ShapeError, match="opened for 240x160"):
        sink.write(np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 3), np.float32))
    sink.close()
    assert list(tmp_path.iterdir()) == []  # no frame: no file, no temporary left behind
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    with pytest.raises(InputError, match="no display"):
        PreviewSink()


@pytest.mark.parametrize("extension", [".mp4", ".avi", ".mkv"])
def test_video_file_sink_containers(
    tmp_path: Path, clean: np.ndarray, extension: str, read_video: Callable[..., Any]
) -> None:
    path = tmp_path / f"out{extension}"
    with VideoFileSink(path, 12.5, SIZE) as sink:
        assert not path.exists()  # written under a hidden temporary name until closed
        for frame in clean[:6]:
            sink.write(_unit(frame), _unit(frame))
    frames, fps, size = read_video(path)
    assert len(frames) == 6 and fps == pytest.approx(12.5) and size == SIZE
    threshold = 60.0 if extension == ".mkv" else 28.0  # FFV1 in .mkv is lossless
    assert min(psnr(f, _unit(c)) for f, c in zip(frames, clean[:6], strict=True)) > threshold
    assert _hidden_leftovers(tmp_path) == []
