"""Video frame sources: video files, image sequences, cameras, RTSP/HTTP streams, GStreamer.

`open_source(spec)` turns what a user types into a `FrameSource`, an iterator of `Frame`s. A
frame keeps the 8-bit BGR pixels OpenCV decoded (`Frame.bgr8`), which the restoration takes as
they are (`Pipeline.restore_bgr8`, docs/VIDEO.md), and gives the toolkit's float pixel format,
RGB float32 HxWx3 in [0, 1], on demand (`Frame.rgb`, made once); 16-bit frames and frames a live
source had to resize come as float RGB only. What each kind of source does when something goes
wrong:

- A video file that is cut short or has a frame the decoder cannot read ends cleanly at the
  last good frame: no exception, `decode_errors` counts it, a warning is logged. Container
  formats that keep their index at the end (an .mp4 from OpenCV or a camera) cannot be opened
  at all once truncated; that is an `InputError` when the source is opened.
- An image sequence skips an unreadable or wrongly sized image (counted and logged) and goes on.
- A live source (camera, stream, GStreamer pipeline) that stops delivering is reopened with
  exponential back-off (`ReconnectPolicy`); each success counts in `reconnects`. When every
  attempt fails the iteration ends cleanly and `lost` is set.
- A path or spec that cannot be used at all raises `InputError` with one line, at open time.

Sources are single-pass: iterate once, then `close()`. Iteration may run in a worker thread;
`request_stop()` may be called from any thread and also cuts a back-off wait short.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from runtime.errors import InputError
from runtime.image_io import IMAGE_EXTENSIONS, image_from_pixels, list_images, read_pixels
from runtime.pixels import ScaleRule, as_bgr8, bgr8_to_rgb_float, bgr_to_rgb_float

log = logging.getLogger(__name__)

# Frame rate given to image sequences, and to any source that reports none.
DEFAULT_FPS = 25.0
# Some broken containers report the time base (e.g. 90000) as the frame rate.
_MAX_PLAUSIBLE_FPS = 1000.0
# URL schemes OpenCV's FFmpeg backend opens as network streams.
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_PRINTF = re.compile(r"%0?\d*d")
_GLOB_CHARACTERS = ("*", "?", "[")


class Frame:
    """One decoded frame: its 8-bit BGR pixels where the source decoded those, and float RGB.

    `bgr8`: uint8 HxWx3 BGR as decoded (grey repeated, alpha dropped), or None when the source
    delivers floats only (16-bit samples, a resized live frame). `scale_rule`: how those bytes
    become [0, 1] (`runtime/pixels.py`: the video multiplication, or the division still images
    are read with), so that whatever restores the bytes gives what restoring `rgb` gives.
    `rgb`: float32 HxWx3 RGB in [0, 1], made from `bgr8` on first use (`to_rgb`) and kept.
    """

    def __init__(
        self,
        index: int,
        timestamp_s: float,
        *,
        bgr8: np.ndarray | None = None,
        rgb: np.ndarray | None = None,
        scale_rule: ScaleRule = ScaleRule.MUL_RECIPROCAL,
    ) -> None:
        if (bgr8 is None) == (rgb is None):
            raise InputError("a frame is made from either its 8-bit BGR pixels or its float RGB, not both")
        self.index = index  # 0, 1, 2, ... in delivery order (skipped or dropped frames leave no gap)
        self.timestamp_s = timestamp_s  # media time: index / fps for files and sequences, time since open for live
        self.bgr8 = bgr8
        self.scale_rule = scale_rule
        self._rgb = rgb

    @classmethod
    def decoded(cls, index: int, timestamp_s: float, pixels: np.ndarray) -> Frame:
        """A frame of pixels as an OpenCV capture decodes them (grey, BGR or BGRA; 8 or 16 bit)."""
        bgr8 = as_bgr8(pixels)
        if bgr8 is None:
            return cls(index, timestamp_s, rgb=bgr_to_rgb_float(pixels))
        return cls(index, timestamp_s, bgr8=bgr8)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        shape = (self.bgr8 if self.bgr8 is not None else self.to_rgb()).shape
        return int(shape[1]), int(shape[0])

    @property
    def rgb(self) -> np.ndarray:
        """float32 HxWx3 RGB in [0, 1]."""
        return self.to_rgb()

    def to_rgb(self) -> np.ndarray:
        """`rgb`, converted from `bgr8` on the first call (by `scale_rule`) and kept."""
        if self._rgb is None:
            assert self.bgr8 is not None
            self._rgb = bgr8_to_rgb_float(self.bgr8, self.scale_rule)
        return self._rgb


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a live source that stops delivering is reopened.

    Attempt n (1-based) waits `min(initial_delay_s * 2 ** (n - 1), max_delay_s)` first; after
    `max_attempts` failures in a row the source gives up. A success resets the count.
    """

    max_attempts: int = 5
    initial_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def __post_init__(self) -> None:
        if self.max_attempts < 0:
            raise InputError(f"reconnect max_attempts must be >= 0, got {self.max_attempts}")
        if not (self.initial_delay_s >= 0 and self.max_delay_s >= self.initial_delay_s):
            raise InputError(
                "reconnect delays must satisfy 0 <= initial_delay_s <= max_delay_s, got "
                f"{self.initial_delay_s} and {self.max_delay_s}"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt `attempt` (1-based)."""
        return min(self.initial_delay_s * 2.0 ** (attempt - 1), self.max_delay_s)


class Capture(Protocol):
    """The part of `cv2.VideoCapture` a live source uses (so a test can hand in a fake camera)."""

    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV's name)

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def get(self, prop_id: int) -> float: ...

    def release(self) -> None: ...


def _pick_fps(description: str, override: float | None, reported: float) -> float:
    if override is not None:
        return override
    if math.isfinite(reported) and 0.0 < reported <= _MAX_PLAUSIBLE_FPS:
        return float(reported)
    log.warning("%s: no usable frame rate reported (%r); using %.3g fps", description, reported, DEFAULT_FPS)
    return DEFAULT_FPS


def _checked_fps(fps: float | None) -> float | None:
    if fps is None:
        return None
    if not (math.isfinite(fps) and fps > 0):
        raise InputError(f"frame rate must be a positive number, got {fps}")
    return float(fps)


def _safe_read(capture: Capture, description: str) -> np.ndarray | None:
    """One frame from `capture`, or None when it delivers none (end, outage or decode error)."""
    try:
        ok, pixels = capture.read()
    except cv2.error as exc:
        log.warning("%s: reading a frame failed: %s", description, str(exc).strip().splitlines()[-1])
        return None
    if not ok or pixels is None or pixels.size == 0:
        return None
    return pixels


# --------------------------------------------------------------------------- base class


class FrameSource(ABC):
    """A single-pass iterator of `Frame`s plus what a sink and a progress bar need to know.

    Attributes: `fps` (frames per second the output should use), `size` ((width, height), as
    OpenCV's VideoWriter wants it), `frame_count` (None for live sources or when unknown),
    `is_live`, and the counters `reconnects`, `decode_errors` and `lost` (a live source gave
    up reconnecting). The counters are final once iteration has ended.
    """

    def __init__(
        self,
        description: str,
        fps: float,
        size: tuple[int, int],
        frame_count: int | None,
        is_live: bool,
    ) -> None:
        self.description = description
        self.fps = fps
        self.size = size
        self.frame_count = frame_count
        self.is_live = is_live
        self.reconnects = 0
        self.decode_errors = 0
        self.lost = False
        self._stop = threading.Event()
        self._iterated = False
        self._closed = False

    def __iter__(self) -> Iterator[Frame]:
        if self._iterated:
            raise InputError(f"{self.description}: a frame source is read only once; open it again")
        self._iterated = True
        return self._frames()

    @abstractmethod
    def _frames(self) -> Iterator[Frame]:
        """Yield the frames; must stop soon after `request_stop()` and release in `finally`."""

    def request_stop(self) -> None:
        """Ask the iteration to end after the current frame (safe from any thread)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Release the device or file (idempotent). Call it from the thread that iterated, or
        after iteration has ended: an OpenCV capture must not be released under a running read."""
        self._stop.set()
        if not self._closed:
            self._closed = True
            self._release()

    def _release(self) -> None:  # noqa: B027 (an optional hook, not an abstract method)
        """Free what the subclass holds; called once."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.description!r}, fps={self.fps:.3g}, size={self.size}, "
            f"frame_count={self.frame_count}, live={self.is_live})"
        )


# --------------------------------------------------------------------------- video files


class VideoFileSource(FrameSource):
    """A video file read through OpenCV (FFmpeg on desktops).

    The first frame is decoded at open time, so a file that opens but holds no decodable frame
    is an `InputError` there. One frame is read ahead: when the stream ends before the frame
    count the container declares, the file was truncated or a frame could not be decoded, and
    the last frame the decoder produced is usually only partly there (FFmpeg returns what it
    could decode of a cut packet). That frame is dropped, `decode_errors` becomes 1, and the
    iteration ends cleanly at the last good frame.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float | None = None) -> None:
        path = Path(path)
        fps = _checked_fps(fps)
        if not path.is_file():
            raise InputError(f"{path}: video file not found")
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            capture.release()
            raise InputError(
                f"{path}: cannot be opened as a video (corrupt, cut before its index, "
                "or a format this OpenCV build cannot read)"
            )
        first = _safe_read(capture, str(path))
        if first is None:
            capture.release()
            raise InputError(f"{path}: opened, but not one frame could be decoded")
        declared = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        frame_count = int(declared) if math.isfinite(declared) and declared > 0 else None
        super().__init__(
            description=str(path),
            fps=_pick_fps(str(path), fps, capture.get(cv2.CAP_PROP_FPS)),
            size=(int(first.shape[1]), int(first.shape[0])),
            frame_count=frame_count,
            is_live=False,
        )
        self._capture: cv2.VideoCapture | None = capture
        self._first: np.ndarray | None = first

    def _frames(self) -> Iterator[Frame]:
        pending, self._first = self._first, None
        index = 0
        try:
            while pending is not None and not self._stop.is_set():
                assert self._capture is not None
                following = _safe_read(self._capture, self.description)
                if following is None and self.frame_count is not None and index + 1 < self.frame_count:
                    self.decode_errors += 1
                    log.warning(
                        "%s: the stream ended after %d of %d frames (truncated or undecodable); "
                        "its last frame is probably incomplete and was left out, %d good frames read",
                        self.description,
                        index + 1,
                        self.frame_count,
                        index,
                    )
                    return
                yield Frame.decoded(index, index / self.fps, pending)
                index += 1
                pending = following
        finally:
            self.close()

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        self._first = None


# --------------------------------------------------------------------------- image sequences


def _natural_key(path: Path) -> list[int | str]:
    """Sort key that puts frame2 before frame10 (text and numbers alternate after re.split)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


def _printf_matches(pattern: str) -> list[Path]:
    """Files matching a printf pattern such as `frames/%06d.png`, in numeric order."""
    path = Path(pattern)
    if "%" in str(path.parent):
        raise InputError(f"{pattern}: the %d pattern may only be in the file name, not in the folder")
    parts = _PRINTF.split(path.name)
    if len(parts) != 2:
        raise InputError(f"{pattern}: an image-sequence pattern needs exactly one %d (e.g. %06d.png)")
    if not path.parent.is_dir():
        raise InputError(f"{pattern}: folder {path.parent} does not exist")
    name = re.compile(re.escape(parts[0]) + r"(\d+)" + re.escape(parts[1]))
    numbered = []
    for candidate in path.parent.iterdir():
        match = name.fullmatch(candidate.name)
        if match and candidate.is_file():
            numbered.append((int(match.group(1)), candidate))
    return [p for _, p in sorted(numbered)]


class ImageSequenceSource(FrameSource):
    """Still images read in the given order at a fixed frame rate (`DEFAULT_FPS` unless given).

    The size is the first readable image's; a later image that cannot be read or has another
    size is skipped, counted in `decode_errors` and logged. Images are independent files, so
    one bad frame does not end the sequence.
    """

    def __init__(self, paths: Sequence[Path], description: str, fps: float | None = None) -> None:
        fps = _checked_fps(fps)
        if not paths:
            raise InputError(f"{description}: no image files found")
        self._paths = list(paths)
        first = None
        skipped = 0
        while self._paths and first is None:
            candidate = self._paths.pop(0)
            try:
                first = _still_frame(candidate, 0, 0.0)
            except InputError as exc:
                log.warning("%s: skipping unreadable frame: %s", description, exc)
                skipped += 1
        if first is None:
            raise InputError(f"{description}: none of the {len(paths)} image files could be read")
        super().__init__(
            description=description,
            fps=fps if fps is not None else DEFAULT_FPS,
            size=first.size,
            frame_count=len(paths),
            is_live=False,
        )
        self.decode_errors = skipped
        self._first: Frame | None = first

    def _frames(self) -> Iterator[Frame]:
        first, self._first = self._first, None
        assert first is not None
        yield first
        index = 1
        for path in self._paths:
            if self._stop.is_set():
                return
            try:
                frame = _still_frame(path, index, index / self.fps)
            except InputError as exc:
                self.decode_errors += 1
                log.warning("%s: skipping unreadable frame: %s", self.description, exc)
                continue
            if frame.size != self.size:
                self.decode_errors += 1
                log.warning(
                    "%s: skipping %s: size %dx%d differs from the sequence's %dx%d",
                    self.description,
                    path.name,
                    *frame.size,
                    *self.size,
                )
                continue
            yield frame
            index += 1


def _still_frame(path: Path, index: int, timestamp_s: float) -> Frame:
    """The image file at `path` as a frame: its 8-bit pixels where it has them, scaled as still
    images are read (`runtime/image_io.py`), else the float RGB `read_image` gives."""
    pixels = read_pixels(path)
    bgr8 = as_bgr8(pixels)
    if bgr8 is None:
        return Frame(index, timestamp_s, rgb=image_from_pixels(path, pixels).rgb)
    return Frame(index, timestamp_s, bgr8=bgr8, scale_rule=ScaleRule.DIVIDE)


# --------------------------------------------------------------------------- live sources


class LiveSource(FrameSource):
    """A camera, network stream or GStreamer pipeline, reopened with back-off when it stops.

    `opener` makes a new capture (a `cv2.VideoCapture` or anything with its `isOpened`, `read`,
    `get` and `release`); it is called once at open time, where failure is an `InputError`, and
    again for every reconnect attempt. A frame whose size differs from the first frame's (a
    camera that came back in another mode) is resized to the first size, with one warning.
    """

    def __init__(
        self,
        opener: Callable[[], Capture],
        description: str,
        fps: float | None = None,
        reconnect: ReconnectPolicy | None = None,
    ) -> None:
        fps = _checked_fps(fps)
        self._opener = opener
        self._policy = reconnect if reconnect is not None else ReconnectPolicy()
        capture = opener()
        if not capture.isOpened():
            capture.release()
            raise InputError(f"{description}: cannot be opened")
        first = _safe_read(capture, description)
        if first is None:
            capture.release()
            raise InputError(f"{description}: opened, but delivered no frame")
        super().__init__(
            description=description,
            fps=_pick_fps(description, fps, capture.get(cv2.CAP_PROP_FPS)),
            size=(int(first.shape[1]), int(first.shape[0])),
            frame_count=None,
            is_live=True,
        )
        self._capture: Capture | None = capture
        self._pending: np.ndarray | None = first
        self._warned_resize = False

    def _frames(self) -> Iterator[Frame]:
        start = time.monotonic()
        index = 0
        try:
            while not self._stop.is_set():
                if self._pending is None:
                    assert self._capture is not None
                    self._pending = _safe_read(self._capture, self.description)
                    if self._pending is None and not self._reconnect():
                        return
                    continue
                pixels, self._pending = self._pending, None
                yield self._frame(index, time.monotonic() - start, pixels)
                index += 1
        finally:
            self.close()

    def _frame(self, index: int, timestamp_s: float, pixels: np.ndarray) -> Frame:
        """The decoded pixels as a frame; at the first frame's size, resized (as float RGB) if not."""
        if (pixels.shape[1], pixels.shape[0]) == self.size:
            return Frame.decoded(index, timestamp_s, pixels)
        if not self._warned_resize:
            log.warning(
                "%s: frames are now %dx%d, resizing them to the first frame's %dx%d",
                self.description,
                pixels.shape[1],
                pixels.shape[0],
                *self.size,
            )
            self._warned_resize = True
        rgb = cv2.resize(bgr_to_rgb_float(pixels), self.size, interpolation=cv2.INTER_AREA)
        return Frame(index, timestamp_s, rgb=rgb)

    def _reconnect(self) -> bool:
        """Reopen with back-off; True with `_pending` set on success, False when giving up or stopped."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        policy = self._policy
        for attempt in range(1, policy.max_attempts + 1):
            delay = policy.delay(attempt)
            log.warning(
                "%s: no frame; reconnect attempt %d/%d in %.2f s",
                self.description,
                attempt,
                policy.max_attempts,
                delay,
            )
            if self._stop.wait(delay):
                return False
            try:
                capture = self._opener()
            except cv2.error as exc:
                log.warning("%s: reopening failed: %s", self.description, str(exc).strip().splitlines()[-1])
                continue
            pixels = _safe_read(capture, self.description) if capture.isOpened() else None
            if pixels is None:
                capture.release()
                continue
            self._capture = capture
            self._pending = pixels
            self.reconnects += 1
            log.info("%s: reconnected after %d attempt(s)", self.description, attempt)
            return True
        self.lost = True
        log.error("%s: gave up after %d reconnect attempts", self.description, policy.max_attempts)
        return False

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        self._pending = None


# --------------------------------------------------------------------------- open_source


def opencv_has_gstreamer() -> bool:
    """Whether this OpenCV build was compiled with GStreamer (JetPack's is; pip wheels are not)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


def open_source(
    spec: str | os.PathLike[str],
    fps: float | None = None,
    *,
    reconnect: ReconnectPolicy | None = None,
    network_timeout_s: float = 10.0,
) -> FrameSource:
    """Open what the user typed as a video source.

    `spec`, tried in this order:
    - a GStreamer pipeline (any text containing "!"), opened with `cv2.CAP_GSTREAMER`;
    - a camera index ("0", "1", ...; write "./0" for a file or folder named 0);
    - a URL (rtsp, rtsps, rtmp, rtmps, http, https, udp, tcp, srt), opened through FFmpeg with
      `network_timeout_s` for opening and for each read; always treated as live;
    - a folder of images (sorted in natural order: 2 before 10);
    - a printf pattern (`frames/%06d.png`, numeric order) or a glob pattern (`frames/*.png`);
    - a video file.

    `fps` overrides the frame rate the source reports (image sequences default to 25);
    `reconnect` is the back-off for live sources. Raises `InputError` (one line) when the
    spec is none of these or cannot be opened.
    """
    fps = _checked_fps(fps)
    text = os.fspath(spec).strip()
    if not text:
        raise InputError("empty video source")
    timeout_ms = int(network_timeout_s * 1000)

    if "!" in text:
        if not opencv_has_gstreamer():
            raise InputError(
                "GStreamer pipeline given, but this OpenCV build has no GStreamer support "
                "(use the system OpenCV, e.g. JetPack's, not a pip wheel)"
            )
        return LiveSource(lambda: cv2.VideoCapture(text, cv2.CAP_GSTREAMER), f"gstreamer:{text}", fps, reconnect)

    if re.fullmatch(r"\d+", text):
        index = int(text)
        return LiveSource(lambda: cv2.VideoCapture(index), f"camera {index}", fps, reconnect)

    url = _URL.match(text)
    if url:
        scheme = url.group(1).lower()
        if scheme not in STREAM_SCHEMES:
            raise InputError(f"{text}: unsupported URL scheme {scheme!r} (use one of {', '.join(STREAM_SCHEMES)})")
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        return LiveSource(lambda: cv2.VideoCapture(text, cv2.CAP_FFMPEG, params), text, fps, reconnect)

    path = Path(text)
    if path.is_dir():
        return ImageSequenceSource(sorted(list_images(path), key=_natural_key), text, fps)
    if _PRINTF.search(path.name) and not path.exists():
        return ImageSequenceSource(_printf_matches(text), text, fps)
    if any(c in text for c in _GLOB_CHARACTERS) and not path.exists():
        matches = [Path(p) for p in glob.glob(text) if Path(p).suffix.lower() in IMAGE_EXTENSIONS and Path(p).is_file()]
        return ImageSequenceSource(sorted(matches, key=_natural_key), text, fps)
    if path.is_file():
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            raise InputError(f"{text}: a still image, not a video (restore it as an image, or give its folder)")
        return VideoFileSource(path, fps)
    raise InputError(f"{text}: no such file or folder (nor a camera index, URL or GStreamer pipeline)")
