"""A stand-in for the GPU side of the native frame kernels (`device` = CUDA), over the fake pycuda.

No GPU here, so a call of the library with `device` = UFK_DEVICE_CUDA cannot run its CUDA kernel.
This fake wraps the real library (built from native/) and answers such a call with the library's
own C reference (`device` = UFK_DEVICE_CPU) on the NumPy arrays that stand in for device memory
(`tests/runtime/fake_pycuda.py`, found by address through `FakeCuda.at`). Everything above the C
ABI runs for real: `runtime/frame_kernels.py`'s wrapper, `runtime/backends/device_frames.py`, the
backends and the pipeline. CPU calls go to the library untouched.

What it enforces, as the CUDA kernels would need: a current context in the calling thread; a
stream handle (never 0, the legacy default stream, which would order the kernel against every
other stream of the process); every pointer the start of a device allocation, and every byte
the call would touch inside it (an "illegal address" otherwise, where the C reference on host
memory would silently overrun). It counts launches in `FakeCuda.counts.kernel_launches`. The
C reference runs when the kernel is queued, so results are visible at once; the CUDA kernels
themselves are checked against the C reference on a GPU (the `gpu` tests of
tests/runtime/test_frame_kernels.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from runtime.frame_kernels import DType, FrameKernels, Layout
from tests.runtime.fake_pycuda import FakeCuda, LogicError

CUDA = 1
_ITEM = {DType.FP32: 4, DType.FP16: 2}


def _pitched(height: int, width: int, stride: int, layout: int) -> int:
    return (height - 1) * stride + width * Layout(layout).channels


# Per function: the stream's argument index, and (pointer index, bytes the call touches from it);
# an optional pointer that is null is left out.
_Extent = Callable[[tuple[Any, ...]], list[tuple[int, int]]]
_CALLS: dict[str, tuple[int, _Extent]] = {
    # device, src, stride, h, w, layout, rule, dst, dtype, padded_h, padded_w, stream
    "ufk_u8_to_planar": (
        11,
        lambda a: [(1, _pitched(a[3], a[4], a[2], a[5])), (7, 3 * a[9] * a[10] * _ITEM[a[8]])],
    ),
    # device, src, dtype, src_h, src_w, dst, stride, h, w, layout, nonfinite_count (int64 or null), stream
    "ufk_planar_to_u8": (
        11,
        lambda a: (
            [(1, 3 * a[3] * a[4] * _ITEM[a[2]]), (5, _pitched(a[7], a[8], a[6], a[9]))] + ([(10, 8)] if a[10] else [])
        ),
    ),
    # device, total, weight, n, c, h, w, stream
    "ufk_blend_clear": (7, lambda a: [(1, 4 * a[3] * a[4] * a[5] * a[6]), (2, 4 * a[5] * a[6])]),
    # device, total, weight, n, c, h, w, overlap, tile, dtype, top, left, tile_h, tile_w, stream
    "ufk_blend_add": (
        14,
        lambda a: [
            (1, 4 * a[3] * a[4] * a[5] * a[6]),
            (2, 4 * a[5] * a[6]),
            (8, a[3] * a[4] * a[12] * a[13] * _ITEM[a[9]]),
        ],
    ),
    # device, total, weight, out, n, c, h, w, stream
    "ufk_blend_normalize": (
        8,
        lambda a: [(1, 4 * a[4] * a[5] * a[6] * a[7]), (2, 4 * a[6] * a[7]), (3, 4 * a[4] * a[5] * a[6] * a[7])],
    ),
}


class _FakeCudaLibrary:
    """The loaded library with its CUDA entry answered over fake device memory (see the module)."""

    def __init__(self, library: Any, cuda: FakeCuda) -> None:
        self._library, self._cuda = library, cuda

    def ufk_cuda_available(self) -> int:
        return 1  # the fake device is there

    def ufk_built_with_cuda(self) -> int:
        return 1

    def __getattr__(self, name: str) -> Any:
        function = getattr(self._library, name)
        if name not in _CALLS:
            return function
        stream_at, extents = _CALLS[name]

        def call(*args: Any) -> int:
            if args[0] != CUDA:
                return function(*args)
            self._cuda.require_context(name)
            if not args[stream_at]:
                raise LogicError(f"{name}: queued on the legacy default stream (pass the backend's stream)")
            host = list(args)
            host[0], host[stream_at] = 0, None  # the C reference, synchronous
            for index, size in extents(args):
                memory = self._device_memory(name, args[index])
                if size > memory.nbytes:
                    raise LogicError(f"{name}: illegal address (touches {size} bytes of a {memory.nbytes}-byte buffer)")
                host[index] = memory.ctypes.data
            self._cuda.counts.kernel_launches += 1
            return function(*host)

        return call

    def _device_memory(self, name: str, address: int) -> np.ndarray:
        if address not in self._cuda.memory:
            raise LogicError(f"{name}: illegal address {address:#x} (not the start of a device allocation)")
        memory = self._cuda.at(address)
        assert memory.flags.c_contiguous  # device allocations are contiguous
        return memory


def fake_cuda_frame_kernels(kernels: FrameKernels, cuda: FakeCuda, monkeypatch: Any) -> FrameKernels:
    """`kernels` (the real library, loaded) with its CUDA entry answered over `cuda`'s memory."""
    monkeypatch.setattr(kernels, "_lib", _FakeCudaLibrary(kernels._lib, cuda))
    return kernels
