"""Reading and writing still images for the whole toolkit (numpy + OpenCV only).

`runtime/` must run on a Jetson without torch, so this module uses numpy and OpenCV only.
Every image travels as an `Image`: float32 RGB in [0, 1] plus what is needed to write it back
the way it came (bit depth, grey, alpha).

Files are read with `np.fromfile` + `cv2.imdecode` rather than `cv2.imread`, because imread
cannot open non-ASCII paths on every platform, and because having the bytes lets us detect a
truncated JPEG or PNG, which OpenCV may otherwise decode with a silent grey fill.

Orientation: images are returned as stored; EXIF orientation is not applied, so that a
restored image written back lines up pixel for pixel with its source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime.atomic_io import discard, temporary_sibling
from runtime.errors import InputError

# Extensions we both read and write. Lower case; matching is case-insensitive.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
)

# Formats that can hold 16-bit samples and an alpha channel when OpenCV writes them.
_SIXTEEN_BIT_EXTENSIONS = (".png", ".tif", ".tiff")
_ALPHA_EXTENSIONS = (".png", ".tif", ".tiff", ".webp")

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The IEND chunk type and its fixed CRC: every complete PNG ends with these 8 bytes.
_PNG_IEND = b"IEND\xaeB`\x82"
_BMP_SIGNATURE = b"BM"

_JPEG_WRITE_QUALITY = 95


@dataclass(frozen=True, eq=False)
class Image:
    """A decoded image plus what is needed to write it back as it was read.

    `eq=False` because numpy arrays have no single truth value: the generated `__eq__` and
    `__hash__` of a frozen dataclass would raise on them, so identity semantics are used.
    """

    rgb: np.ndarray  # float32 HxWx3 in [0, 1]
    alpha: np.ndarray | None  # float32 HxW in [0, 1], or None
    bit_depth: int  # 8 or 16
    grey: bool  # the source had one colour channel

    def __post_init__(self) -> None:
        # Catch a wrong array early, where it was built, not deep inside an encoder.
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.float32:
            raise InputError(f"Image.rgb must be float32 HxWx3, got {self.rgb.dtype} {self.rgb.shape}")
        if self.alpha is not None and (self.alpha.shape != self.rgb.shape[:2] or self.alpha.dtype != np.float32):
            raise InputError(
                f"Image.alpha must be float32 {self.rgb.shape[:2]}, got {self.alpha.dtype} {self.alpha.shape}"
            )
        if self.bit_depth not in (8, 16):
            raise InputError(f"Image.bit_depth must be 8 or 16, got {self.bit_depth}")

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


# --------------------------------------------------------------------------- reading


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image file")
    try:
        data = np.fromfile(path, dtype=np.uint8).tobytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not data:
        raise InputError(f"{path}: file is empty")
    return data


def _check_complete(path: Path, data: bytes) -> None:
    """Reject files whose container says they were cut short.

    OpenCV decodes a truncated JPEG without an error (the missing rows come out grey), so the
    end markers are the only reliable signal. Some cameras pad JPEGs with zero bytes after
    the EOI marker, which is why trailing zeros are ignored there.
    """
    if data.startswith(_JPEG_SOI):
        if not data.rstrip(b"\x00").endswith(_JPEG_EOI):
            raise InputError(f"{path}: truncated JPEG (no end-of-image marker)")
    elif data.startswith(_PNG_SIGNATURE):
        if not data.endswith(_PNG_IEND):
            raise InputError(f"{path}: truncated PNG (no IEND chunk at the end)")
    elif data.startswith(_BMP_SIGNATURE) and len(data) >= 6:
        declared = int.from_bytes(data[2:6], "little")
        if len(data) < declared:
            raise InputError(f"{path}: truncated BMP ({len(data)} of {declared} bytes)")


def _decode(path: Path, data: bytes) -> np.ndarray:
    try:
        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise InputError(f"{path}: cannot be decoded ({str(exc).strip().splitlines()[-1]})") from exc
    if decoded is None:
        raise InputError(f"{path}: not a readable image (corrupt or unsupported format)")
    return decoded


def _to_unit_float(path: Path, pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """Scale integer samples to float32 [0, 1] and report the bit depth."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / np.float32(255.0), 8
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / np.float32(65535.0), 16
    raise InputError(f"{path}: unsupported sample type {pixels.dtype} (need 8- or 16-bit)")


def read_image(path: str | os.PathLike[str]) -> Image:
    """Read an 8- or 16-bit grey, grey+alpha, RGB or RGBA image.

    Grey sources are replicated to three channels (and `grey` is set so that `write_image`
    stores one channel again). Raises InputError, one line naming the file, for a missing
    path, a directory, an empty, corrupt or truncated file, or an unsupported sample type.
    """
    path = Path(path)
    return image_from_pixels(path, read_pixels(path))


def read_pixels(path: str | os.PathLike[str]) -> np.ndarray:
    """The image at `path` as OpenCV decodes it (HxW grey, or HxWxC BGR, BGRA...; 8 or 16 bit),
    checked as `read_image` checks it: for what can use the decoded bytes without a float copy
    (8-bit restoration, `Pipeline.restore_bgr8`). `image_from_pixels` makes the `Image`."""
    path = Path(path)
    data = _read_bytes(path)
    _check_complete(path, data)
    pixels = _decode(path, data)
    return pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels


def image_from_pixels(path: str | os.PathLike[str], pixels: np.ndarray) -> Image:
    """The `Image` of pixels `read_pixels(path)` returned (`path` names the file in errors)."""
    path = Path(path)
    values, bit_depth = _to_unit_float(path, pixels)

    alpha: np.ndarray | None = None
    if values.ndim == 2:
        grey = True
        rgb = np.repeat(values[:, :, None], 3, axis=2)
    elif values.shape[2] == 2:  # grey + alpha, should a decoder ever hand it over as such
        grey = True
        rgb = np.repeat(values[:, :, :1], 3, axis=2)
        alpha = np.ascontiguousarray(values[:, :, 1])
    elif values.shape[2] == 3:
        grey = False
        rgb = cv2.cvtColor(values, cv2.COLOR_BGR2RGB)
    elif values.shape[2] == 4:
        grey = False
        rgb = cv2.cvtColor(np.ascontiguousarray(values[:, :, :3]), cv2.COLOR_BGR2RGB)
        alpha = np.ascontiguousarray(values[:, :, 3])
    else:
        raise InputError(f"{path}: unsupported channel count {values.shape[2]}")
    return Image(rgb=np.ascontiguousarray(rgb), alpha=alpha, bit_depth=bit_depth, grey=grey)


def read_rgb8(path: str | os.PathLike[str]) -> np.ndarray:
    """Read any supported image as uint8 HxWx3 RGB (alpha dropped, 16-bit rounded to 8).

    Convenience for datasets, which train on 8-bit RGB whatever the source was.
    """
    return _quantize(read_image(path).rgb, 8)


# --------------------------------------------------------------------------- writing


def _quantize(values: np.ndarray, bit_depth: int) -> np.ndarray:
    top = 255.0 if bit_depth == 8 else 65535.0
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.rint(np.clip(values, 0.0, 1.0) * np.float32(top)).astype(dtype)


def _to_opencv_layout(image: Image) -> np.ndarray:
    """Build the array OpenCV writes: grey (HxW), BGR or BGRA, at the image's bit depth."""
    if image.grey:
        # Channels were replicated on read; the mean is exact for them and neutral for a
        # restored image whose channels have drifted apart slightly.
        colour = image.rgb.mean(axis=2, dtype=np.float32)
    else:
        colour = cv2.cvtColor(image.rgb, cv2.COLOR_RGB2BGR)
    if image.alpha is not None:
        if image.grey:
            # OpenCV cannot write grey+alpha, so store it as BGRA with equal channels.
            colour = np.repeat(colour[:, :, None], 3, axis=2)
        colour = np.concatenate([colour, image.alpha[:, :, None]], axis=2)
    return _quantize(colour, image.bit_depth)


def check_output_format(path: str | os.PathLike[str], bit_depth: int = 8, alpha: bool = False) -> None:
    """InputError when `path`'s extension cannot hold an image of `bit_depth` (with `alpha`).

    Cheap, so callers check every output before any slow work, not after it."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise InputError(f"{path}: unsupported extension {path.suffix!r} (use one of {', '.join(IMAGE_EXTENSIONS)})")
    # Refuse rather than silently lose data the caller asked to keep.
    if bit_depth == 16 and ext not in _SIXTEEN_BIT_EXTENSIONS:
        raise InputError(f"{path}: {ext} cannot store 16-bit samples (use .png or .tiff)")
    if alpha and ext not in _ALPHA_EXTENSIONS:
        raise InputError(f"{path}: {ext} cannot store an alpha channel (use .png, .tiff or .webp)")


def _encode(path: Path, pixels: np.ndarray) -> bytes:
    """`pixels` in OpenCV's layout (grey, BGR or BGRA; 8 or 16 bit) as the bytes of `path`'s format."""
    ext = path.suffix.lower()
    check_output_format(path, 16 if pixels.dtype == np.uint16 else 8, pixels.ndim == 3 and pixels.shape[2] == 4)
    params: list[int] = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_WRITE_QUALITY]
    try:
        ok, buffer = cv2.imencode(ext, pixels, params)
    except cv2.error as exc:
        raise InputError(f"{path}: cannot be encoded ({str(exc).strip().splitlines()[-1]})") from exc
    if not ok:
        raise InputError(f"{path}: OpenCV could not encode the image as {ext}")
    return buffer.tobytes()


def check_output_folder(folder: str | os.PathLike[str]) -> None:
    """InputError unless a file can be written in `folder`: a file is made and removed at once,
    which answers for permissions, read-only file systems and the rest alike."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: the output folder does not exist")
    probe = temporary_sibling(folder / "write-check")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise InputError(f"{folder}: cannot write in the output folder ({exc.strerror or exc})") from exc
    discard(probe)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a unique temporary file in the target folder, then rename over the target.

    The rename is atomic on one file system, so a reader sees the old file or the whole new
    one, never half of it; on any error the temporary file is removed.
    """
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"{path}: output folder {folder} does not exist")
    temporary = temporary_sibling(path)
    try:
        # os.open with 0o666 keeps the usual umask-based permissions (mkstemp would give 0600).
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        discard(temporary)
        raise InputError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
    except BaseException:
        discard(temporary)
        raise


def write_image(path: str | os.PathLike[str], image: Image) -> None:
    """Write `image` at its own bit depth, as one channel when `grey`, with its alpha.

    The whole file is encoded in memory first, then written atomically, so no partial file
    is ever left at `path`. Raises InputError for an unsupported extension, a format that
    cannot hold the bit depth or alpha, a missing output folder or an I/O failure.
    """
    path = Path(path)
    _write_atomically(path, _encode(path, _to_opencv_layout(image)))


def write_pixels(path: str | os.PathLike[str], pixels: np.ndarray) -> None:
    """Write `pixels`, already in OpenCV's layout (HxW grey, HxWx3 BGR or HxWx4 BGRA; uint8 or
    uint16), as they are: what `write_image` does once it has quantised an `Image` into that
    layout. Atomic, with `write_image`'s errors."""
    path = Path(path)
    if pixels.dtype not in (np.uint8, np.uint16) or not (
        pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4))
    ):
        raise InputError(f"{path}: cannot write {pixels.dtype} pixels of shape {pixels.shape} (need 8 or 16 bit)")
    _write_atomically(path, _encode(path, pixels))


# --------------------------------------------------------------------------- folders


def list_images(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Image files in `folder` (by extension, case-insensitive), sorted by path.

    Hidden files (names starting with '.') are skipped: they are editor, OS (macOS '._x.jpg')
    or our own temporary files, never images the user meant.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in candidates if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def centre_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The centre height x width of an HxWxC image, contiguous; InputError when the image is smaller."""
    h, w = image.shape[:2]
    if h < height or w < width:
        raise InputError(f"a {w}x{h} frame is smaller than the crop {width}x{height}: it cannot be centre-cropped")
    top, left = (h - height) // 2, (w - width) // 2
    return np.ascontiguousarray(image[top : top + height, left : left + width])
