"""Tests for runtime/image_io.py: round trips, damaged files, atomic writes, listing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.errors import InputError
from runtime.image_io import Image, list_images, read_image, read_rgb8, write_image


def _pattern(height: int, width: int, channels: int, dtype: type) -> np.ndarray:
    """Deterministic random samples spanning the whole range of `dtype`."""
    top = np.iinfo(dtype).max
    rng = np.random.default_rng(7)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, top + 1, size=shape, dtype=np.int64).astype(dtype)


def _write_with_opencv(path: Path, pixels: np.ndarray) -> None:
    ok, buffer = cv2.imencode(path.suffix, pixels)
    assert ok
    path.write_bytes(buffer.tobytes())


@pytest.mark.parametrize("dtype, bit_depth", [(np.uint8, 8), (np.uint16, 16)])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png_round_trip_is_exact(
    tmp_path: Path, dtype: type, bit_depth: int, channels: int
) -> None:
    source = _pattern(13, 17, channels, dtype)
    src_path = tmp_path / "source.png"
    _write_with_opencv(src_path, source)

    image = read_image(src_path)
    assert image.rgb.shape == (13, 17, 3) and image.rgb.dtype == np.float32
    assert image.bit_depth == bit_depth
    assert image.grey == (channels == 1)
    assert (image.alpha is not None) == (channels == 4)
    assert 0.0 <= image.rgb.min() and image.rgb.max() <= 1.0

    out_path = tmp_path / "copy.png"
    write_image(out_path, image)
    back = cv2.imdecode(np.fromfile(out_path, np.uint8), cv2.IMREAD_UNCHANGED)
    assert back.dtype == dtype
    np.testing.assert_array_equal(
        back, source
    )  # values, channel count and alpha exactly


def test_rgb_channels_come_out_in_rgb_order(tmp_path: Path) -> None:
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 10  # blue
    bgr[..., 2] = 200  # red
    path = tmp_path / "colour.png"
    _write_with_opencv(path, bgr)
    rgb = read_rgb8(path)
    assert rgb[0, 0].tolist() == [200, 0, 10]


def test_grey_is_replicated_to_three_channels(tmp_path: Path) -> None:
    grey = _pattern(6, 9, 1, np.uint8)
    path = tmp_path / "grey.png"
    _write_with_opencv(path, grey)
    image = read_image(path)
    for channel in range(3):
        np.testing.assert_array_equal(np.rint(image.rgb[..., channel] * 255), grey)


def test_alpha_is_preserved_exactly_after_editing_colour(tmp_path: Path) -> None:
    rgba = _pattern(8, 8, 4, np.uint16)
    path = tmp_path / "rgba.png"
    _write_with_opencv(path, rgba)
    image = read_image(path)
    assert image.alpha is not None
    edited = Image(rgb=1.0 - image.rgb, alpha=image.alpha, bit_depth=16, grey=False)
    write_image(tmp_path / "edited.png", edited)
    again = read_image(tmp_path / "edited.png")
    assert again.alpha is not None
    np.testing.assert_array_equal(np.rint(again.alpha * 65535), rgba[..., 3])


def test_jpeg_round_trip_is_close(tmp_path: Path) -> None:
    smooth = np.tile(np.linspace(0, 1, 32, dtype=np.float32)[None, :, None], (16, 1, 3))
    write_image(
        tmp_path / "x.jpg", Image(rgb=smooth, alpha=None, bit_depth=8, grey=False)
    )
    back = read_image(tmp_path / "x.jpg")
    assert back.bit_depth == 8
    assert np.abs(back.rgb - smooth).max() < 4 / 255


def test_unicode_path(tmp_path: Path) -> None:
    path = tmp_path / "bild_ä_图.png"
    _write_with_opencv(path, _pattern(3, 4, 3, np.uint8))
    assert read_rgb8(path).shape == (3, 4, 3)


def _valid_file(tmp_path: Path, ext: str) -> Path:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    path = tmp_path / f"good{ext}"
    _write_with_opencv(path, pixels)
    return path


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_file_raises_naming_it(tmp_path: Path, ext: str) -> None:
    data = _valid_file(tmp_path, ext).read_bytes()
    broken = tmp_path / f"broken{ext}"
    broken.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match="broken" + ext.replace(".", r"\.")) as info:
        read_image(broken)
    # "truncated" comes from our end-marker check, not from the decoder: OpenCV 4.x builds
    # (JetPack's) decode a cut JPEG with grey fill instead of failing.
    assert "truncated" in str(info.value)
    assert "\n" not in str(info.value)


def test_random_bytes_raise_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    path.write_bytes(
        np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    )
    with pytest.raises(InputError, match=r"noise\.png"):
        read_image(path)


@pytest.mark.parametrize("name", ["missing.png", ""])
def test_missing_path_and_directory_raise(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match=str(tmp_path)):
        read_image(tmp_path / name)


def test_empty_file_raises(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_image(tmp_path / "empty.jpg")


def _image() -> Image:
    return Image(
        rgb=np.full((4, 4, 3), 0.5, np.float32), alpha=None, bit_depth=8, grey=False
    )


def test_bad_extension_raises_and_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\.xyz"):
        write_image(tmp_path / "out.xyz", _image())
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.jpg"
    target.write_bytes(b"old contents")
    sixteen_bit = Image(rgb=_image().rgb, alpha=None, bit_depth=16, grey=False)
    with pytest.raises(InputError, match="16-bit"):
        write_image(target, sixteen_bit)  # JPEG cannot hold 16 bits
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jpg"]


def test_write_replaces_existing_file_without_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old contents")
    write_image(target, _image())
    assert read_rgb8(target)[0, 0].tolist() == [128, 128, 128]
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_write_into_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        write_image(tmp_path / "nope" / "out.png", _image())


def test_image_rejects_wrong_arrays() -> None:
    with pytest.raises(InputError):
        Image(rgb=np.zeros((4, 4, 3), np.float64), alpha=None, bit_depth=8, grey=False)
    with pytest.raises(InputError):
        Image(
            rgb=np.zeros((4, 4, 3), np.float32),
            alpha=np.zeros((4, 5), np.float32),
            bit_depth=8,
            grey=False,
        )
    with pytest.raises(InputError):
        Image(rgb=np.zeros((4, 4, 3), np.float32), alpha=None, bit_depth=12, grey=False)


def test_list_images_sorted_filtered_and_recursive(tmp_path: Path) -> None:
    for name in ["b.PNG", "a.jpg", "notes.txt", ".hidden.png", "sub/c.png"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG"]
    assert [
        p.relative_to(tmp_path).as_posix()
        for p in list_images(tmp_path, recursive=True)
    ] == [
        "a.jpg",
        "b.PNG",
        "sub/c.png",
    ]
    with pytest.raises(InputError):
        list_images(tmp_path / "a.jpg")


def test_reads_real_photos(shared_data: Path) -> None:
    # A BMP stored as grey (mode L) and a JPEG from the training set.
    bridge = read_image(shared_data / "val" / "Set14" / "bridge.bmp")
    assert bridge.grey and bridge.bit_depth == 8
    np.testing.assert_array_equal(bridge.rgb[..., 0], bridge.rgb[..., 2])
    photo = read_rgb8(shared_data / "train" / "100007.jpg")
    assert photo.dtype == np.uint8 and photo.shape[2] == 3 and photo.std() > 10
