"""Calibration sources: the built-in photos, image folders, video files; bad sources fail clearly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.sources import (
    BUILTIN,
    BUILTIN_HELDOUT,
    BUILTIN_PHOTOS,
    builtin_photo_paths,
    centre_crop,
    evenly_spaced,
    load_frames,
)
from runtime.errors import CalibrationError


def test_builtin_photos_ship_with_the_installed_package_and_are_split() -> None:
    calib, heldout = builtin_photo_paths(BUILTIN), builtin_photo_paths(BUILTIN_HELDOUT)
    assert [p.name for p in calib] == list(BUILTIN_PHOTOS[BUILTIN])
    assert not {p.name for p in calib} & {p.name for p in heldout}  # held-out scenes are never calibrated on
    assert all(p.stat().st_size > 10_000 for p in calib + heldout)


def test_builtin_frames_are_degraded_copies_of_clean_crops() -> None:
    frames = load_frames(BUILTIN, count=6, size=(64, 96), seed=3)
    assert len(frames) == 6
    for frame in frames:
        assert frame.image.shape == (64, 96, 3) and frame.image.dtype == np.float32
        assert frame.clean is not None and frame.clean.shape == frame.image.shape
        assert 0.0 <= frame.image.min() and frame.image.max() <= 1.0
    # More frames than photos: later frames are other crops, not repeats.
    assert not np.array_equal(frames[0].clean, frames[4].clean)
    assert any(not np.allclose(f.image, f.clean, atol=1 / 255) for f in frames)
    again = load_frames(BUILTIN, count=6, size=(64, 96), seed=3)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, again, strict=True))  # seeded


def test_evenly_spaced_covers_the_whole_length() -> None:
    assert evenly_spaced(100, 5) == [0, 25, 50, 74, 99]
    assert evenly_spaced(3, 8) == [0, 1, 2]
    assert evenly_spaced(9, 1) == [4]


def test_centre_crop_scales_up_small_images_and_crops_the_middle() -> None:
    image = np.zeros((20, 40, 3), np.float32)
    image[:, 18:22] = 1.0
    crop = centre_crop(image, 32, 32)
    assert crop.shape == (32, 32, 3)
    assert crop[:, 15:17].mean() > 0.9 and crop[:, :4].max() < 0.1


def _write_png(path: Path, value: int) -> None:
    cv2.imwrite(str(path), np.full((40, 50, 3), value, np.uint8))


def test_image_folder_frames_are_taken_as_they_are(tmp_path: Path) -> None:
    for i in range(5):
        _write_png(tmp_path / f"{i}.png", 40 * i)
    frames = load_frames(tmp_path, count=3, size=(32, 32))
    assert len(frames) == 3 and all(f.clean is None for f in frames)
    assert [round(float(f.image.mean()) * 255) for f in frames] == [0, 80, 160]


def test_video_file_is_sampled_evenly(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    for i in range(20):
        writer.write(np.full((32, 48, 3), 10 * i, np.uint8))
    writer.release()
    frames = load_frames(path, count=4, size=(32, 32))
    assert [f.name for f in frames] == [f"frame{i:06d}#{n}" for n, i in enumerate([0, 6, 13, 19])]
    means = [float(f.image.mean()) * 255 for f in frames]
    assert means == sorted(means) and means[-1] - means[0] > 150


@pytest.mark.parametrize("kind", ["empty folder", "corrupt image", "missing", "not a video"])
def test_bad_sources_raise_calibration_errors(tmp_path: Path, kind: str) -> None:
    if kind == "empty folder":
        source = tmp_path / "empty"
        source.mkdir()
    elif kind == "corrupt image":
        source = tmp_path / "frames"
        source.mkdir()
        _write_png(source / "a.png", 10)
        (source / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    elif kind == "missing":
        source = tmp_path / "nothing.mp4"
    else:
        source = tmp_path / "notes.mp4"
        source.write_text("not a video")
    with pytest.raises(CalibrationError) as info:
        load_frames(source, count=2, size=(32, 32))
    assert str(source) in str(info.value) and "\n" not in str(info.value)


def test_frame_count_must_be_positive() -> None:
    with pytest.raises(CalibrationError, match="at least one"):
        load_frames(BUILTIN, count=0)
