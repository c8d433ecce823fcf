"""The frame work around the graphs, on a CUDA device, through the native frame kernels.

On a CUDA backend (TensorRT, torch on CUDA) whose native library has CUDA kernels
(`runtime/frame_kernels.py`; docs/GPU.md, "Native frame kernels"), what the pipeline otherwise
does in NumPy on the host happens on the device, queued on the backend's stream:

- an 8-bit BGR frame crosses the bus as bytes (a quarter of its FP32 size) and becomes the padded
  planar FP32 RGB input there (`planar_from_bgr8`: scale, channel order, reflect padding);
- the restored planar frame becomes 8-bit BGR there (crop, clamp, round) and only those bytes
  come back (`fetch_bgr8`); where the backend checks its outputs for NaN/Inf (TensorRT's
  `check_finite`, on by default), the same kernel counts the non-finite samples it converts and
  that count comes back with the bytes, so a NaN/Inf frame raises the float path's InferenceError
  instead of leaving as 0 or 255, with no extra wait;
- tiles are cut out of whole-frame tensors (`tile`, a pitched device copy) and the graphs'
  tile outputs are blended into whole-frame tensors (`blender`), so a tiled frame never waits
  per tile.

Nothing here waits for the device: the pipeline synchronises once per frame, when it reads what
`fetch_later` queued. Device buffers are kept per (slot, shape, dtype) (`BufferPool`) and host
buffers are the backend's page-locked staging, so after the first frame of a size nothing is
allocated. The kernels take raw device pointers and the stream handle; they run in the calling
thread's current context, which `CudaDevice.scope()` makes the device's one (pycuda's retained
primary context; torch's current device), so pycuda and torch share every line here.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from runtime.backends.base import Fetched
from runtime.backends.cuda_device import BufferPool, CudaDevice, Staging, check_nonfinite_count
from runtime.errors import ShapeError
from runtime.frame_kernels import Device, FrameKernels, Layout, ScaleRule, dtype_code, load_frame_kernels
from runtime.tiling import Tile

log = logging.getLogger(__name__)

ON_DEVICE = "native CUDA kernels on the device"
# The graphs' frame inputs and outputs are float32 in the manifest (FP16 variants keep FP32 IO).
PLANAR_DTYPE = "float32"
# What a restored 8-bit frame hands back (`bgr8_outputs`): the frame, and its NaN/Inf count.
BGR8 = "bgr8"
NONFINITE_COUNT = "nonfinite count"


class DeviceFrames:
    """Conversion, padding, tiles and blending for one CUDA backend (its device, stream, staging).

    `check_finite_as`: where the backend checks its outputs for NaN/Inf, the name its errors give
    the outputs (e.g. "TensorRT (fp16 engines)"); None where it does not check.
    """

    def __init__(
        self, device: CudaDevice, staging: Staging, kernels: FrameKernels, check_finite_as: str | None = None
    ) -> None:
        self.device = device
        self.check_finite_as = check_finite_as
        self._staging = staging
        self._kernels = kernels
        self._buffers = BufferPool(device.empty)

    def _pointer(self, array: Any) -> int:
        return self.device.pointer(array)

    def planar_from_bgr8(
        self, frame: np.ndarray, height: int, width: int, scale_rule: ScaleRule = ScaleRule.MUL_RECIPROCAL
    ) -> Any:
        """The host 8-bit BGR frame (h, w, 3) staged in as bytes (page-locked, a queued copy),
        then `to_planar`."""
        return self.to_planar(self._staging.stage_in("bgr8 in", frame), height, width, scale_rule)

    def to_planar(self, bgr8: Any, height: int, width: int, scale_rule: ScaleRule = ScaleRule.MUL_RECIPROCAL) -> Any:
        """An 8-bit BGR device frame (h, w, 3) as planar FP32 RGB (1, 3, height, width),
        reflect-padded at the bottom and right and scaled by `scale_rule` (the video path's
        x * float32(1/255) by default, `runtime/pixels.py`). Valid until the next call."""
        (h, w, _), _ = self.device.describe(bgr8)
        planar = self._buffers.get("planar in", (1, 3, height, width), PLANAR_DTYPE)
        with self.device.scope():
            self._kernels.u8_to_planar(
                Device.CUDA, self._pointer(bgr8), w * 3, h, w, Layout.BGR, scale_rule,
                self._pointer(planar), dtype_code(PLANAR_DTYPE), height, width, self.device.stream_handle,
            )  # fmt: skip
        return planar

    def to_bgr8(self, planar: Any, height: int, width: int, nonfinite_count: Any = None) -> Any:
        """The top-left height x width of planar RGB (1, 3, H, W) as an 8-bit BGR device frame:
        clamped to [0, 1], times 255, rounded half to even, NaN becoming 0 (`rgb_float_to_bgr8`).
        `nonfinite_count` (a device int64, or None): set to the number of NaN/Inf samples converted."""
        shape, dtype = self.device.describe(planar)
        if len(shape) != 4 or tuple(shape[:2]) != (1, 3):
            raise ShapeError(f"the restored frame must be (1, 3, H, W) on the device, got {list(shape)}")
        out = self._buffers.get("bgr8 out", (height, width, 3), "uint8")
        count = 0 if nonfinite_count is None else self._pointer(nonfinite_count)
        with self.device.scope():
            self._kernels.planar_to_u8(
                Device.CUDA, self._pointer(planar), dtype_code(dtype), shape[2], shape[3], self._pointer(out),
                width * 3, height, width, Layout.BGR, self.device.stream_handle, count,
            )  # fmt: skip
        return out

    def bgr8_outputs(self, planar: Any, height: int, width: int) -> dict[str, Any]:
        """What a restored frame hands back, on the device: `to_bgr8` (BGR8) and, where the backend
        checks for NaN/Inf, the count of non-finite samples it converted (NONFINITE_COUNT). Read
        them with `bgr8_result` once they are on the host."""
        if self.check_finite_as is None:
            return {BGR8: self.to_bgr8(planar, height, width)}
        count = self._buffers.get(NONFINITE_COUNT, (1,), "int64")
        return {BGR8: self.to_bgr8(planar, height, width, count), NONFINITE_COUNT: count}

    def bgr8_result(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The 8-bit frame of `bgr8_outputs` on the host; InferenceError, as the float path's
        `check_finite` raises it, when its conversion met NaN or Inf."""
        frame = outputs[BGR8]
        if self.check_finite_as is not None:
            check_nonfinite_count(int(outputs[NONFINITE_COUNT][0]), frame.size, self.check_finite_as)
        return frame

    def fetch_bgr8(self, planar: Any, height: int, width: int) -> Fetched:
        """`bgr8_outputs`, copied into page-locked host buffers by copies queued on the stream:
        `get()` it after the backend's `finish()` (the frame's one wait) for `bgr8_result`."""
        outputs = self.bgr8_outputs(planar, height, width)
        hosts = {name: self._staging.fetch_later(name, array) for name, array in outputs.items()}

        def result(frame: np.ndarray) -> np.ndarray:
            return self.bgr8_result({**hosts, BGR8: frame})

        return Fetched(hosts[BGR8], reused=True, check=result)

    def planar_on_host(
        self, frame: np.ndarray, height: int, width: int, scale_rule: ScaleRule = ScaleRule.MUL_RECIPROCAL
    ) -> np.ndarray:
        """`to_planar` on the host (the C reference, synchronous), for what must read the padded
        frame there (the prior cache's scene test); bit for bit the NumPy path's frame."""
        return self._kernels.frame_to_planar(frame, height, width, Layout.BGR, np.float32, scale_rule)

    def tile(self, slot: Hashable, source: Any, tile: Tile) -> Any:
        """Tile `tile` of the whole-frame device tensor `source` (N, C, H, W), copied into the
        slot's contiguous buffer (the graphs take contiguous inputs). Valid until the slot is
        cut again at this shape; the stream orders that after every reader queued before it."""
        shape, dtype = self.device.describe(source)
        target = self._buffers.get(("tile", slot), (*shape[:2], tile.height, tile.width), dtype)
        self.device.copy_tile(target, source, tile.top, tile.left)
        return target

    def blender(self, slot: Hashable, shape: tuple[int, int, int, int], overlap: int) -> DeviceBlender:
        """A cleared `runtime.tiling.Blender` on the device whose result lives in the slot's
        buffer. The weight buffer is shared by every blender of a frame size: blends run one
        after another on the one stream, and each clears it first."""
        total = self._buffers.get(("blend", slot), shape, "float32")
        weight = self._buffers.get("blend weight", shape[2:], "float32")
        return DeviceBlender(self.device, self._kernels, total, weight, shape, overlap)


class DeviceBlender:
    """runtime.tiling.Blender on the device (the same float32 operations in the same order, see
    native/include/unfoldldm_frame_kernels.h), queued on the stream; `DeviceFrames.blender` makes one."""

    def __init__(
        self,
        device: CudaDevice,
        kernels: FrameKernels,
        total: Any,
        weight: Any,
        shape: tuple[int, int, int, int],
        overlap: int,
    ) -> None:
        self._device, self._kernels, self.shape, self.overlap = device, kernels, shape, overlap
        self._total, self._weight = device.pointer(total), device.pointer(weight)
        self._result = total
        with device.scope():
            kernels.blend_clear(Device.CUDA, self._total, self._weight, *shape, device.stream_handle)

    def add(self, tile: Tile, values: Any) -> None:
        """Add a graph's tile output (N, C, tile.height, tile.width) at the tile's place."""
        device = self._device
        shape, dtype = device.describe(values)
        expected = (*self.shape[:2], tile.height, tile.width)
        if tuple(shape) != expected:
            raise ShapeError(f"tile values must be {list(expected)}, got {list(shape)}")
        with device.scope():
            self._kernels.blend_add(
                Device.CUDA, self._total, self._weight, self.shape, self.overlap, device.pointer(values),
                dtype_code(dtype), tile, device.stream_handle,
            )  # fmt: skip

    def result(self) -> Any:
        """The blended whole frame, normalised in place (in the blender's slot buffer)."""
        device = self._device
        with device.scope():
            self._kernels.blend_normalize(
                Device.CUDA, self._total, self._weight, self._total, self.shape, device.stream_handle
            )
        return self._result


def attach_device_frames(
    device: CudaDevice, staging: Staging, check_finite_as: str | None = None
) -> tuple[DeviceFrames | None, str]:
    """(DeviceFrames, ON_DEVICE) when the native library has CUDA kernels that can run here, else
    (None, why): the pipeline then does the frame work in NumPy on the host, as on the CPU.
    `check_finite_as`: see `DeviceFrames`."""
    kernels = load_frame_kernels()  # logs once when the library is not built
    if kernels is None:
        return None, "NumPy on the host (the native frame kernels are not built)"
    if not kernels.cuda_available:
        why = "built without CUDA" if not kernels.built_with_cuda else "its CUDA kernels see no device"
        log.warning("native frame kernels %s: %s; frames are converted and blended in NumPy", kernels.path, why)
        return None, f"NumPy on the host ({kernels.path.name}: {why})"
    return DeviceFrames(device, staging, kernels, check_finite_as), ON_DEVICE
