"""Calibration frames: an image folder, a video file, an image sequence, or the built-in photos.

Every source gives the same thing: a list of `CalibrationFrame` (float32 HxWx3 RGB in [0, 1],
centre-cropped to one size, plus the clean original when one is known). Video files and
sequences are sampled evenly over their whole length, so a clip's last scene counts as much as
its first.

The built-in default (`BUILTIN`) is the colour photographs that ship inside the scikit-image
wheel (astronaut, cat, coffee, rocket, motorcycle stereo pair): real photos, present after a
plain `pip install`, never downloaded. They are clean, so they are degraded the way training
degrades (`model.degradations.synthesize`, seeded): calibration then sees inputs like the ones
the model restores, and the clean photo is kept as ground truth for the accuracy gate.
User sources are taken as they are (they are real inputs) unless `degrade=True`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from model.degradations import synthesize
from runtime.errors import CalibrationError, InputError
from runtime.image_io import list_images, read_image
from runtime.video.sources import open_source

BUILTIN = "builtin"
BUILTIN_HELDOUT = "builtin-heldout"
# Colour photographs bundled in scikit-image's wheel (skimage/data), not fetched by pooch: four
# to calibrate on and two other scenes, never calibrated on, for the accuracy gate.
BUILTIN_PHOTOS = {
    BUILTIN: ("astronaut.png", "chelsea.png", "motorcycle_left.png", "motorcycle_right.png"),
    BUILTIN_HELDOUT: ("coffee.png", "rocket.jpg"),
}


@dataclass(eq=False)
class CalibrationFrame:
    name: str
    image: np.ndarray  # float32 HxWx3 in [0, 1]: what the pipeline is fed
    clean: np.ndarray | None = None  # ground truth, when the source is clean photos we degraded


def builtin_photo_paths(which: str = BUILTIN) -> list[Path]:
    """The bundled photos' paths (`BUILTIN` or `BUILTIN_HELDOUT`) inside the installed scikit-image."""
    try:
        folder = resources.files("skimage") / "data"
    except ModuleNotFoundError as exc:
        raise CalibrationError(
            "the built-in calibration photos come with scikit-image (pip install scikit-image), "
            "or pass --source with your own images or video"
        ) from exc
    paths = [Path(str(folder / name)) for name in BUILTIN_PHOTOS[which]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise CalibrationError(f"scikit-image's bundled photos are missing: {', '.join(missing)}")
    return paths


def centre_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale so the image covers height x width (never upscaling when it already does), then crop the centre."""
    h, w = image.shape[:2]
    scale = max(height / h, width / w)
    if scale > 1.0:
        size = (max(width, round(w * scale)), max(height, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
        h, w = image.shape[:2]
    top, left = (h - height) // 2, (w - width) // 2
    return np.ascontiguousarray(np.clip(image[top : top + height, left : left + width], 0.0, 1.0))


def evenly_spaced(total: int, count: int) -> list[int]:
    """`count` indices spread over 0..total-1, first and last included (all of them if fewer)."""
    if total <= count:
        return list(range(total))
    if count == 1:
        return [total // 2]
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})


def _images_from_folder(folder: Path, count: int) -> list[tuple[str, np.ndarray]]:
    paths = list_images(folder)
    if not paths:
        raise CalibrationError(f"{folder}: no images to calibrate on (png, jpg, bmp, tif...)")
    chosen = [paths[i] for i in evenly_spaced(len(paths), count)]
    return [(p.name, read_image(p).rgb) for p in chosen]


def _frames_from_video(spec: str, count: int) -> list[tuple[str, np.ndarray]]:
    """Two passes over a file or sequence: count the frames, then keep evenly spaced ones."""
    with open_source(spec) as source:
        if source.is_live:
            raise CalibrationError(f"{spec}: calibrate on a recorded file or image sequence, not a live source")
        total = sum(1 for _ in source)
    if total == 0:
        raise CalibrationError(f"{spec}: no decodable frames")
    wanted = set(evenly_spaced(total, count))
    frames = []
    with open_source(spec) as source:
        for frame in source:
            if frame.index in wanted:
                frames.append((f"frame{frame.index:06d}", frame.rgb))
    return frames


def load_frames(
    source: str | os.PathLike[str] = BUILTIN,
    count: int = 16,
    size: tuple[int, int] = (256, 256),
    degrade: bool | None = None,
    seed: int = 0,
    kernels: Sequence[np.ndarray] = (),
) -> list[CalibrationFrame]:
    """Frames for calibration from `source` (BUILTIN, BUILTIN_HELDOUT, an image folder, a video
    file, an image sequence as a folder/printf/glob pattern). `size` is (height, width). `degrade` (default:
    only for BUILTIN) applies training's random degradations and keeps the clean frame as GT.
    Raises CalibrationError for an empty or unreadable source."""
    if count < 1:
        raise CalibrationError(f"need at least one calibration frame, got {count}")
    height, width = size
    text = os.fspath(source)
    try:
        builtin = text in BUILTIN_PHOTOS
        if builtin:
            # Several crops per photo when more frames are asked for than there are photos.
            raw = [(p.name, read_image(p).rgb) for p in builtin_photo_paths(text)]
            degrade = True if degrade is None else degrade
        elif Path(text).is_dir() and list_images(Path(text)):
            raw = _images_from_folder(Path(text), count)
        else:
            raw = _frames_from_video(text, count)
    except InputError as exc:
        raise CalibrationError(f"calibration source unreadable: {exc}") from exc
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count if builtin else len(raw)):
        name, image = raw[i % len(raw)]
        clean = _crop_for(image, i // len(raw), height, width)
        if degrade:
            frames.append(CalibrationFrame(f"{name}#{i}", synthesize(clean, rng, kernels=kernels), clean))
        else:
            frames.append(CalibrationFrame(f"{name}#{i}", clean))
    return frames


def _crop_for(image: np.ndarray, variant: int, height: int, width: int) -> np.ndarray:
    """The centre crop for the first use of a photo, then crops shifted across it."""
    if variant == 0:
        return centre_crop(image, height, width)
    h, w = image.shape[:2]
    if h < height or w < width:
        return centre_crop(image, height, width)
    rng = np.random.default_rng(variant)
    top, left = int(rng.integers(0, h - height + 1)), int(rng.integers(0, w - width + 1))
    return np.ascontiguousarray(image[top : top + height, left : left + width])
