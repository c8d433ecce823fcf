"""Tests for model/datasets.py on the real training photos and on tiny paired folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model.datasets import CleanFolderDataset, PairedFolderDataset
from runtime.errors import InputError


@pytest.fixture(scope="module")
def train_set(shared_data: Path) -> CleanFolderDataset:
    # cache=False: the test touches only a few images, so decoding all 432 would be waste.
    return CleanFolderDataset(shared_data / "train", crop_size=64, seed=3, length=6, cache=False)


def test_clean_items_have_the_right_shape_and_range(
    train_set: CleanFolderDataset,
) -> None:
    assert len(train_set) == 6
    assert len(train_set.paths) == 432  # SOURCES.md in the folder is not an image
    lq, gt = train_set[0]
    for tensor in (lq, gt):
        assert tensor.shape == (3, 64, 64) and tensor.dtype == torch.float32
        assert 0.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0
    # Each step is optional, so an item may come out clean; most must not.
    degraded = sum(not torch.equal(*train_set[i]) for i in range(len(train_set)))
    assert degraded >= 4
    with pytest.raises(IndexError):
        train_set[6]


def test_clean_items_reproducible_per_seed_epoch_index(shared_data: Path) -> None:
    def make(seed: int) -> CleanFolderDataset:
        return CleanFolderDataset(shared_data / "train", crop_size=64, seed=seed, length=4, cache=False)

    first, again, other_seed = make(3), make(3), make(4)
    # Fetch in a different order: item i must not depend on what was fetched before it.
    a = [first[i] for i in range(4)]
    b = [again[i] for i in reversed(range(4))][::-1]
    for (lq_a, gt_a), (lq_b, gt_b) in zip(a, b, strict=True):
        assert torch.equal(lq_a, lq_b) and torch.equal(gt_a, gt_b)
    assert not torch.equal(other_seed[1][1], a[1][1])

    first.set_epoch(1)
    assert not torch.equal(first[1][1], a[1][1])  # new crop/rotation in a new epoch
    first.set_epoch(0)
    assert torch.equal(first[1][0], a[1][0])


def test_clean_length_wraps_around_images(tmp_path: Path) -> None:
    # Two images smaller than the crop: reflect padding, and index modulo the image count.
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "a.png"), rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.full((40, 10, 3), 200, np.uint8))
    dataset = CleanFolderDataset(tmp_path, crop_size=48, length=5, seed=1)
    assert len(dataset) == 5
    for index in range(5):
        lq, gt = dataset[index]
        assert lq.shape == gt.shape == (3, 48, 48)
    # Items 1 and 3 come from b.png, which is flat grey 200 before degradation.
    assert torch.allclose(dataset[3][1], torch.full((3, 48, 48), 200 / 255))


def test_clean_empty_folder_raises(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match=str(tmp_path)):
        CleanFolderDataset(tmp_path, crop_size=32)


# --------------------------------------------------------------------------- paired


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels)


def _pair(rng: np.random.Generator, size: tuple[int, int] = (24, 32)) -> tuple[np.ndarray, np.ndarray]:
    gt = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    lq = (gt // 2).astype(np.uint8)  # a known relation lets the test check the pairing
    return lq, gt


def _make_layout(root: Path, layout: str) -> int:
    rng = np.random.default_rng(0)
    count = 0
    for group in ("s01", "s02"):
        for frame in ("000", "001"):
            lq, gt = _pair(rng)
            if layout == "gopro":
                _save(root / group / "blur" / f"{frame}.png", lq)
                _save(root / group / "sharp" / f"{frame}.png", gt)
            elif layout == "sidd":
                _save(root / group / f"{group}_NOISY_SRGB_{frame}.PNG", lq)
                _save(root / group / f"{group}_GT_SRGB_{frame}.PNG", gt)
            else:
                _save(root / "lq" / f"{group}_{frame}.png", lq)
                _save(root / "gt" / f"{group}_{frame}.png", gt)
            count += 1
    return count


def _check_pairing(lq: torch.Tensor, gt: torch.Tensor) -> None:
    # lq was written as gt // 2, so matching partners satisfy it exactly.
    gt8 = torch.round(gt * 255).to(torch.int64)
    lq8 = torch.round(lq * 255).to(torch.int64)
    assert torch.equal(lq8, gt8 // 2)


@pytest.mark.parametrize("layout", ["gopro", "sidd", "flat"])
def test_paired_layouts_are_detected_and_paired(tmp_path: Path, layout: str) -> None:
    count = _make_layout(tmp_path, layout)
    whole = PairedFolderDataset(tmp_path)
    assert whole.layout == layout and len(whole) == count
    for index in range(count):
        lq, gt = whole[index]
        assert lq.shape == gt.shape == (3, 24, 32) and lq.dtype == torch.float32
        _check_pairing(lq, gt)

    cropped = PairedFolderDataset(tmp_path, crop_size=16, layout=layout, seed=2)
    lq, gt = cropped[1]
    assert lq.shape == gt.shape == (3, 16, 16)
    _check_pairing(lq, gt)  # the same window on both
    assert torch.equal(cropped[1][1], gt)  # reproducible


def test_paired_crop_larger_than_image_pads_both(tmp_path: Path) -> None:
    _make_layout(tmp_path, "flat")
    lq, gt = PairedFolderDataset(tmp_path, crop_size=40)[0]
    assert lq.shape == gt.shape == (3, 40, 40)
    _check_pairing(lq, gt)


@pytest.mark.parametrize("layout", ["gopro", "sidd", "flat"])
def test_paired_missing_partner_raises_naming_the_file(tmp_path: Path, layout: str) -> None:
    _make_layout(tmp_path, layout)
    partner = {
        "gopro": tmp_path / "s02" / "sharp" / "001.png",
        "sidd": tmp_path / "s02" / "s02_GT_SRGB_001.PNG",
        "flat": tmp_path / "gt" / "s02_001.png",
    }[layout]
    partner.unlink()
    with pytest.raises(InputError, match=partner.name):
        PairedFolderDataset(tmp_path, layout=layout)


def test_paired_orphan_ground_truth_raises(tmp_path: Path) -> None:
    _make_layout(tmp_path, "flat")
    (tmp_path / "lq" / "s01_000.png").unlink()
    with pytest.raises(InputError, match=r"gt[/\\]s01_000\.png"):
        PairedFolderDataset(tmp_path)


def test_paired_size_mismatch_raises(tmp_path: Path) -> None:
    _make_layout(tmp_path, "flat")
    _save(tmp_path / "lq" / "s01_001.png", np.zeros((10, 10, 3), np.uint8))
    dataset = PairedFolderDataset(tmp_path)
    with pytest.raises(InputError, match="s01_001.png"):
        dataset[1]


def test_paired_unknown_layout_raises(tmp_path: Path) -> None:
    (tmp_path / "random").mkdir()
    with pytest.raises(InputError, match="layout"):
        PairedFolderDataset(tmp_path)
