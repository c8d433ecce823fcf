"""Image quality metrics in numpy (runtime-safe: no torch).

Images are float arrays in [0, 1], HxW or HxWxC. SSIM follows Wang et al. 2004 (Gaussian
window sigma 1.5, K1 0.01, K2 0.03), computed per channel on the data range 1 and averaged.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def psnr(restored: np.ndarray, reference: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; identical images give +inf."""
    if restored.shape != reference.shape:
        raise ValueError(f"shape mismatch: {restored.shape} vs {reference.shape}")
    mse = float(np.mean((restored.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def ssim(restored: np.ndarray, reference: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity over pixels and channels."""
    if restored.shape != reference.shape:
        raise ValueError(f"shape mismatch: {restored.shape} vs {reference.shape}")
    a = restored.astype(np.float64)
    b = reference.astype(np.float64)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    scores = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        mx, my = blur(x), blur(y)
        vx = blur(x * x) - mx * mx
        vy = blur(y * y) - my * my
        cxy = blur(x * y) - mx * my
        num = (2 * mx * my + c1) * (2 * cxy + c2)
        den = (mx * mx + my * my + c1) * (vx + vy + c2)
        scores.append(float(np.mean(num / den)))
    return float(np.mean(scores))
