"""Frame conversion and tile blending through the native frame kernels, with the NumPy/OpenCV path.

The native library (`CMakeLists.txt`, `native/`) holds, behind one C ABI, CUDA kernels and a C
reference of three per-frame steps (see native/include/unfoldldm_frame_kernels.h):

- 8-bit interleaved BGR/RGB/BGRA/RGBA (any row stride) -> planar RGB FP32/FP16 in [0, 1],
  reflect-padded at the bottom and right (runtime/pixels.py `bgr_to_rgb_float`, then
  runtime/pixels.py `pad_nchw`);
- the inverse: top-left crop, clip to [0, 1], times 255, round half to even, to 8 bits
  (runtime/pixels.py `rgb_float_to_bgr8`); NaN becomes 0, and on request the NaN and infinite
  samples are counted (the NaN/Inf check of frames that leave the device as bytes);
- overlap-add of tiles with the ramp mask and the final normalisation (runtime/tiling.py `Blender`).

The C reference reproduces the NumPy path bit for bit (the tests check it). `load_frame_kernels()`
finds the library in $UNFOLDLDM_NATIVE_LIB (a file or a folder), in build/ under the repository
root, or where `cmake --install` put it; when there is none, `frame_to_planar`, `planar_to_frame`
and `make_blender` use the NumPy/OpenCV path and one line is logged.

On the device (device pointers as ints, a cudaStream_t handle as an int, in the primary context;
the TensorRT and torch-CUDA backends call them through runtime/backends/device_frames.py):
`kernels.u8_to_planar(Device.CUDA, src, stride, h, w, Layout.BGR, ScaleRule.MUL_RECIPROCAL, dst,
DType.FP16, padded_h, padded_w, stream)` and `kernels.planar_to_u8(Device.CUDA, ...,
nonfinite_count=address)`,
`kernels.blend_clear/blend_add/blend_normalize(Device.CUDA, ...)`; all are asynchronous on `stream`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import BackendUnavailable, InferenceError, InputError, ShapeError
from runtime.pixels import ScaleRule, bgr8_to_rgb_float, pad_nchw, rgb_float_to_bgr8
from runtime.tiling import Blender, Tile

log = logging.getLogger(__name__)

LIBRARY_ENV = "UNFOLDLDM_NATIVE_LIB"
LIBRARY_NAME = "unfoldldm_frame_kernels"
ABI_VERSION = 2  # UFK_ABI_VERSION in the header
REPO_BUILD = Path(__file__).resolve().parents[1] / "build"


class Device(IntEnum):
    CPU = 0  # the C reference, host pointers, synchronous
    CUDA = 1  # the CUDA kernels, device pointers, asynchronous on the stream


class Layout(IntEnum):
    BGR = 0
    RGB = 1
    BGRA = 2
    RGBA = 3

    @property
    def channels(self) -> int:
        return 4 if self in (Layout.BGRA, Layout.RGBA) else 3


class DType(IntEnum):
    FP32 = 0
    FP16 = 1


# Status codes of the C ABI (enum ufk_status) -> the exception each one becomes.
_ERRORS: dict[int, type[Exception]] = {
    1: InputError,  # null pointer
    2: ShapeError,  # bad size
    3: ShapeError,  # row stride smaller than a row
    4: InputError,  # layout
    5: InputError,  # dtype
    6: InputError,  # device
    7: InputError,  # other argument
    8: ShapeError,  # tiles do not cover the frame
    9: BackendUnavailable,  # no CUDA
    10: InferenceError,  # a CUDA call failed
}

_NUMPY_DTYPES = {DType.FP32: np.dtype(np.float32), DType.FP16: np.dtype(np.float16)}

_c_int, _c_i64, _c_ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
_SIGNATURES: dict[str, list[type]] = {
    "ufk_u8_to_planar": [
        _c_int,
        _c_ptr,
        _c_i64,
        _c_int,
        _c_int,
        _c_int,
        _c_int,
        _c_ptr,
        _c_int,
        _c_int,
        _c_int,
        _c_ptr,
    ],
    "ufk_planar_to_u8": [_c_int, _c_ptr, _c_int, _c_int, _c_int, _c_ptr, _c_i64] + [_c_int] * 3 + [_c_ptr, _c_ptr],
    "ufk_blend_clear": [_c_int, _c_ptr, _c_ptr, _c_int, _c_int, _c_int, _c_int, _c_ptr],
    "ufk_blend_add": [_c_int, _c_ptr, _c_ptr] + [_c_int] * 5 + [_c_ptr, _c_int] + [_c_int] * 4 + [_c_ptr],
    "ufk_blend_normalize": [_c_int, _c_ptr, _c_ptr, _c_ptr] + [_c_int] * 4 + [_c_ptr],
    "ufk_cuda_benchmark": [_c_int] * 6 + [ctypes.POINTER(ctypes.c_double)] * 4,
}


def dtype_code(dtype: np.dtype | type) -> DType:
    """The DType of a numpy element type (float32 or float16); InputError otherwise."""
    for code, numpy_dtype in _NUMPY_DTYPES.items():
        if np.dtype(dtype) == numpy_dtype:
            return code
    raise InputError(f"unsupported tensor element type {np.dtype(dtype)} (use float32 or float16)")


@dataclass(frozen=True)
class CudaTimings:
    """Mean milliseconds per 1920x1080-style frame of each CUDA step (CUDA events)."""

    upload_ms: float
    to_planar_ms: float
    to_u8_ms: float
    download_ms: float


class FrameKernels:
    """The loaded library. Raw calls take addresses (ints; host for CPU, device for CUDA) and raise
    the project's errors for the library's status codes; the array calls run the C reference."""

    def __init__(self, path: Path) -> None:
        try:
            self._lib = ctypes.CDLL(str(path))
        except OSError as exc:
            raise BackendUnavailable(f"{path}: cannot load the native frame kernels ({exc})") from exc
        self.path = path
        lib = self._lib
        lib.ufk_abi_version.restype = ctypes.c_int
        version = lib.ufk_abi_version()
        if version != ABI_VERSION:
            raise BackendUnavailable(
                f"{path}: frame kernels ABI {version}, this runtime needs {ABI_VERSION}: rebuild it"
            )
        for name in ("ufk_built_with_cuda", "ufk_cuda_available"):
            getattr(lib, name).restype = ctypes.c_int
        for name in ("ufk_error_message", "ufk_last_error_detail"):
            getattr(lib, name).restype = ctypes.c_char_p
        lib.ufk_error_message.argtypes = [ctypes.c_int]
        for name, argtypes in _SIGNATURES.items():
            function = getattr(lib, name)
            function.argtypes = argtypes
            function.restype = ctypes.c_int

    @property
    def built_with_cuda(self) -> bool:
        return bool(self._lib.ufk_built_with_cuda())

    @property
    def cuda_available(self) -> bool:
        """CUDA kernels built and a CUDA device usable now."""
        return bool(self._lib.ufk_cuda_available())

    def _check(self, status: int, function: str) -> None:
        if status == 0:
            return
        message = self._lib.ufk_error_message(status).decode()
        detail = self._lib.ufk_last_error_detail().decode()
        error = _ERRORS.get(status, InferenceError)
        raise error(f"native {function}: {message}" + (f" ({detail})" if detail else ""))

    # ------------------------------------------------------------------ raw calls (addresses)

    def u8_to_planar(
        self,
        device: Device,
        src: int,
        src_stride: int,
        height: int,
        width: int,
        layout: Layout,
        scale_rule: ScaleRule,
        dst: int,
        dtype: DType,
        padded_height: int,
        padded_width: int,
        stream: int = 0,
    ) -> None:
        status = self._lib.ufk_u8_to_planar(
            device, src, src_stride, height, width, layout, scale_rule, dst, dtype, padded_height, padded_width, stream
        )
        self._check(status, "u8_to_planar")

    def planar_to_u8(
        self,
        device: Device,
        src: int,
        dtype: DType,
        src_height: int,
        src_width: int,
        dst: int,
        dst_stride: int,
        height: int,
        width: int,
        layout: Layout,
        stream: int = 0,
        nonfinite_count: int = 0,
    ) -> None:
        """`nonfinite_count`: 0, or the address of an int64 set to the number of NaN or infinite
        samples converted (read it after synchronising the stream on CUDA)."""
        status = self._lib.ufk_planar_to_u8(
            device, src, dtype, src_height, src_width, dst, dst_stride, height, width, layout, nonfinite_count, stream
        )
        self._check(status, "planar_to_u8")

    def blend_clear(
        self,
        device: Device,
        total: int,
        weight: int,
        batch: int,
        channels: int,
        height: int,
        width: int,
        stream: int = 0,
    ) -> None:
        self._check(
            self._lib.ufk_blend_clear(device, total, weight, batch, channels, height, width, stream), "blend_clear"
        )

    def blend_add(
        self,
        device: Device,
        total: int,
        weight: int,
        shape: tuple[int, int, int, int],
        overlap: int,
        tile: int,
        dtype: DType,
        place: Tile,
        stream: int = 0,
    ) -> None:
        """Blender.add of a (batch, channels, place.height, place.width) tile; shape = (N, C, H, W)."""
        batch, channels, height, width = shape
        status = self._lib.ufk_blend_add(
            device, total, weight, batch, channels, height, width, overlap, tile, dtype,
            place.top, place.left, place.height, place.width, stream,
        )  # fmt: skip
        self._check(status, "blend_add")

    def blend_normalize(
        self, device: Device, total: int, weight: int, out: int, shape: tuple[int, int, int, int], stream: int = 0
    ) -> None:
        """Blender.result into `out` (may be `total`); shape = (N, C, H, W)."""
        self._check(self._lib.ufk_blend_normalize(device, total, weight, out, *shape, stream), "blend_normalize")

    def cuda_benchmark(
        self, height: int, width: int, padded_height: int, padded_width: int, dtype: DType, iterations: int
    ) -> CudaTimings:
        results = [ctypes.c_double() for _ in range(4)]
        status = self._lib.ufk_cuda_benchmark(
            height, width, padded_height, padded_width, dtype, iterations, *(ctypes.byref(r) for r in results)
        )
        self._check(status, "cuda_benchmark")
        return CudaTimings(*(r.value for r in results))

    # ------------------------------------------------------------------ host arrays (C reference)

    def frame_to_planar(
        self,
        frame: np.ndarray,
        padded_height: int,
        padded_width: int,
        layout: Layout = Layout.BGR,
        dtype: np.dtype | type = np.float32,
        scale_rule: ScaleRule = ScaleRule.MUL_RECIPROCAL,
    ) -> np.ndarray:
        """`frame_to_planar_numpy` through the C reference; the frame may have any row stride."""
        frame = _pitched_frame(frame, layout)
        code = dtype_code(dtype)
        # A refused size still needs a buffer to pass: the library says what is wrong with it.
        out = np.empty((3, max(padded_height, 0), max(padded_width, 0)), dtype=_NUMPY_DTYPES[code])
        height, width = frame.shape[:2]
        self.u8_to_planar(
            Device.CPU, frame.ctypes.data, frame.strides[0], height, width, layout, scale_rule,
            out.ctypes.data, code, padded_height, padded_width,
        )  # fmt: skip
        return out

    def planar_to_frame(
        self, planar: np.ndarray, height: int, width: int, layout: Layout = Layout.BGR, out: np.ndarray | None = None
    ) -> np.ndarray:
        """`planar_to_frame_numpy` through the C reference; `out` (h, w, channels) may be a strided view."""
        planar = _planar(planar)
        if out is None:
            out = np.empty((max(height, 0), max(width, 0), layout.channels), dtype=np.uint8)
        out = _pitched_frame(out, layout, writable=True)
        if out.shape[:2] != (height, width):  # the library trusts the buffer to hold height x width
            raise ShapeError(f"output frame is {out.shape[1]}x{out.shape[0]}, the crop is {width}x{height}")
        self.planar_to_u8(
            Device.CPU, planar.ctypes.data, dtype_code(planar.dtype), planar.shape[1], planar.shape[2],
            out.ctypes.data, out.strides[0], height, width, layout,
        )  # fmt: skip
        return out


def _pitched_frame(frame: np.ndarray, layout: Layout, writable: bool = False) -> np.ndarray:
    """An (h, w, channels) uint8 array whose pixels are packed (any non-negative row stride)."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise InputError(f"a frame must be a uint8 array, got {getattr(frame, 'dtype', type(frame).__name__)}")
    if frame.ndim != 3 or frame.shape[2] != layout.channels:
        raise ShapeError(f"a {layout.name} frame must be HxWx{layout.channels}, got shape {frame.shape}")
    packed = frame.strides[2] == 1 and frame.strides[1] == layout.channels and frame.strides[0] >= 0
    if packed:
        return frame
    if writable:
        raise InputError(f"the output frame must have packed pixels (strides {frame.strides})")
    return np.ascontiguousarray(frame)


def _planar(planar: np.ndarray) -> np.ndarray:
    if not isinstance(planar, np.ndarray) or planar.ndim != 3 or planar.shape[0] != 3:
        raise ShapeError(f"a planar tensor must be (3, H, W), got {getattr(planar, 'shape', type(planar).__name__)}")
    dtype_code(planar.dtype)
    return np.ascontiguousarray(planar)


# --------------------------------------------------------------------------- the NumPy/OpenCV path


def _as_bgr(frame: np.ndarray, layout: Layout) -> np.ndarray:
    """The frame with its colour bytes in OpenCV's BGR(A) order."""
    if layout in (Layout.RGB, Layout.RGBA):
        order = [2, 1, 0] if layout is Layout.RGB else [2, 1, 0, 3]
        return np.ascontiguousarray(frame[:, :, order])
    return frame


def frame_to_planar_numpy(
    frame: np.ndarray,
    padded_height: int,
    padded_width: int,
    layout: Layout = Layout.BGR,
    dtype: np.dtype | type = np.float32,
    scale_rule: ScaleRule = ScaleRule.MUL_RECIPROCAL,
) -> np.ndarray:
    """What the runtime does in NumPy/OpenCV: bgr_to_rgb_float (or image_io's division), NCHW, pad_nchw."""
    code = dtype_code(dtype)
    frame = _pitched_frame(frame, layout)
    height, width = frame.shape[:2]
    if padded_height < height or padded_width < width:
        raise ShapeError(f"padded size {padded_width}x{padded_height} is smaller than the frame {width}x{height}")
    rgb = bgr8_to_rgb_float(np.ascontiguousarray(_as_bgr(frame, layout)[:, :, :3]), scale_rule)
    planar = pad_nchw(np.ascontiguousarray(rgb.transpose(2, 0, 1))[None], padded_height, padded_width)[0]
    return np.ascontiguousarray(planar.astype(_NUMPY_DTYPES[code], copy=False))


def planar_to_frame_numpy(planar: np.ndarray, height: int, width: int, layout: Layout = Layout.BGR) -> np.ndarray:
    """What the runtime does in NumPy/OpenCV: crop, rgb_float_to_bgr8, then the layout's byte order."""
    planar = _planar(planar)
    if not (0 < height <= planar.shape[1] and 0 < width <= planar.shape[2]):
        raise ShapeError(f"crop {width}x{height} does not fit the tensor {planar.shape[2]}x{planar.shape[1]}")
    rgb = planar[:, :height, :width].astype(np.float32).transpose(1, 2, 0)
    bgr = rgb_float_to_bgr8(rgb)
    if layout is Layout.BGR:
        return bgr
    if layout is Layout.RGB:
        return np.ascontiguousarray(bgr[:, :, ::-1])
    code = cv2.COLOR_BGR2BGRA if layout is Layout.BGRA else cv2.COLOR_BGR2RGBA
    return cv2.cvtColor(bgr, code)


# --------------------------------------------------------------------------- loading and dispatch


def _library_in(folder: Path) -> Path | None:
    for name in (f"lib{LIBRARY_NAME}.so", f"lib{LIBRARY_NAME}.dylib", f"{LIBRARY_NAME}.dll"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_library() -> Path | None:
    """$UNFOLDLDM_NATIVE_LIB (a file or a folder), else build/ under the repository root, else the
    system library path (`cmake --install`); None when none has it. BackendUnavailable when the
    environment variable names nothing usable: it is an explicit request."""
    configured = os.environ.get(LIBRARY_ENV)
    if configured:
        path = Path(configured)
        found = _library_in(path) if path.is_dir() else path if path.is_file() else None
        if found is None:
            raise BackendUnavailable(f"{LIBRARY_ENV}={configured}: no frame kernels library there")
        return found
    for folder in (REPO_BUILD, REPO_BUILD / "Release"):
        found = _library_in(folder)
        if found is not None:
            return found
    installed = ctypes.util.find_library(LIBRARY_NAME)  # a bare file name, resolved by the loader
    return Path(installed) if installed else None


@cache
def load_frame_kernels() -> FrameKernels | None:
    """The native library, or None (logged once) when it was not built."""
    path = find_library()
    if path is None:
        log.warning(
            "native frame kernels not built (looked in $%s, %s and the system library path); using the NumPy/OpenCV "
            "path (build them: cmake -S . -B build && cmake --build build -j2)",
            LIBRARY_ENV,
            REPO_BUILD,
        )
        return None
    return FrameKernels(path)


def frame_to_planar(
    frame: np.ndarray,
    padded_height: int,
    padded_width: int,
    layout: Layout = Layout.BGR,
    dtype: np.dtype | type = np.float32,
    scale_rule: ScaleRule = ScaleRule.MUL_RECIPROCAL,
) -> np.ndarray:
    """8-bit frame -> planar (3, padded_height, padded_width) RGB; the C reference when built."""
    kernels = load_frame_kernels()
    if kernels is None:
        return frame_to_planar_numpy(frame, padded_height, padded_width, layout, dtype, scale_rule)
    return kernels.frame_to_planar(frame, padded_height, padded_width, layout, dtype, scale_rule)


def planar_to_frame(planar: np.ndarray, height: int, width: int, layout: Layout = Layout.BGR) -> np.ndarray:
    """Planar (3, H, W) RGB -> 8-bit (height, width) frame; the C reference when built."""
    kernels = load_frame_kernels()
    if kernels is None:
        return planar_to_frame_numpy(planar, height, width, layout)
    return kernels.planar_to_frame(planar, height, width, layout)


class NativeBlender:
    """runtime.tiling.Blender through the C reference: same interface, bit-identical result."""

    def __init__(self, kernels: FrameKernels, batch: int, channels: int, height: int, width: int, overlap: int) -> None:
        self._kernels = kernels
        self.height, self.width, self.overlap = height, width, overlap
        self.shape = (batch, channels, height, width)
        self.total = np.empty(self.shape, dtype=np.float32)
        self.weight = np.empty((height, width), dtype=np.float32)
        kernels.blend_clear(Device.CPU, self.total.ctypes.data, self.weight.ctypes.data, *self.shape)

    def add(self, tile: Tile, values: np.ndarray) -> None:
        expected = (*self.shape[:2], tile.height, tile.width)
        if not isinstance(values, np.ndarray) or values.shape != expected:
            raise ShapeError(f"tile values must be {expected}, got {getattr(values, 'shape', type(values).__name__)}")
        code = dtype_code(values.dtype)
        values = np.ascontiguousarray(values)
        self._kernels.blend_add(
            Device.CPU, self.total.ctypes.data, self.weight.ctypes.data, self.shape, self.overlap,
            values.ctypes.data, code, tile,
        )  # fmt: skip

    def result(self) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.float32)
        self._kernels.blend_normalize(
            Device.CPU, self.total.ctypes.data, self.weight.ctypes.data, out.ctypes.data, self.shape
        )
        return out


def make_blender(batch: int, channels: int, height: int, width: int, overlap: int) -> Blender | NativeBlender:
    """A tile blender: the C reference when built, else runtime.tiling.Blender."""
    kernels = load_frame_kernels()
    if kernels is None:
        return Blender(batch, channels, height, width, overlap)
    return NativeBlender(kernels, batch, channels, height, width, overlap)
