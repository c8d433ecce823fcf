"""Pixel conversions between OpenCV's frames (BGR, 8 or 16 bit) and the pipeline's float RGB.

Core runtime: the video sources and sinks, the pipeline and the native frame kernels' NumPy
reference all use these, so they live outside runtime/video/ (the core imports nothing of it).
`pad_nchw` is the pipeline's padding to the model multiple, here so that `runtime/frame_kernels.py`
reaches it without importing the pipeline (which runs the kernels).

8-bit samples become [0, 1] by one of two rules (`ScaleRule`), which differ by one float32 ULP on
126 of the 256 values: video frames are multiplied by float32(1/255) (`bgr_to_rgb_float`), still
images are divided by 255 (`runtime/image_io.py`). An 8-bit frame restored without a float copy
(`Pipeline.restore_bgr8`) names the rule its float copy would have had, so that the restored bytes
are the same either way.
"""

from __future__ import annotations

from enum import IntEnum

import cv2
import numpy as np

from runtime.errors import InputError


class ScaleRule(IntEnum):
    """How 8-bit samples become [0, 1] (the values are the native frame kernels' codes)."""

    MUL_RECIPROCAL = 0  # x * float32(1/255): the video path (bgr_to_rgb_float)
    DIVIDE = 1  # x / float32(255): still images (image_io)


def bgr_to_rgb_float(pixels: np.ndarray) -> np.ndarray:
    """An OpenCV frame (grey, BGR or BGRA; 8 or 16 bit) as float32 RGB HxWx3 in [0, 1]."""
    if pixels.dtype == np.uint8:
        scale = np.float32(1.0 / 255.0)
    elif pixels.dtype == np.uint16:
        scale = np.float32(1.0 / 65535.0)
    else:
        raise InputError(f"unsupported frame sample type {pixels.dtype} (need 8- or 16-bit)")
    if pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 1):
        rgb = cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    elif pixels.ndim == 3 and pixels.shape[2] == 3:
        rgb = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    elif pixels.ndim == 3 and pixels.shape[2] == 4:
        rgb = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB)
    else:
        raise InputError(f"unsupported frame shape {pixels.shape}")
    out = rgb.astype(np.float32)
    out *= scale
    return out


def bgr8_to_rgb_float(frame: np.ndarray, scale_rule: ScaleRule = ScaleRule.MUL_RECIPROCAL) -> np.ndarray:
    """An 8-bit BGR frame (HxWx3 uint8) as float32 RGB in [0, 1], scaled by `scale_rule`:
    `bgr_to_rgb_float`'s multiplication, or the division `runtime/image_io.py` reads images with."""
    if scale_rule is ScaleRule.MUL_RECIPROCAL:
        return bgr_to_rgb_float(frame)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.float32) / np.float32(255.0)


def as_bgr8(pixels: np.ndarray) -> np.ndarray | None:
    """8-bit pixels as OpenCV decodes them (grey, BGR or BGRA) as a contiguous HxWx3 BGR frame, with
    the float values `bgr_to_rgb_float` would give them (grey is repeated, alpha dropped); None for
    other sample types (16-bit), which keep the float path."""
    if pixels.dtype != np.uint8:
        return None
    if pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 1):
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        return np.ascontiguousarray(pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR)
    return None


def rgb_float_to_bgr8(rgb: np.ndarray) -> np.ndarray:
    """float RGB in [0, 1] (values outside are clipped) as the uint8 BGR OpenCV writes."""
    pixels = np.rint(np.clip(rgb, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)


def pad_nchw(batch: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad (N, C, h, w) at the bottom and right to (N, C, height, width)."""
    _, _, h, w = batch.shape
    if (h, w) == (height, width):
        return batch
    return np.pad(batch, ((0, 0), (0, 0), (0, height - h), (0, width - w)), mode="reflect")
