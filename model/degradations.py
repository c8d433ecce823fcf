"""Blind degradation synthesis: blur, resampling, noise and JPEG, seeded and reproducible.

Conventions (keep to them everywhere in the project):
- Images are float32 HxWx3 RGB in [0, 1]. Noise primitives may leave [0, 1]; `jpeg` and
  `quantize_8bit` clip, and `synthesize` always ends with `quantize_8bit`, because real
  inputs reach the model as 8-bit files or frames.
- Kernels are float32 2-D arrays normalised to sum 1.
- Blur is TRUE convolution: the kernel is flipped, then applied with `cv2.filter2D` and
  `BORDER_REFLECT`. With filter2D's default anchor this equals
  `scipy.signal.convolve2d(img, k, mode="same", boundary="symm")` for odd and even kernel
  sizes alike, so blurring a single bright pixel draws the kernel itself (not its flip).
- Randomness comes only from the `np.random.Generator` passed in: the same input and a
  generator built from the same seed give bit-identical output. No global random state.

numpy + OpenCV only (no torch), so the same code can degrade frames for calibration or
benchmarks outside training.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.errors import InputError, ShapeError

# Kernels with a lobe below this are resampling kernels (bicubic), not blur: skip them.
_NEGATIVE_LOBE_TOLERANCE = -1e-6

DOWN_INTERPOLATIONS: tuple[int, ...] = (
    cv2.INTER_AREA,
    cv2.INTER_LINEAR,
    cv2.INTER_CUBIC,
)
UP_INTERPOLATIONS: tuple[int, ...] = (cv2.INTER_LINEAR, cv2.INTER_CUBIC)


def _as_image(img: np.ndarray) -> np.ndarray:
    """Check the HxWx3 layout and hand back a contiguous float32 array."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ShapeError(f"expected an HxWx3 image, got shape {img.shape}")
    return np.ascontiguousarray(img, dtype=np.float32)


def _normalised(kernel: np.ndarray) -> np.ndarray:
    kernel = np.asarray(kernel, dtype=np.float64)
    total = kernel.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError(f"kernel must have a positive finite sum, got {total}")
    return (kernel / total).astype(np.float32)


def _check_odd_size(size: int) -> None:
    # An odd size puts the kernel centre on a pixel, so a symmetric blur does not shift.
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd number, got {size}")


# --------------------------------------------------------------------------- noise


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise of standard deviation `sigma` (in [0, 1] units: 25/255...).

    Independent per pixel and channel; no clipping here.
    """
    img = _as_image(img)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    return img + np.float32(sigma) * noise


def poisson_noise(img: np.ndarray, peak: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: each value v becomes Poisson(v * peak) / peak.

    `peak` is the photon count of a full-scale pixel: lower means noisier. Negative inputs
    count as zero photons.
    """
    img = _as_image(img)
    if peak <= 0:
        raise ValueError(f"peak must be > 0, got {peak}")
    photons = rng.poisson(np.clip(img, 0.0, None).astype(np.float64) * peak)
    return (photons / peak).astype(np.float32)


# --------------------------------------------------------------------------- kernels


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float = 0.0) -> np.ndarray:
    """A `size` x `size` Gaussian kernel, summing to 1.

    Isotropic when `sigma_x == sigma_y`; otherwise anisotropic with its x axis rotated by
    `theta` radians (counter-clockwise as seen on screen, rows growing downwards).
    """
    _check_odd_size(size)
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"sigmas must be > 0, got {sigma_x}, {sigma_y}")
    centre = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) - centre
    y = -y  # rows grow downwards; flip so that theta turns counter-clockwise on screen
    cos, sin = math.cos(theta), math.sin(theta)
    u = cos * x + sin * y  # coordinates in the rotated frame
    v = -sin * x + cos * y
    kernel = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return _normalised(kernel)


def _splat(points: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """Accumulate weighted sub-pixel points (x, y) bilinearly: anti-aliased drawing."""
    kernel = np.zeros((size, size), dtype=np.float64)
    x0 = np.floor(points[:, 0]).astype(np.int64)
    y0 = np.floor(points[:, 1]).astype(np.int64)
    fx = points[:, 0] - x0
    fy = points[:, 1] - y0
    for dx, dy, w in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        xs, ys = x0 + dx, y0 + dy
        inside = (xs >= 0) & (xs < size) & (ys >= 0) & (ys < size)
        np.add.at(kernel, (ys[inside], xs[inside]), (w * weights)[inside])
    return kernel


def motion_kernel(length: float, angle_deg: float, size: int | None = None) -> np.ndarray:
    """Linear motion blur: an anti-aliased line of `length` pixels through the centre.

    `angle_deg` is counter-clockwise from the +x axis as seen on screen. `size` (odd)
    defaults to the smallest odd size that holds the line; the line must fit in it.
    """
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if size is None:
        size = 2 * math.ceil(length / 2) + 1
    _check_odd_size(size)
    if length > size - 1:
        raise ValueError(f"a line of length {length} does not fit a {size}x{size} kernel")
    centre = (size - 1) / 2
    # Four samples per pixel of length are enough for a smooth bilinear line.
    t = np.linspace(-length / 2, length / 2, max(2, math.ceil(length * 4) + 1))
    angle = math.radians(angle_deg)
    points = np.stack([centre + t * math.cos(angle), centre - t * math.sin(angle)], axis=1)
    return _normalised(_splat(points, np.ones(len(t)), size))


def _shake_trajectory(rng: np.random.Generator, steps: int) -> np.ndarray:
    """A random 2-D camera path: velocity with inertia, random jitter and rare jerks.

    Loosely after Boracchi & Foi (2012): a smooth drift plus impulsive changes, which is
    what hand-held shake looks like.
    """
    velocity = rng.standard_normal(2)
    velocity /= np.linalg.norm(velocity) + 1e-12
    position = np.zeros(2)
    path = [position.copy()]
    for _ in range(steps - 1):
        acceleration = 0.4 * rng.standard_normal(2)
        if rng.random() < 0.1:  # an occasional jerk
            acceleration += 1.5 * rng.standard_normal(2)
        acceleration -= 0.05 * position  # a weak pull back, as a hand corrects itself
        velocity = 0.8 * velocity + acceleration
        position = position + velocity
        path.append(position.copy())
    return np.asarray(path)


def random_motion_kernel(rng: np.random.Generator, size: int = 25) -> np.ndarray:
    """A camera-shake-like kernel: a random trajectory drawn with equal exposure per time step.

    The path's centre of mass sits on the kernel centre, so blurring does not also shift the
    image against its ground truth. Its extent is drawn between 1/4 and all of the kernel.
    """
    _check_odd_size(size)
    if size < 5:
        raise ValueError(f"a shake kernel needs size >= 5, got {size}")
    path = _shake_trajectory(rng, steps=int(rng.integers(16, 64)))
    path -= path.mean(axis=0)
    extent = np.abs(path).max()
    half = (size - 1) / 2 - 1  # one pixel margin for the bilinear footprint
    radius = half * rng.uniform(0.25, 1.0)
    path = path * (radius / extent) if extent > 0 else path
    # Sample each time step's segment densely; each step carries the same total weight.
    points, weights = [], []
    for start, end in itertools.pairwise(path):
        count = max(1, math.ceil(np.linalg.norm(end - start) * 4))
        t = (np.arange(count) + 0.5) / count
        points.append(start + t[:, None] * (end - start))
        weights.append(np.full(count, 1.0 / count))
    centre = (size - 1) / 2
    kernel = _splat(np.concatenate(points) + centre, np.concatenate(weights), size)
    return _normalised(kernel)


def load_kernels(folder: str | Path) -> list[np.ndarray]:
    """Blur kernels from the `.npy` files in `folder`, each normalised to sum 1.

    A 2-D array is one kernel, a 3-D array (N, h, w) is N kernels. Kernels with negative lobes
    (min < -1e-6, e.g. bicubic resampling kernels) are skipped: they are not blurs.
    Raises InputError for a missing folder, an unreadable or malformed file, or no kernels.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: kernel folder not found")
    kernels: list[np.ndarray] = []
    for path in sorted(folder.glob("*.npy")):
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot be read as a .npy array ({exc})") from exc
        if array.ndim not in (2, 3) or array.size == 0:
            raise InputError(f"{path}: expected (h, w) or (N, h, w) kernels, got {array.shape}")
        if not np.isfinite(array).all():
            raise InputError(f"{path}: holds non-finite values")
        for kernel in array.reshape(-1, *array.shape[-2:]):
            if kernel.min() < _NEGATIVE_LOBE_TOLERANCE:
                continue
            if kernel.sum() <= 0:
                raise InputError(f"{path}: a kernel sums to zero")
            kernels.append(_normalised(kernel))
    if not kernels:
        raise InputError(f"{folder}: no usable blur kernels in its .npy files")
    return kernels


# --------------------------------------------------------------------------- operators


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """True convolution of every channel with `kernel`, reflecting at the borders.

    filter2D computes correlation, hence the flip. BORDER_REFLECT repeats the edge pixel
    (like scipy's 'symm'), which avoids dark or bright frames around the image.
    """
    img = _as_image(img)
    if kernel.ndim != 2:
        raise ShapeError(f"kernel must be 2-D, got shape {kernel.shape}")
    flipped = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32)
    return cv2.filter2D(img, -1, flipped, borderType=cv2.BORDER_REFLECT)


def quantize_8bit(img: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and round to the nearest of the 256 levels k/255, as an 8-bit file would."""
    levels = np.clip(np.rint(np.asarray(img, dtype=np.float32) * np.float32(255.0)), 0, 255)
    return levels.astype(np.float32) / np.float32(255.0)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * np.float32(255.0)), 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as an 8-bit JPEG of `quality` (1..100) with OpenCV's libjpeg.

    Channels are swapped to BGR first because the encoder's colour transform assumes BGR;
    the chroma subsampling is OpenCV's default (4:2:0).
    """
    img = _as_image(img)
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    bgr = cv2.cvtColor(_to_uint8(img), cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV failed to JPEG-encode an image")
    decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB).astype(np.float32) / np.float32(255.0)


def down_up(
    img: np.ndarray,
    scale: float,
    interpolation: int = cv2.INTER_AREA,
    up_interpolation: int = cv2.INTER_CUBIC,
) -> np.ndarray:
    """Downscale by `scale` (>= 1) with `interpolation`, then resize back to the exact input size.

    Models the detail lost by a low-resolution sensor or a resized upload while keeping the
    restoration same-size. The upscale uses `up_interpolation` (cubic by default; INTER_AREA
    would act as nearest-neighbour when enlarging). Cubic may overshoot [0, 1].
    """
    img = _as_image(img)
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    height, width = img.shape[:2]
    small = (max(1, round(width / scale)), max(1, round(height / scale)))
    reduced = cv2.resize(img, small, interpolation=interpolation)
    return cv2.resize(reduced, (width, height), interpolation=up_interpolation)


# --------------------------------------------------------------------------- random mix


def _check_range(name: str, bounds: tuple[float, float], low: float, high: float) -> None:
    if len(bounds) != 2 or not low <= bounds[0] <= bounds[1] <= high:
        raise ValueError(f"{name} must be (min, max) within [{low}, {high}], got {bounds}")


@dataclass(frozen=True)
class DegradationConfig:
    """Probabilities and ranges of the random training degradations.

    Applied in camera order: blur -> down-up -> Poisson noise -> Gaussian noise -> JPEG ->
    8-bit quantisation. Each step happens independently with its probability. These defaults
    are our choice (the paper gives none): broad enough for blind restoration, weighted
    towards the noise and compression an edge camera sees. About one sample in five is plain
    Gaussian noise: with the earlier, blur-heavier mix (blur 0.6, JPEG 0.5) the small model
    learned low noise levels poorly (sigma 15 only 0.9 dB above non-local means).
    """

    blur_prob: float = 0.45
    real_kernel_prob: float = 0.3  # of the blurs, when real kernels are given
    motion_prob: float = 0.4  # of the synthetic blurs: motion rather than Gaussian
    shake_prob: float = 0.5  # of the motion blurs: random trajectory rather than a line
    aniso_prob: float = 0.5  # of the Gaussian blurs: anisotropic rather than isotropic
    kernel_size: int = 21  # odd; synthetic kernels are this size
    iso_sigma: tuple[float, float] = (0.2, 3.0)  # pixels
    aniso_sigma: tuple[float, float] = (0.2, 4.0)  # pixels, per axis
    motion_length: tuple[float, float] = (3.0, 15.0)  # pixels, straight-line blur
    downup_prob: float = 0.2
    downup_scale: tuple[float, float] = (1.0, 3.0)
    poisson_prob: float = 0.15
    poisson_peak: tuple[float, float] = (30.0, 3000.0)  # drawn log-uniformly
    noise_prob: float = 0.75  # additive Gaussian noise
    noise_sigma: tuple[float, float] = (0.0, 50.0)  # in 8-bit levels (divided by 255)
    jpeg_prob: float = 0.4
    jpeg_quality: tuple[int, int] = (15, 95)  # reaches below the evaluated quality 20

    def __post_init__(self) -> None:
        for field in fields(self):
            if field.name.endswith("_prob"):
                value = getattr(self, field.name)
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{field.name} must be in [0, 1], got {value}")
        _check_odd_size(self.kernel_size)
        if self.kernel_size < 5:
            raise ValueError(f"kernel_size must be >= 5, got {self.kernel_size}")
        _check_range("iso_sigma", self.iso_sigma, 1e-3, math.inf)
        _check_range("aniso_sigma", self.aniso_sigma, 1e-3, math.inf)
        _check_range("motion_length", self.motion_length, 0.0, self.kernel_size - 1)
        _check_range("downup_scale", self.downup_scale, 1.0, math.inf)
        _check_range("poisson_peak", self.poisson_peak, 1e-3, math.inf)
        _check_range("noise_sigma", self.noise_sigma, 0.0, 255.0)
        _check_range("jpeg_quality", self.jpeg_quality, 1, 100)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DegradationConfig:
        """Build from plain data (JSON lists become tuples); unknown keys are a ValueError."""
        known = {field.name for field in fields(cls)}
        for key in values:
            if key not in known:
                raise ValueError(f"unknown DegradationConfig key {key!r} (known: {', '.join(sorted(known))})")
        converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**converted)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _random_kernel(rng: np.random.Generator, config: DegradationConfig, kernels: Sequence[np.ndarray]) -> np.ndarray:
    if kernels and rng.random() < config.real_kernel_prob:
        kernel = kernels[int(rng.integers(len(kernels)))]
        # Any of the 8 rotations/mirrors of a real shake is just as real.
        kernel = np.rot90(kernel, int(rng.integers(4)))
        return np.ascontiguousarray(kernel[:, ::-1] if rng.random() < 0.5 else kernel)
    size = config.kernel_size
    if rng.random() < config.motion_prob:
        if rng.random() < config.shake_prob:
            return random_motion_kernel(rng, size)
        return motion_kernel(rng.uniform(*config.motion_length), rng.uniform(0, 180), size)
    if rng.random() < config.aniso_prob:
        sigma_x, sigma_y = rng.uniform(*config.aniso_sigma, size=2)
        return gaussian_kernel(size, sigma_x, sigma_y, rng.uniform(0, math.pi))
    sigma = rng.uniform(*config.iso_sigma)
    return gaussian_kernel(size, sigma, sigma)


def synthesize(
    clean: np.ndarray,
    rng: np.random.Generator,
    config: DegradationConfig = DegradationConfig(),
    kernels: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """Degrade a clean float32 HxWx3 [0, 1] image with a random mix of the primitives.

    Order follows a camera: blur -> down-up -> Poisson -> Gaussian noise -> JPEG, then
    `quantize_8bit`, since real inputs arrive as 8-bit data. Reproducible: the same `clean`
    and `np.random.default_rng(seed)` with the same seed give a bit-identical result (all
    randomness comes from `rng`, consumed in a fixed order).
    """
    img = _as_image(clean)
    if rng.random() < config.blur_prob:
        img = blur(img, _random_kernel(rng, config, kernels))
    if rng.random() < config.downup_prob:
        scale = rng.uniform(*config.downup_scale)
        down = DOWN_INTERPOLATIONS[int(rng.integers(len(DOWN_INTERPOLATIONS)))]
        up = UP_INTERPOLATIONS[int(rng.integers(len(UP_INTERPOLATIONS)))]
        img = down_up(img, scale, down, up)
    if rng.random() < config.poisson_prob:
        low, high = np.log(config.poisson_peak)
        img = poisson_noise(img, float(np.exp(rng.uniform(low, high))), rng)
    if rng.random() < config.noise_prob:
        img = gaussian_noise(img, rng.uniform(*config.noise_sigma) / 255.0, rng)
    if rng.random() < config.jpeg_prob:
        low, high = config.jpeg_quality
        img = jpeg(img, int(rng.integers(low, high + 1)))
    return quantize_8bit(img)


# --------------------------------------------------------------------------- eval cases

EVAL_CASES: tuple[str, ...] = (
    "noise15",
    "noise25",
    "noise50",
    "gauss_blur",
    "motion_blur",
    "jpeg20",
    "downup2",
    "mixed",
)

# Pinned field by field (not left to the defaults), so that tuning the training config
# never changes what "mixed" means between evaluations.
_MIXED_CONFIG = DegradationConfig(
    blur_prob=1.0,
    real_kernel_prob=0.5,
    motion_prob=0.5,
    shake_prob=0.5,
    aniso_prob=0.5,
    kernel_size=21,
    iso_sigma=(0.5, 2.0),
    aniso_sigma=(0.5, 2.5),
    motion_length=(3.0, 9.0),
    downup_prob=0.5,
    downup_scale=(1.5, 2.5),
    poisson_prob=0.0,
    poisson_peak=(30.0, 3000.0),
    noise_prob=1.0,
    noise_sigma=(5.0, 25.0),
    jpeg_prob=1.0,
    jpeg_quality=(40, 80),
)


def _case_rng(case: str, seed: int) -> np.random.Generator:
    # crc32, not hash(): Python salts str hashes per process, which would break determinism.
    return np.random.default_rng((seed, zlib.crc32(case.encode("ascii"))))


def apply_case(clean: np.ndarray, case: str, seed: int, kernels: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Apply one fixed, named evaluation degradation; deterministic per (case, seed).

    - noise15 / noise25 / noise50: additive Gaussian noise of sigma 15, 25 or 50 (/255), as in
      the CBSD68 colour-denoising benchmarks.
    - gauss_blur: isotropic Gaussian blur, sigma 1.6, 25x25 (USRNet's kernel family), plus
      Gaussian noise of sigma 5 (/255).
    - motion_blur: a real kernel picked by seed from `kernels` when given, else a random
      shake trajectory (25x25); plus noise of sigma 1%.
    - jpeg20: JPEG at quality 20.
    - downup2: INTER_AREA down by 2, bicubic back up.
    - mixed: `synthesize` with a pinned configuration (blur, optional down-up, noise 5..25,
      JPEG 40..80).
    Every result goes through `quantize_8bit`.
    """
    if case not in EVAL_CASES:
        raise ValueError(f"unknown evaluation case {case!r} (valid: {', '.join(EVAL_CASES)})")
    img = _as_image(clean)
    rng = _case_rng(case, seed)
    if case.startswith("noise"):
        img = gaussian_noise(img, int(case.removeprefix("noise")) / 255.0, rng)
    elif case == "gauss_blur":
        img = gaussian_noise(blur(img, gaussian_kernel(25, 1.6, 1.6)), 5.0 / 255.0, rng)
    elif case == "motion_blur":
        if kernels:
            kernel = kernels[int(rng.integers(len(kernels)))]
        else:
            kernel = random_motion_kernel(rng, 25)
        img = gaussian_noise(blur(img, kernel), 2.55 / 255.0, rng)
    elif case == "jpeg20":
        img = jpeg(img, 20)
    elif case == "downup2":
        img = down_up(img, 2.0, cv2.INTER_AREA, cv2.INTER_CUBIC)
    else:  # mixed
        return synthesize(img, rng, _MIXED_CONFIG, kernels)
    return quantize_8bit(img)
