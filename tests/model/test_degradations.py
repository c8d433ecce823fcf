"""Tests for model/degradations.py with real numbers and real images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.signal import convolve2d

from model.degradations import (
    EVAL_CASES,
    DegradationConfig,
    apply_case,
    blur,
    down_up,
    gaussian_kernel,
    gaussian_noise,
    jpeg,
    load_kernels,
    motion_kernel,
    poisson_noise,
    quantize_8bit,
    random_motion_kernel,
    synthesize,
)
from runtime.errors import InputError
from runtime.image_io import read_rgb8

# Every kind of blur, resampling and noise at once, so reproducibility covers all branches.
_EVERYTHING = DegradationConfig(blur_prob=1.0, downup_prob=1.0, poisson_prob=1.0, noise_prob=1.0, jpeg_prob=1.0)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A smooth synthetic colour image (no data needed)."""
    y, x = np.mgrid[0:48, 0:64].astype(np.float32)
    return np.stack([x / 63, y / 47, 0.5 + 0.4 * np.sin(x / 5) * np.cos(y / 7)], axis=2)


@pytest.fixture(scope="module")
def cbsd68(shared_data: Path) -> np.ndarray:
    return read_rgb8(shared_data / "val" / "CBSD68" / "101085.png").astype(np.float32) / 255


@pytest.fixture(scope="module")
def real_kernels(shared_data: Path) -> list[np.ndarray]:
    return load_kernels(shared_data / "kernels" / "npy")


def _on_8bit_grid(img: np.ndarray) -> bool:
    levels = img * 255
    return bool(np.abs(levels - np.rint(levels)).max() < 1e-3)


def test_synthesize_same_seed_same_output(photo: np.ndarray) -> None:
    kernels = [motion_kernel(7, 30, 9)]
    first = synthesize(photo, np.random.default_rng(5), _EVERYTHING, kernels)
    second = synthesize(photo, np.random.default_rng(5), _EVERYTHING, kernels)
    other = synthesize(photo, np.random.default_rng(6), _EVERYTHING, kernels)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_synthesize_output_on_8bit_grid(photo: np.ndarray) -> None:
    for seed in range(10):
        out = synthesize(photo, np.random.default_rng(seed), _EVERYTHING)
        assert out.dtype == np.float32 and out.shape == photo.shape
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert _on_8bit_grid(out)


def test_gaussian_noise_std_matches_sigma() -> None:
    # Checked BEFORE quantisation: the std of the raw added noise on flat 0.5 grey.
    flat = np.full((256, 256, 3), 0.5, np.float32)
    noisy = gaussian_noise(flat, 25 / 255, np.random.default_rng(0))
    assert abs(float((noisy - flat).std()) - 25 / 255) < 0.05 * 25 / 255
    # And after quantize_8bit (what noise25 feeds the model) it is still within 5%.
    assert abs(float((quantize_8bit(noisy) - flat).std()) - 25 / 255) < 0.05 * 25 / 255


def test_noise25_case_is_plain_gaussian_sigma_25(photo: np.ndarray) -> None:
    flat = np.full((256, 256, 3), 0.5, np.float32)
    residual = apply_case(flat, "noise25", seed=3) - flat
    assert abs(float(residual.std()) - 25 / 255) < 0.05 * 25 / 255
    assert abs(float(residual.mean())) < 0.002  # zero-mean, no signal dependence


def test_poisson_noise_variance_follows_signal() -> None:
    peak = 100.0
    img = np.full((128, 128, 3), 0.4, np.float32)
    noisy = poisson_noise(img, peak, np.random.default_rng(0))
    # Var[Poisson(v * peak) / peak] = v / peak.
    assert abs(float(noisy.var()) - 0.4 / peak) < 0.05 * 0.4 / peak
    assert abs(float(noisy.mean()) - 0.4) < 0.005


@pytest.mark.parametrize(
    "kernel",
    [
        gaussian_kernel(15, 2.0, 2.0),
        gaussian_kernel(21, 1.0, 4.0, 0.7),
        motion_kernel(9.5, 33.0, 11),
        random_motion_kernel(np.random.default_rng(4), 25),
    ],
)
def test_kernels_sum_to_one_and_are_nonnegative(kernel: np.ndarray) -> None:
    assert kernel.dtype == np.float32
    assert abs(float(kernel.sum()) - 1.0) < 1e-5
    assert kernel.min() >= 0


def test_anisotropic_gaussian_rotation() -> None:
    # theta = 0: wide along x (columns); theta = pi/2: wide along y (rows).
    wide_x = gaussian_kernel(21, 4.0, 1.0, 0.0)
    wide_y = gaussian_kernel(21, 4.0, 1.0, np.pi / 2)
    assert wide_x[10, 14] > 10 * wide_x[14, 10]
    np.testing.assert_allclose(wide_y, wide_x.T, atol=1e-7)
    iso = gaussian_kernel(21, 2.0, 2.0, 1.0)
    np.testing.assert_allclose(iso, iso.T, atol=1e-7)


def test_motion_kernel_is_a_line_at_the_angle() -> None:
    horizontal = motion_kernel(8, 0, 11)
    assert horizontal[5].sum() > 0.99  # all mass on the centre row
    diagonal = motion_kernel(8, 45, 11)
    # 45 degrees counter-clockwise on screen: up and to the right (row decreases as x grows).
    assert diagonal[3, 7] > 0.05 and diagonal[7, 3] > 0.05 and diagonal[3, 3] == 0


def test_random_motion_kernel_is_centred_and_varies() -> None:
    rng = np.random.default_rng(11)
    first, second = random_motion_kernel(rng, 25), random_motion_kernel(rng, 25)
    assert not np.allclose(first, second)
    rows, cols = np.mgrid[0:25, 0:25]
    assert abs(float((first * rows).sum()) - 12) < 0.5
    assert abs(float((first * cols).sum()) - 12) < 0.5
    assert (first > 1e-4).sum() > 5  # a trajectory, not a dot


def test_blur_with_delta_is_identity(photo: np.ndarray) -> None:
    delta = np.zeros((5, 5), np.float32)
    delta[2, 2] = 1
    np.testing.assert_array_equal(blur(photo, delta), photo)


def test_blur_is_true_convolution_of_a_point() -> None:
    # An asymmetric kernel: blurring a single bright pixel must draw the kernel itself.
    kernel = np.zeros((5, 5), np.float32)
    kernel[0, 1], kernel[1, 4], kernel[2, 2], kernel[4, 0] = 0.1, 0.2, 0.3, 0.4
    img = np.zeros((15, 15, 3), np.float32)
    img[7, 7] = 1.0
    out = blur(img, kernel)
    for channel in range(3):
        np.testing.assert_allclose(out[5:10, 5:10, channel], kernel, atol=1e-6)
    assert out.sum() == pytest.approx(3.0, abs=1e-5)


@pytest.mark.parametrize("size", [7, 8])  # even sizes follow the same anchor rule
def test_blur_matches_scipy_convolve2d(size: int) -> None:
    rng = np.random.default_rng(size)
    img = rng.random((20, 23, 3)).astype(np.float32)
    kernel = rng.random((size, size)).astype(np.float32)
    kernel /= kernel.sum()
    out = blur(img, kernel)
    for channel in range(3):
        ref = convolve2d(img[..., channel], kernel, mode="same", boundary="symm")
        np.testing.assert_allclose(out[..., channel], ref, atol=1e-5)


def test_jpeg_and_down_up_keep_shape_and_lose_detail(photo: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    textured = np.clip(photo + 0.2 * rng.standard_normal(photo.shape).astype(np.float32), 0, 1)
    compressed = jpeg(textured, 30)
    assert compressed.shape == photo.shape and _on_8bit_grid(compressed)
    assert 15 < _psnr(compressed, textured) < 40
    for interpolation in (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC):
        resampled = down_up(textured, 2.5, interpolation)
        assert resampled.shape == photo.shape
        assert _psnr(resampled, textured) < 30
    np.testing.assert_allclose(down_up(photo, 1.0, cv2.INTER_AREA), photo, atol=1e-6)


def test_quantize_8bit_rounds_and_clips() -> None:
    values = np.array([-0.2, 0.0, 0.5, 1 / 255 * 0.6, 1.3], np.float32)
    expected = np.array([0, 0, 128, 1, 255], np.float32) / 255
    np.testing.assert_allclose(quantize_8bit(values), expected, atol=1e-7)


def test_load_real_kernels_skips_bicubic(real_kernels: list[np.ndarray]) -> None:
    # 8 Levin + 12 USRNet + 2 large motion kernels; the 3 bicubic ones have negative lobes.
    assert len(real_kernels) >= 20
    assert len(real_kernels) == 22
    for kernel in real_kernels:
        assert kernel.min() >= 0
        assert abs(float(kernel.sum()) - 1.0) < 1e-5


def test_load_kernels_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no usable"):
        load_kernels(tmp_path)
    bicubic_like = np.zeros((5, 5), np.float32)
    bicubic_like[2, 2], bicubic_like[2, 0] = 1.1, -0.1
    np.save(tmp_path / "bicubic.npy", bicubic_like)
    with pytest.raises(InputError, match="no usable"):
        load_kernels(tmp_path)
    np.save(tmp_path / "ok.npy", np.ones((2, 3, 3)) * 2.0)
    kernels = load_kernels(tmp_path)
    assert len(kernels) == 2 and all(abs(k.sum() - 1) < 1e-6 for k in kernels)
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match=r"broken\.npy"):
        load_kernels(tmp_path)


@pytest.mark.parametrize("case", EVAL_CASES)
def test_eval_cases_degrade_real_image_deterministically(
    cbsd68: np.ndarray, real_kernels: list[np.ndarray], case: str
) -> None:
    out = apply_case(cbsd68, case, seed=1, kernels=real_kernels)
    assert out.shape == cbsd68.shape and _on_8bit_grid(out)
    assert _psnr(out, cbsd68) < 35
    np.testing.assert_array_equal(out, apply_case(cbsd68, case, seed=1, kernels=real_kernels))


def test_eval_cases_are_ordered_by_strength(cbsd68: np.ndarray) -> None:
    psnr = {c: _psnr(apply_case(cbsd68, c, seed=0), cbsd68) for c in ("noise15", "noise25", "noise50")}
    assert psnr["noise15"] > psnr["noise25"] > psnr["noise50"]
    # CBSD68 sigma 25 inputs are about 20.2 dB (slightly more after clipping to [0, 1]).
    assert 19.5 < psnr["noise25"] < 21.5


def test_eval_case_seed_matters(photo: np.ndarray) -> None:
    assert not np.array_equal(apply_case(photo, "noise15", 0), apply_case(photo, "noise15", 1))


def test_unknown_case_raises_listing_valid_ones(photo: np.ndarray) -> None:
    with pytest.raises(ValueError, match="noise25"):
        apply_case(photo, "noise30", seed=0)


def test_config_from_dict() -> None:
    config = DegradationConfig.from_dict({"jpeg_quality": [40, 60], "blur_prob": 0.2})
    assert config.jpeg_quality == (40, 60) and config.blur_prob == 0.2
    assert DegradationConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="blurr_prob"):
        DegradationConfig.from_dict({"blurr_prob": 0.5})
    with pytest.raises(ValueError, match="jpeg_prob"):
        DegradationConfig(jpeg_prob=1.5)
    with pytest.raises(ValueError, match="motion_length"):
        DegradationConfig(kernel_size=9, motion_length=(3.0, 15.0))
