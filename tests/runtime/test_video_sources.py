"""Tests for runtime/video/sources.py on a real clip (Vid4 walk), plus a faked camera.

The clip is downscaled to 240x160 and encoded here with OpenCV; only the camera device is faked
(a stand-in for cv2.VideoCapture that stops delivering), the sources under test are real.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.errors import InputError
from runtime.metrics import psnr
from runtime.video.sources import (
    DEFAULT_FPS,
    ImageSequenceSource,
    LiveSource,
    ReconnectPolicy,
    VideoFileSource,
    open_source,
    opencv_has_gstreamer,
)

cv2.setNumThreads(1)

SIZE = (240, 160)  # (width, height)
FPS = 24.0


def _nearest(frame_rgb: np.ndarray, clean: np.ndarray) -> int:
    """Index of the clean frame closest to `frame_rgb` (float [0,1] or uint8), on a small grid."""
    small = cv2.resize(np.asarray(frame_rgb, np.float32), (60, 40), interpolation=cv2.INTER_AREA)
    if frame_rgb.dtype == np.uint8:
        small /= 255.0
    refs = np.stack([cv2.resize(c.astype(np.float32) / 255.0, (60, 40), interpolation=cv2.INTER_AREA) for c in clean])
    return int(np.argmin(((refs - small) ** 2).mean(axis=(1, 2, 3))))


@pytest.mark.parametrize("name, fourcc", [("clip.avi", "MJPG"), ("clip.mp4", "mp4v")])
def test_video_file_reports_its_properties_and_keeps_order(
    tmp_path: Path, clean: np.ndarray, name: str, fourcc: str, encode_clip
) -> None:
    path = encode_clip(tmp_path / name, clean, fourcc)
    source = open_source(str(path))
    assert isinstance(source, VideoFileSource)
    assert source.fps == pytest.approx(FPS)
    assert source.size == SIZE
    assert source.frame_count == 47
    assert not source.is_live
    frames = list(source)
    assert [f.index for f in frames] == list(range(47))
    assert frames[1].timestamp_s == pytest.approx(1 / FPS)
    for frame, reference in zip(frames, clean, strict=True):
        assert frame.rgb.dtype == np.float32 and frame.rgb.shape == (160, 240, 3)
        assert psnr(frame.rgb, reference.astype(np.float32) / 255.0) > 28.0  # RGB order, codec loss only
    assert [_nearest(f.rgb, clean) for f in frames] == list(range(47))
    assert source.decode_errors == 0 and source.reconnects == 0


def test_fps_argument_overrides_the_container(tmp_path: Path, clean: np.ndarray, encode_clip) -> None:
    path = encode_clip(tmp_path / "clip.avi", clean[:5], "MJPG")
    with open_source(path, fps=50.0) as source:
        assert source.fps == 50.0
    with pytest.raises(InputError, match="positive"):
        open_source(path, fps=0.0)


def test_truncated_file_ends_cleanly_at_the_last_good_frame(
    tmp_path: Path, clean: np.ndarray, caplog: pytest.LogCaptureFixture, encode_clip
) -> None:
    whole = encode_clip(tmp_path / "whole.avi", clean, "MJPG").read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole[: int(len(whole) * 0.6)])
    with caplog.at_level(logging.WARNING, logger="runtime.video.sources"):
        source = open_source(cut)
        frames = list(source)  # no exception
    assert source.frame_count == 47  # what the header declares
    assert 20 <= len(frames) < 47
    assert source.decode_errors == 1
    assert "truncated" in caplog.text
    # Every frame delivered is whole: the partly decoded one at the cut was left out.
    for frame in frames:
        assert psnr(frame.rgb, clean[frame.index].astype(np.float32) / 255.0) > 28.0


def test_mp4_cut_before_its_index_is_an_input_error(tmp_path: Path, clean: np.ndarray, encode_clip) -> None:
    whole = encode_clip(tmp_path / "whole.mp4", clean[:10], "mp4v").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="cut.mp4: cannot be opened as a video"):
        open_source(cut)


def _write_numbered(folder: Path, names: list[str]) -> list[np.ndarray]:
    """Small distinct images (value = 10 * position) under the given names; returns them as RGB."""
    folder.mkdir(exist_ok=True)
    images = []
    for position, name in enumerate(names):
        rgb = np.full((16, 24, 3), 10 * position, np.uint8)
        rgb[0, 0] = (255, 0, 0)  # a red corner pixel, to check the channel order
        cv2.imwrite(str(folder / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        images.append(rgb)
    return images


def _positions(source: ImageSequenceSource) -> list[int]:
    return [int(round(f.rgb[5, 5, 1] * 255 / 10)) for f in source]


def test_image_sequence_folder_in_natural_order(tmp_path: Path) -> None:
    names = [f"frame{i}.png" for i in range(1, 13)]  # frame2 must come before frame10
    _write_numbered(tmp_path / "seq", names)
    source = open_source(tmp_path / "seq")
    assert isinstance(source, ImageSequenceSource)
    assert source.fps == DEFAULT_FPS == 25.0
    assert source.frame_count == 12 and source.size == (24, 16) and not source.is_live
    frames = list(source)
    assert [int(round(f.rgb[5, 5, 1] * 255 / 10)) for f in frames] == list(range(12))
    assert frames[0].rgb[0, 0].tolist() == [1.0, 0.0, 0.0]
    assert frames[3].timestamp_s == pytest.approx(3 / 25.0)
    assert open_source(tmp_path / "seq", fps=30.0).fps == 30.0


def test_printf_and_glob_patterns(tmp_path: Path) -> None:
    _write_numbered(tmp_path, [f"{i:03d}.png" for i in (1, 2, 3, 10, 11)])
    (tmp_path / "notes.txt").write_text("not a frame")
    printf = open_source(str(tmp_path / "%03d.png"))
    assert printf.frame_count == 5 and _positions(printf) == [0, 1, 2, 3, 4]
    globbed = open_source(str(tmp_path / "*.png"))
    assert globbed.frame_count == 5 and _positions(globbed) == [0, 1, 2, 3, 4]
    with pytest.raises(InputError, match="no image files"):
        open_source(str(tmp_path / "%05d.jpg"))
    with pytest.raises(InputError, match="exactly one %d"):
        open_source(str(tmp_path / "%d_%d.png"))


def test_image_sequence_skips_an_unreadable_frame(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_numbered(tmp_path, [f"{i:02d}.png" for i in range(6)])
    data = (tmp_path / "03.png").read_bytes()
    (tmp_path / "03.png").write_bytes(data[: len(data) // 2])  # a truncated PNG
    cv2.imwrite(str(tmp_path / "04.png"), np.zeros((8, 8, 3), np.uint8))  # wrong size
    with caplog.at_level(logging.WARNING, logger="runtime.video.sources"):
        source = open_source(tmp_path)
        assert _positions(source) == [0, 1, 2, 5]
    assert source.decode_errors == 2
    assert "03.png" in caplog.text and "04.png" in caplog.text


def test_unusable_specs_raise_one_line_input_errors(tmp_path: Path, clean: np.ndarray) -> None:
    text = tmp_path / "fake.mp4"
    text.write_text("this is not a video")
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), clean[0])
    (tmp_path / "empty").mkdir()
    cases = {
        str(tmp_path / "missing.mp4"): "no such file",
        "": "empty video source",
        str(text): "cannot be opened as a video",
        str(still): "still image",
        "ftp://example.invalid/clip.mp4": "unsupported URL scheme",
        str(tmp_path / "empty"): "no image files",
    }
    for spec, message in cases.items():
        with pytest.raises(InputError, match=message) as info:
            open_source(spec)
        assert "\n" not in str(info.value)


@pytest.mark.skipif(opencv_has_gstreamer(), reason="this OpenCV has GStreamer; the missing-GStreamer error is moot")
def test_gstreamer_pipeline_without_gstreamer_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no GStreamer support"):
        open_source("videotestsrc num-buffers=5 ! videoconvert ! appsink")


def test_a_source_is_read_once(tmp_path: Path, clean: np.ndarray, encode_clip) -> None:
    source = open_source(encode_clip(tmp_path / "clip.avi", clean[:3], "MJPG"))
    assert len(list(source)) == 3
    with pytest.raises(InputError, match="read only once"):
        iter(source)


# --------------------------------------------------------------------------- live sources


class FakeCamera:
    """Stands in for a cv2.VideoCapture on a camera: delivers `frames` (BGR), then stops.

    After the frames it returns (False, None), or raises `fail_with` if given, like a camera
    that was unplugged or a stream whose server went away.
    """

    def __init__(self, frames: list[np.ndarray], opened: bool = True, fail_with: Exception | None = None) -> None:
        self.frames = list(frames)
        self.opened = opened
        self.fail_with = fail_with
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.opened and not self.released

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.frames and not self.released:
            return True, self.frames.pop(0)
        if self.fail_with is not None:
            raise self.fail_with
        return False, None

    def get(self, prop_id: int) -> float:
        return 30.0 if prop_id == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.released = True


def _bgr_frames(clean: np.ndarray, start: int, count: int) -> list[np.ndarray]:
    return [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in clean[start : start + count]]


def test_live_source_reconnects_with_backoff_then_gives_up(clean: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    cameras = iter(
        [
            FakeCamera(_bgr_frames(clean, 0, 5)),
            FakeCamera([], opened=False),  # first reconnect attempt: device not there yet
            FakeCamera(_bgr_frames(clean, 5, 4), fail_with=cv2.error("stream lost")),
        ]
    )
    opened = []

    def opener() -> FakeCamera:
        camera = next(cameras, None) or FakeCamera([], opened=False)
        opened.append(camera)
        return camera

    policy = ReconnectPolicy(max_attempts=3, initial_delay_s=0.01, max_delay_s=0.02)
    source = LiveSource(opener, "fake camera", reconnect=policy)
    assert source.is_live and source.frame_count is None
    assert source.fps == 30.0 and source.size == SIZE
    with caplog.at_level(logging.INFO, logger="runtime.video.sources"):
        frames = list(source)  # ends cleanly, no exception
    assert [_nearest(f.rgb, clean) for f in frames] == list(range(9))
    assert [f.index for f in frames] == list(range(9))
    assert source.reconnects == 1
    assert source.lost
    assert all(camera.released for camera in opened)
    assert "reconnect attempt 1/3 in 0.01 s" in caplog.text
    assert "reconnect attempt 2/3 in 0.02 s" in caplog.text
    assert "reconnect attempt 3/3 in 0.02 s" in caplog.text  # capped at max_delay_s
    assert "gave up after 3 reconnect attempts" in caplog.text


def test_live_source_that_cannot_open_is_an_input_error(clean: np.ndarray) -> None:
    with pytest.raises(InputError, match="camera 7: cannot be opened"):
        LiveSource(lambda: FakeCamera([], opened=False), "camera 7")
    with pytest.raises(InputError, match="delivered no frame"):
        LiveSource(lambda: FakeCamera([]), "camera 8")


def test_request_stop_cuts_a_backoff_wait_short(clean: np.ndarray) -> None:
    source = LiveSource(
        lambda: FakeCamera(_bgr_frames(clean, 0, 2)),
        "slow camera",
        reconnect=ReconnectPolicy(max_attempts=2, initial_delay_s=30.0, max_delay_s=30.0),
    )
    frames: list[int] = []
    reader = threading.Thread(target=lambda: frames.extend(f.index for f in source))
    reader.start()
    time.sleep(0.3)  # the two frames are read, then the source waits 30 s before reconnecting
    started = time.perf_counter()
    source.request_stop()
    reader.join(timeout=5.0)
    assert not reader.is_alive()
    assert time.perf_counter() - started < 2.0
    assert frames == [0, 1] and source.reconnects == 0 and not source.lost


def test_reconnect_policy_validates_and_doubles() -> None:
    policy = ReconnectPolicy(max_attempts=4, initial_delay_s=0.5, max_delay_s=3.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    with pytest.raises(InputError):
        ReconnectPolicy(max_attempts=-1)
    with pytest.raises(InputError):
        ReconnectPolicy(initial_delay_s=2.0, max_delay_s=1.0)
