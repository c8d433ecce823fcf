"""A stand-in for pycuda (the GPU library only) that enforces CUDA's rules a CPU cannot show.

What it enforces, as the real driver does:
- a context is current **per thread**: every call that needs one (allocation, copies, streams,
  events) fails with "invalid device context" in a thread where no context was pushed;
- `pycuda.autoprimaryctx` makes the primary context current in the importing thread only;
- `GPUArray.astype` compiles an elementwise kernel through `SourceModule` in real pycuda, which
  needs nvcc at run time (absent on a stock JetPack): here it fails, so the run path must not use it.

It counts what the counting tests look at: allocations (device and page-locked), blocking and
asynchronous copies and the bytes they move, device-to-device copies (`Memcpy2D`),
synchronisations. Device memory is host memory (NumPy), found by address through `FakeCuda.at`
(what the fake TensorRT engines and the fake frame kernels read and write); nothing is timed.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import threading
import types
from dataclasses import dataclass
from itertools import count
from typing import Any

import numpy as np


class Error(Exception):
    """pycuda.driver.Error."""


class LogicError(Error):
    """pycuda.driver.LogicError (what an invalid-context call raises)."""


@dataclass
class Counts:
    allocations: int = 0  # device memory and page-locked host memory
    blocking_copies: int = 0  # synchronous copies (each waits for the device)
    async_copies: int = 0
    synchronizations: int = 0  # stream, event and context waits
    bytes_to_device: int = 0  # host -> device, blocking and asynchronous copies
    bytes_to_host: int = 0  # device -> host
    device_copies: int = 0  # device -> device (Memcpy2D), asynchronous
    kernel_launches: int = 0  # native frame kernels (tests/runtime/fake_frame_kernels.py)

    def since(self, before: Counts) -> Counts:
        return Counts(*(a - b for a, b in zip(vars(self).values(), vars(before).values(), strict=True)))


class FakeCuda:
    """The state of one fake driver: contexts per thread, counters, addresses."""

    def __init__(self) -> None:
        self.initialised = False
        self.counts = Counts()
        self._local = threading.local()
        self._addresses = count(0x7F0000000000, 0x100000)
        self.memory: dict[int, np.ndarray] = {}  # device address -> the array standing in for it

    def stack(self) -> list[Any]:
        return self._local.__dict__.setdefault("stack", [])

    def require_context(self, call: str) -> None:
        if not self.initialised:
            raise LogicError(f"{call} failed: initialization error (cuInit was not called)")
        if not self.stack():
            raise LogicError(f"{call} failed: invalid device context")

    def address(self) -> int:
        return next(self._addresses)

    def at(self, address: int) -> np.ndarray:
        """The device array at `address` (what an engine reads and writes through a pointer)."""
        return self.memory[int(address)]


def install_fake_pycuda(monkeypatch: Any) -> FakeCuda:
    """Put a fake `pycuda`, `pycuda.driver`, `pycuda.gpuarray`, `pycuda.autoprimaryctx` in sys.modules."""
    cuda = FakeCuda()

    class Context:
        def __init__(self, device: int) -> None:
            self.device = device
            self.detached = False

        def push(self) -> None:
            cuda.stack().append(self)

        @staticmethod
        def pop() -> None:
            if not cuda.stack():
                raise LogicError("context::pop failed: cannot pop non-current context")
            cuda.stack().pop()

        @staticmethod
        def get_current() -> Context | None:
            return cuda.stack()[-1] if cuda.stack() else None

        def detach(self) -> None:
            self.detached = True

    class Device:
        def __init__(self, index: int) -> None:
            if not cuda.initialised:
                raise LogicError("cuDeviceGet failed: initialization error")
            self.index = index

        @staticmethod
        def count() -> int:
            return 1

        def name(self) -> str:
            return "Orin (nvgpu)"

        def compute_capability(self) -> tuple[int, int]:
            return (8, 7)

        def retain_primary_context(self) -> Context:
            return Context(self.index)

    class Stream:
        def __init__(self, flags: int = 0) -> None:
            cuda.require_context("cuStreamCreate")
            self.handle = cuda.address()

        def synchronize(self) -> None:
            cuda.require_context("cuStreamSynchronize")
            cuda.counts.synchronizations += 1

    class Event:
        def __init__(self, flags: int = 0) -> None:
            cuda.require_context("cuEventCreate")

        def record(self, stream: Stream | None = None) -> Event:
            cuda.require_context("cuEventRecord")
            return self

        def synchronize(self) -> Event:
            cuda.require_context("cuEventSynchronize")
            cuda.counts.synchronizations += 1
            return self

        def time_since(self, other: Event) -> float:
            cuda.require_context("cuEventElapsedTime")
            return 0.0

    class Flags:
        c_contiguous = True

    class GPUArray:
        def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
            cuda.require_context("cuMemAlloc")
            cuda.counts.allocations += 1
            self._data = np.empty(shape, dtype)
            self.shape, self.dtype, self.flags = self._data.shape, self._data.dtype, Flags()
            self.gpudata = cuda.address()
            cuda.memory[self.gpudata] = self._data

        def get(self) -> np.ndarray:
            cuda.require_context("cuMemcpyDtoH")
            cuda.counts.blocking_copies += 1
            cuda.counts.bytes_to_host += self._data.nbytes
            return self._data.copy()

        def set(self, array: np.ndarray) -> None:
            cuda.require_context("cuMemcpyHtoD")
            cuda.counts.blocking_copies += 1
            cuda.counts.bytes_to_device += self._data.nbytes
            self._data[...] = array

        def astype(self, dtype: Any, stream: Stream | None = None) -> GPUArray:
            raise RuntimeError("pycuda.compiler.SourceModule: nvcc not found (GPUArray.astype compiles a kernel)")

    def empty(shape: tuple[int, ...], dtype: Any) -> GPUArray:
        return GPUArray(tuple(shape), dtype)

    def to_gpu(array: np.ndarray) -> GPUArray:
        out = GPUArray(array.shape, array.dtype)
        out.set(array)
        return out

    def init(flags: int = 0) -> None:
        cuda.initialised = True

    class PageLocked(np.ndarray):
        """Page-locked host memory (a marker type: async copies refuse pageable arrays)."""

    def pagelocked_empty(shape: tuple[int, ...], dtype: Any, order: str = "C", mem_flags: int = 0) -> np.ndarray:
        cuda.require_context("cuMemHostAlloc")
        cuda.counts.allocations += 1
        return np.empty(shape, dtype).view(PageLocked)

    def _async_host(array: np.ndarray, call: str) -> np.ndarray:
        cuda.require_context(call)
        if not isinstance(array, PageLocked) and not isinstance(getattr(array, "base", None), PageLocked):
            raise LogicError(f"{call} failed: the host array is not page-locked (the copy would not be asynchronous)")
        cuda.counts.async_copies += 1
        return array

    def memcpy_htod_async(dest: int, src: np.ndarray, stream: Stream | None = None) -> None:
        cuda.at(dest)[...] = _async_host(src, "cuMemcpyHtoDAsync").reshape(cuda.at(dest).shape)
        cuda.counts.bytes_to_device += src.nbytes

    def memcpy_dtoh_async(dest: np.ndarray, src: int, stream: Stream | None = None) -> None:
        _async_host(dest, "cuMemcpyDtoHAsync")[...] = cuda.at(src).reshape(dest.shape)
        cuda.counts.bytes_to_host += dest.nbytes

    class Memcpy2D:
        """A pitched 2D copy between device arrays (cuMemcpy2D); rows of `width_in_bytes` bytes."""

        src_x_in_bytes = src_y = dst_x_in_bytes = dst_y = 0

        def set_src_device(self, address: int) -> None:
            self._src = int(address)

        def set_dst_device(self, address: int) -> None:
            self._dst = int(address)

        def __call__(self, stream: Stream | None = None) -> None:
            cuda.require_context("cuMemcpy2DAsync" if stream is not None else "cuMemcpy2D")
            if stream is None:
                raise LogicError("Memcpy2D without a stream waits for the device: pass the backend's stream")

            def rows(address: int, pitch: int) -> np.ndarray:
                memory = cuda.at(address).reshape(-1).view(np.uint8)
                if memory.size % pitch:
                    raise LogicError(f"cuMemcpy2DAsync failed: pitch {pitch} does not divide {memory.size} bytes")
                return memory.reshape(-1, pitch)

            src, dst = rows(self._src, self.src_pitch), rows(self._dst, self.dst_pitch)
            width, height = self.width_in_bytes, self.height
            if self.src_y + height > src.shape[0] or self.dst_y + height > dst.shape[0]:
                raise LogicError("cuMemcpy2DAsync failed: invalid argument (rows outside the allocation)")
            if self.src_x_in_bytes + width > self.src_pitch or self.dst_x_in_bytes + width > self.dst_pitch:
                raise LogicError("cuMemcpy2DAsync failed: invalid argument (a row wider than its pitch)")
            window = src[self.src_y : self.src_y + height, self.src_x_in_bytes : self.src_x_in_bytes + width]
            dst[self.dst_y : self.dst_y + height, self.dst_x_in_bytes : self.dst_x_in_bytes + width] = window
            cuda.counts.device_copies += 1

    driver = types.ModuleType("pycuda.driver")
    driver.__dict__.update(
        Error=Error,
        LogicError=LogicError,
        Context=Context,
        Device=Device,
        Stream=Stream,
        Event=Event,
        init=init,
        pagelocked_empty=pagelocked_empty,
        memcpy_htod_async=memcpy_htod_async,
        memcpy_dtoh_async=memcpy_dtoh_async,
        Memcpy2D=Memcpy2D,
    )
    gpuarray = types.ModuleType("pycuda.gpuarray")
    gpuarray.__dict__.update(GPUArray=GPUArray, empty=empty, to_gpu=to_gpu)
    package = types.ModuleType("pycuda")
    package.__path__ = []  # a package, so that "import pycuda.x" looks in sys.modules
    package.__dict__.update(driver=driver, gpuarray=gpuarray)
    for name, module in (("pycuda", package), ("pycuda.driver", driver), ("pycuda.gpuarray", gpuarray)):
        monkeypatch.setitem(sys.modules, name, module)
    # autoprimaryctx: importing it (once per process) pushes the primary context in the importing
    # thread only, as the real module does at import time.
    class AutoPrimaryContext(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            return importlib.util.spec_from_loader(name, self) if name == "pycuda.autoprimaryctx" else None

        def create_module(self, spec: Any) -> None:
            return None

        def exec_module(self, module: types.ModuleType) -> None:
            init()
            module.context = Device(0).retain_primary_context()
            module.context.push()

    monkeypatch.delitem(sys.modules, "pycuda.autoprimaryctx", raising=False)
    monkeypatch.setattr(sys, "meta_path", [AutoPrimaryContext(), *sys.meta_path])
    return cuda
