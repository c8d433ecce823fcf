"""Where restored frames go: a video file, an image sequence, a preview window, side by side.

Every sink takes `write(output_rgb, input_rgb)` (both float32 RGB HxWx3 in [0, 1]; the input
is there for `SideBySide`), `write_bgr8(output_bgr8, input_bgr8)` (both uint8 HxWx3 BGR, for
frames restored as bytes: the sinks here write them as they are, the bytes `write` would make of
their float copies; any other sink gets them converted to floats) and `close()`. `run_video`
calls them from its output thread and always closes, on Ctrl-C and on errors too, so that what
was restored so far is kept:

- `VideoFileSink` writes to a hidden temporary file in the target folder and renames it to the
  final name on `close()`; the container is only complete (an .mp4 only playable) once the
  writer is released, so a run that ends any way but a hard kill leaves a playable file, and
  an unfinished file is never found under the final name.
- `ImageSequenceSink` writes each image atomically (`runtime.image_io.write_image`).
- `PreviewSink` shows the output; 'q' or Esc (or closing the window) sets `wants_stop`, which
  the loop reads after every frame.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from abc import ABC, abstractmethod
from pathlib import Path

import cv2
import numpy as np

from runtime.atomic_io import discard, temporary_sibling
from runtime.errors import InputError, ShapeError
from runtime.image_io import IMAGE_EXTENSIONS, Image, check_output_folder, write_image, write_pixels
from runtime.pixels import bgr_to_rgb_float, rgb_float_to_bgr8

log = logging.getLogger(__name__)

# Codec per container. mp4v (MPEG-4 part 2) and MJPG are in every FFmpeg build OpenCV ships
# with; H.264 encoders usually are not (pip wheels lack libx264). FFV1 is lossless, so .mkv is
# the choice when the restored video will be measured or edited further.
FOURCC_BY_EXTENSION: dict[str, str] = {
    ".mp4": "mp4v",
    ".m4v": "mp4v",
    ".mov": "mp4v",
    ".avi": "MJPG",
    ".mkv": "FFV1",
}


def _check_frame(rgb: np.ndarray, size: tuple[int, int] | None, where: str) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ShapeError(f"{where}: a frame must be HxWx3 RGB, got shape {rgb.shape}")
    if size is not None and (rgb.shape[1], rgb.shape[0]) != size:
        raise ShapeError(
            f"{where}: frame is {rgb.shape[1]}x{rgb.shape[0]}, the sink was opened for {size[0]}x{size[1]}"
        )


class FrameSink(ABC):
    """A destination for restored frames. `wants_stop` lets a sink ask the loop to end."""

    @abstractmethod
    def write(self, output_rgb: np.ndarray, input_rgb: np.ndarray) -> None:
        """Store or show one restored frame; `input_rgb` is the frame it was restored from."""

    def write_bgr8(self, output_bgr8: np.ndarray, input_bgr8: np.ndarray) -> None:
        """`write` for a frame restored as 8-bit BGR; this default hands `write` float copies
        (scaled as video frames are, `bgr_to_rgb_float`). Sinks that store bytes override it."""
        self.write(bgr_to_rgb_float(output_bgr8), bgr_to_rgb_float(input_bgr8))

    @abstractmethod
    def close(self) -> None:
        """Finish the output (idempotent)."""

    @property
    def wants_stop(self) -> bool:
        return False

    def __enter__(self) -> FrameSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class VideoFileSink(FrameSink):
    """A video file at `fps`, frames of `size` = (width, height).

    The codec follows the extension (`FOURCC_BY_EXTENSION`) unless `fourcc` is given. Raises
    `InputError` at construction for an unknown extension, a missing folder or a writer that
    cannot be opened (codec not in this OpenCV build), and for an existing file unless
    `overwrite`. When no frame was written, `close()` leaves no file (a video with no frames is
    not playable) and logs a warning.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float,
        size: tuple[int, int],
        fourcc: str | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        extension = self.path.suffix.lower()
        if fourcc is None:
            if extension not in FOURCC_BY_EXTENSION:
                raise InputError(
                    f"{self.path}: unsupported video extension {self.path.suffix!r} "
                    f"(use one of {', '.join(FOURCC_BY_EXTENSION)})"
                )
            fourcc = FOURCC_BY_EXTENSION[extension]
        if len(fourcc) != 4:
            raise InputError(f"{self.path}: a fourcc has four characters, got {fourcc!r}")
        if not (fps > 0 and np.isfinite(fps)):
            raise InputError(f"{self.path}: frame rate must be positive, got {fps}")
        width, height = size
        if width <= 0 or height <= 0:
            raise InputError(f"{self.path}: frame size must be positive, got {width}x{height}")
        if not self.path.parent.is_dir():
            raise InputError(f"{self.path}: output folder {self.path.parent} does not exist")
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a folder, not a video file name")
        if not overwrite and (self.path.exists() or self.path.is_symlink()):
            raise InputError(f"{self.path}: already exists; pass --overwrite to replace it")
        self.fps = float(fps)
        self.size = (int(width), int(height))
        self.fourcc = fourcc
        self.frames_written = 0
        # The temporary name must end with the real extension: FFmpeg picks the container from it.
        hidden = temporary_sibling(self.path)
        if hidden.suffix != self.path.suffix:
            hidden = hidden.with_name(hidden.name + self.path.suffix)
        self._temporary = hidden
        self._writer: cv2.VideoWriter | None = cv2.VideoWriter(
            str(self._temporary), cv2.VideoWriter_fourcc(*fourcc), self.fps, self.size
        )
        if not self._writer.isOpened():
            self._writer.release()
            self._writer = None
            discard(self._temporary)
            raise InputError(
                f"{self.path}: cannot open a video writer ({fourcc} in {extension or 'no container'}; "
                "is the folder writable and the codec in this OpenCV build?)"
            )

    def write(self, output_rgb: np.ndarray, input_rgb: np.ndarray) -> None:
        _check_frame(output_rgb, self.size, str(self.path))
        self._write(rgb_float_to_bgr8(output_rgb))

    def write_bgr8(self, output_bgr8: np.ndarray, input_bgr8: np.ndarray) -> None:
        _check_frame(output_bgr8, self.size, str(self.path))
        self._write(output_bgr8)

    def _write(self, bgr8: np.ndarray) -> None:
        if self._writer is None:
            raise InputError(f"{self.path}: written after close()")
        self._writer.write(bgr8)
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        try:
            writer.release()
            if self.frames_written == 0:
                log.warning("%s: no frame was written, so no file was made", self.path)
                return
            os.replace(self._temporary, self.path)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot be written ({exc.strerror or exc})") from exc
        finally:
            discard(self._temporary)

    def __repr__(self) -> str:
        return f"VideoFileSink({str(self.path)!r}, fps={self.fps:.3g}, size={self.size}, fourcc={self.fourcc!r})"


class ImageSequenceSink(FrameSink):
    """One image per frame in `folder` (made if missing), named `pattern % n` from `start`.

    `pattern` is a file name with one printf integer, e.g. "%06d.png"; the extension picks the
    format (8-bit). Each image is written atomically. A folder that already holds files the
    pattern could name is refused unless `overwrite` (the run's length is not known up front).
    """

    def __init__(
        self, folder: str | os.PathLike[str], pattern: str = "%06d.png", start: int = 1, overwrite: bool = False
    ) -> None:
        self.folder = Path(folder)
        if Path(pattern).name != pattern:
            raise InputError(f"{pattern}: the pattern is a file name, without folders")
        try:
            first = pattern % start
        except (TypeError, ValueError) as exc:
            raise InputError(f"{pattern}: needs exactly one %d-style number (e.g. %06d.png)") from exc
        if first == pattern % (start + 1):
            raise InputError(f"{pattern}: needs exactly one %d-style number (e.g. %06d.png)")
        if Path(first).suffix.lower() not in IMAGE_EXTENSIONS:
            raise InputError(f"{pattern}: unsupported image extension (use one of {', '.join(IMAGE_EXTENSIONS)})")
        if not overwrite:
            taken = existing_frames(self.folder, pattern)
            if taken:
                more = f" (and {len(taken) - 1} more frames)" if len(taken) > 1 else ""
                raise InputError(f"{taken[0]}: already exists{more}; pass --overwrite to replace")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{self.folder}: cannot make the output folder ({exc.strerror or exc})") from exc
        check_output_folder(self.folder)  # before the first frame is restored, not at its write
        self.pattern = pattern
        self.next_number = start
        self.frames_written = 0

    def write(self, output_rgb: np.ndarray, input_rgb: np.ndarray) -> None:
        path = self._next_path()
        _check_frame(output_rgb, None, str(path))
        rgb = np.ascontiguousarray(output_rgb, dtype=np.float32)
        write_image(path, Image(rgb=rgb, alpha=None, bit_depth=8, grey=False))
        self._written()

    def write_bgr8(self, output_bgr8: np.ndarray, input_bgr8: np.ndarray) -> None:
        path = self._next_path()
        _check_frame(output_bgr8, None, str(path))
        write_pixels(path, output_bgr8)
        self._written()

    def _next_path(self) -> Path:
        return self.folder / (self.pattern % self.next_number)

    def _written(self) -> None:
        self.next_number += 1
        self.frames_written += 1

    def close(self) -> None:
        """Nothing to finish: every image is complete once written."""


def existing_frames(folder: Path, pattern: str) -> list[Path]:
    """Files in `folder` whose names `pattern` (one printf integer) could produce, sorted."""
    if not folder.is_dir():
        return []
    head, _, tail = re.split(r"(%0?\d*d)", pattern, maxsplit=1)
    name = re.compile(re.escape(head) + r"\d+" + re.escape(tail))
    return sorted(p for p in folder.iterdir() if name.fullmatch(p.name))


class PreviewSink(FrameSink):
    """An OpenCV window showing each frame; 'q', Esc or closing the window sets `wants_stop`.

    Every HighGUI call happens in the thread that calls `write()` and `close()` (the loop's
    output thread), which is what OpenCV's Qt and GTK back ends expect. On Linux without a
    display (no DISPLAY or WAYLAND_DISPLAY) construction raises `InputError`, because Qt would
    abort the whole process instead of raising.
    """

    def __init__(self, window_name: str = "UnfoldLDM-Edge") -> None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise InputError("no display for the preview window (DISPLAY is not set); run without the preview")
        self.window_name = window_name
        self._shown = False
        self._stop = False
        # Whether this HighGUI back end reports WND_PROP_VISIBLE (those that do not say -1).
        self._reports_visibility: bool | None = None

    @property
    def wants_stop(self) -> bool:
        return self._stop

    def write(self, output_rgb: np.ndarray, input_rgb: np.ndarray) -> None:
        _check_frame(output_rgb, None, f"preview {self.window_name!r}")
        self._show(rgb_float_to_bgr8(output_rgb))

    def write_bgr8(self, output_bgr8: np.ndarray, input_bgr8: np.ndarray) -> None:
        _check_frame(output_bgr8, None, f"preview {self.window_name!r}")
        self._show(output_bgr8)

    def _show(self, bgr8: np.ndarray) -> None:
        try:
            cv2.imshow(self.window_name, bgr8)
            key = cv2.waitKey(1) & 0xFF
            visible = cv2.getWindowProperty(self.window_name, cv2.WND_PROP_VISIBLE)
        except cv2.error as exc:
            raise InputError(
                f"the preview window cannot be shown ({str(exc).strip().splitlines()[-1]}); "
                "this OpenCV build may have no GUI"
            ) from exc
        self._shown = True
        if self._reports_visibility is None:  # just shown: it is visible unless not reported
            self._reports_visibility = visible >= 1
        closed = self._reports_visibility and visible < 1
        if key in (ord("q"), ord("Q"), 27) or closed:
            self._stop = True

    def close(self) -> None:
        if self._shown:
            self._shown = False
            cv2.destroyWindow(self.window_name)
            cv2.waitKey(1)


class SideBySide(FrameSink):
    """Wraps a sink so it gets input | output side by side (twice the width).

    Open the wrapped sink for `SideBySide.output_size(source.size)`.
    """

    def __init__(self, sink: FrameSink) -> None:
        self.sink = sink

    @staticmethod
    def output_size(size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of the combined frame for frames of `size`."""
        return (2 * size[0], size[1])

    @property
    def wants_stop(self) -> bool:
        return self.sink.wants_stop

    def write(self, output_rgb: np.ndarray, input_rgb: np.ndarray) -> None:
        _check_same_shape(output_rgb, input_rgb)
        self.sink.write(np.concatenate([input_rgb, output_rgb], axis=1), input_rgb)

    def write_bgr8(self, output_bgr8: np.ndarray, input_bgr8: np.ndarray) -> None:
        _check_same_shape(output_bgr8, input_bgr8)
        self.sink.write_bgr8(np.concatenate([input_bgr8, output_bgr8], axis=1), input_bgr8)

    def close(self) -> None:
        self.sink.close()


def _check_same_shape(output: np.ndarray, given: np.ndarray) -> None:
    if output.shape != given.shape:
        raise ShapeError(f"side by side needs equal shapes, got input {given.shape}, output {output.shape}")
