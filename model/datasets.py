"""Training and validation datasets: synthetic pairs from clean photos, and real LQ/GT pairs.

Both return `(lq, gt)` as float32 CHW tensors in [0, 1]. Randomness is seeded per item:
item i of epoch e draws from `np.random.default_rng((seed, e, i))`, so a sample does not depend
on the order items are fetched in, on the number of DataLoader workers, or on earlier epochs.
Call `set_epoch(e)` before each epoch (as with DistributedSampler). With
`persistent_workers=True` the workers keep a copy of the dataset, so set the epoch before the
DataLoader is iterated for the first time, or do not use persistent workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from model.degradations import DegradationConfig, apply_case, synthesize
from runtime.errors import InputError
from runtime.image_io import centre_crop, list_images, read_rgb8

# A module-level default (frozen, so sharing it is safe) rather than a call in the signature.
_DEFAULT_CONFIG = DegradationConfig()

# Loading more images than this shows a progress bar (a few seconds of JPEG decoding).
_PROGRESS_THRESHOLD = 100


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 float32 -> 3xHxW tensor that owns its memory (safe to batch and pin)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))


def _pad_to(img: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad bottom/right so both sides are at least `size` (no-op when big enough)."""
    pad_h = max(0, size - img.shape[0])
    pad_w = max(0, size - img.shape[1])
    if pad_h == 0 and pad_w == 0:
        return img
    # numpy reflects repeatedly when the pad is longer than the image, so tiny images work.
    return np.pad(img, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")


def _crop_window(rng: np.random.Generator, shape: tuple[int, ...], size: int) -> tuple[int, int]:
    top = int(rng.integers(shape[0] - size + 1))
    left = int(rng.integers(shape[1] - size + 1))
    return top, left


def _random_dihedral(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 8 flips/90-degree rotations: photos have no preferred orientation for noise."""
    img = np.rot90(img, int(rng.integers(4)))
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def _check_crop_size(crop_size: int | None) -> None:
    if crop_size is not None and crop_size < 1:
        raise InputError(f"crop_size must be a positive number of pixels, got {crop_size}")


class CleanFolderDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Clean photos under `root`, degraded on the fly by `synthesize`.

    Item i: image i modulo the image count, a random `crop_size` crop (smaller images are
    reflect-padded), a random flip/rotation, then a random degradation. `length` sets the
    epoch size (default: the image count), so small folders can give long epochs. With
    `cache` all images are decoded once into RAM as uint8 (the 432 training photos take
    about 200 MB).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        crop_size: int,
        config: DegradationConfig = _DEFAULT_CONFIG,
        kernels: Sequence[np.ndarray] = (),
        seed: int = 0,
        length: int | None = None,
        cache: bool = True,
    ) -> None:
        _check_crop_size(crop_size)
        self.paths = list_images(root, recursive=True)
        if not self.paths:
            raise InputError(f"{root}: no images found (extensions are matched case-insensitively)")
        if length is not None and length < 1:
            raise InputError(f"length must be >= 1, got {length}")
        self.crop_size = crop_size
        self.config = config
        self.kernels = tuple(kernels)
        self.seed = seed
        self.length = len(self.paths) if length is None else length
        self.epoch = 0
        self._images: list[np.ndarray] | None = None
        if cache:
            self._images = [
                read_rgb8(p)
                for p in tqdm(
                    self.paths,
                    desc=f"loading {Path(root).name}",
                    disable=len(self.paths) < _PROGRESS_THRESHOLD,
                    leave=False,
                )
            ]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _image(self, index: int) -> np.ndarray:
        if self._images is not None:
            return self._images[index]
        return read_rgb8(self.paths[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        rng = np.random.default_rng((self.seed, self.epoch, index))
        img = _pad_to(self._image(index % len(self.paths)), self.crop_size)
        top, left = _crop_window(rng, img.shape, self.crop_size)
        patch = img[top : top + self.crop_size, left : left + self.crop_size]
        gt = _random_dihedral(patch, rng).astype(np.float32) / np.float32(255.0)
        lq = synthesize(gt, rng, self.config, self.kernels)
        return _to_tensor(lq), _to_tensor(gt)


# --------------------------------------------------------------------------- real pairs

PAIRED_LAYOUTS: tuple[str, ...] = ("gopro", "sidd", "flat")


def _match(
    lq: list[Path],
    gt: list[Path],
    partner_of_lq: Callable[[Path], Path],
    partner_of_gt: Callable[[Path], Path],
) -> list[tuple[Path, Path]]:
    """Pair two file lists through name mappings; any file without its partner is an error."""
    gt_set, lq_set = set(gt), set(lq)
    for path in lq:
        if partner_of_lq(path) not in gt_set:
            raise InputError(f"{path}: missing ground-truth partner {partner_of_lq(path)}")
    for path in gt:
        if partner_of_gt(path) not in lq_set:
            raise InputError(f"{path}: missing degraded partner {partner_of_gt(path)}")
    return [(path, partner_of_lq(path)) for path in lq]


def _subfolders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _pairs_flat(root: Path) -> list[tuple[Path, Path]]:
    lq_dir, gt_dir = root / "lq", root / "gt"
    return _match(
        list_images(lq_dir),
        list_images(gt_dir),
        lambda p: gt_dir / p.name,
        lambda p: lq_dir / p.name,
    )


def _pairs_gopro(root: Path) -> list[tuple[Path, Path]]:
    pairs: list[tuple[Path, Path]] = []
    for sequence in _subfolders(root):
        blur_dir, sharp_dir = sequence / "blur", sequence / "sharp"
        if not blur_dir.is_dir() and not sharp_dir.is_dir():
            continue  # not a sequence folder
        if not (blur_dir.is_dir() and sharp_dir.is_dir()):
            raise InputError(f"{sequence}: needs both blur/ and sharp/ folders")
        pairs += _match(
            list_images(blur_dir),
            list_images(sharp_dir),
            lambda p, d=sharp_dir: d / p.name,
            lambda p, d=blur_dir: d / p.name,
        )
    return pairs


def _pairs_sidd(root: Path) -> list[tuple[Path, Path]]:
    # SIDD names the pair 0001_NOISY_SRGB_010.PNG / 0001_GT_SRGB_010.PNG in one scene folder.
    pairs: list[tuple[Path, Path]] = []
    for scene in _subfolders(root):
        files = list_images(scene)
        noisy = [p for p in files if "NOISY" in p.name]
        gt = [p for p in files if "GT" in p.name and "NOISY" not in p.name]
        pairs += _match(
            noisy,
            gt,
            lambda p: p.with_name(p.name.replace("NOISY", "GT")),
            lambda p: p.with_name(p.name.replace("GT", "NOISY")),
        )
    return pairs


def _detect_layout(root: Path) -> str:
    if (root / "lq").is_dir() and (root / "gt").is_dir():
        return "flat"
    subfolders = _subfolders(root)
    if any((s / "blur").is_dir() and (s / "sharp").is_dir() for s in subfolders):
        return "gopro"
    if any("NOISY" in p.name for s in subfolders for p in list_images(s)):
        return "sidd"
    raise InputError(
        f"{root}: cannot tell the paired layout; expected lq/ + gt/ (flat), "
        "<sequence>/blur + <sequence>/sharp (gopro) or <scene>/*NOISY* + *GT* (sidd)"
    )


class PairedFolderDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Real degraded/clean pairs in one of three layouts (`layout="auto"` detects it).

    - "gopro": root/<sequence>/blur/*.png with root/<sequence>/sharp/*.png (same names)
    - "sidd": root/<scene>/ holding *NOISY* files whose partner has GT in place of NOISY
    - "flat": root/lq/* and root/gt/* with identical file names
    With `crop_size` both images get the same random crop (reflect-padded when smaller);
    `crop_size=None` returns whole images. A missing partner or a size mismatch raises
    InputError naming the file.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        crop_size: int | None = None,
        layout: str = "auto",
        seed: int = 0,
    ) -> None:
        _check_crop_size(crop_size)
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"{root}: not a folder")
        if layout == "auto":
            layout = _detect_layout(root)
        builders = {"gopro": _pairs_gopro, "sidd": _pairs_sidd, "flat": _pairs_flat}
        if layout not in builders:
            raise InputError(f"unknown layout {layout!r} (use auto, {', '.join(PAIRED_LAYOUTS)})")
        self.layout = layout
        self.pairs = builders[layout](root)
        if not self.pairs:
            raise InputError(f"{root}: no image pairs found in the {layout} layout")
        self.crop_size = crop_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self.pairs):
            raise IndexError(f"index {index} out of range for {len(self.pairs)} pairs")
        lq_path, gt_path = self.pairs[index]
        lq, gt = read_rgb8(lq_path), read_rgb8(gt_path)
        if lq.shape != gt.shape:
            raise InputError(
                f"{lq_path}: size {lq.shape[1]}x{lq.shape[0]} does not match {gt_path} ({gt.shape[1]}x{gt.shape[0]})"
            )
        if self.crop_size is not None:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            lq, gt = _pad_to(lq, self.crop_size), _pad_to(gt, self.crop_size)
            top, left = _crop_window(rng, lq.shape, self.crop_size)
            window = (
                slice(top, top + self.crop_size),
                slice(left, left + self.crop_size),
            )
            lq, gt = lq[window], gt[window]
        scale = np.float32(255.0)
        return _to_tensor(lq.astype(np.float32) / scale), _to_tensor(gt.astype(np.float32) / scale)


def load_clean_images(folder: Path, limit: int, crop: int) -> list[np.ndarray]:
    """The first `limit` photos of `folder` (all when limit <= 0), centre-cropped to `crop` (0: whole)."""
    paths = list_images(folder)
    if not paths:
        raise InputError(f"{folder}: no images found")
    paths = paths[:limit] if limit > 0 else paths

    def load(path: Path) -> np.ndarray:
        # Cropped as read, so only one whole photo is held at a time.
        img = read_rgb8(path).astype(np.float32) / 255
        return img if crop <= 0 else centre_crop(img, min(crop, img.shape[0]), min(crop, img.shape[1]))

    return [load(p) for p in paths]


def validation_pairs(
    folder: Path, count: int, crop: int, case: str, multiple: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed degraded/clean 1x3xHxW centre crops (seed = image index), so every validation is comparable.

    Sides are cut to a multiple of `multiple` (the model's pad multiple) so no padding enters the score.
    """
    if count <= 0 or not folder.is_dir():
        return []
    crop -= crop % multiple
    pairs = []
    for i, path in enumerate(list_images(folder)[:count]):
        img = read_rgb8(path).astype(np.float32) / 255.0
        h, w = img.shape[:2]
        clean = centre_crop(img, min(crop, h - h % multiple), min(crop, w - w % multiple))
        lq = apply_case(clean, case, seed=i)
        pairs.append((_to_tensor(lq).unsqueeze(0), _to_tensor(clean).unsqueeze(0)))
    return pairs
