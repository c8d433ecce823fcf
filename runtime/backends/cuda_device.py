"""Device-side machinery shared by the torch backend on CUDA and the TensorRT backend.

One `CudaDevice` owns a CUDA stream and the device arrays of one backend:

- `upload` / `download` / `empty` / `copy_from_host`: arrays in the library's own type (no
  device-side casts: a cast would compile a kernel at run time on pycuda, so dtypes are made
  final on the host before upload);
- `pointer` (the device address TensorRT's `set_tensor_address` and the native frame kernels
  take) and `stream_handle`;
- `copy_tile`: a window of a whole-frame tensor into a tile buffer, queued on the stream;
- `scope()`: the device's context is current in the calling thread and library calls (torch
  ops) queue on this device's stream, whichever thread calls;
- `timer()`: CUDA-event timing of the work queued inside it;
- `supports_graphs` / `capture`: CUDA-graph capture of work queued on the stream.

Two implementations, chosen by `open_cuda_device`:

- **pycuda** (`pycuda.gpuarray.GPUArray`): the Jetson path, no torch needed. It retains the
  device's *primary* context, the same context PyTorch and TensorRT use, so the three coexist
  in one process, and makes it current around each call from any thread. Host copies are
  synchronous (pageable memory; the frames are copied once in and once out). pycuda has no
  stream capture here: no CUDA graphs.
- **torch** (`torch.Tensor` on CUDA): where pycuda is absent, and always for the torch backend
  (its programs take torch tensors). Every op runs on a dedicated stream; CUDA graphs through
  `torch.cuda.CUDAGraph`.

`BufferPool` keeps one buffer per (slot, shape, dtype), so a backend writes each graph output
into the same memory frame after frame (and a captured CUDA graph keeps valid addresses), and
`FrameGraph` captures a whole frame (every stage of every graph) as one CUDA graph for a static
input shape. Nothing here imports torch or pycuda at module import time.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any, ClassVar

import numpy as np

from runtime.backends.base import FrameBody
from runtime.errors import BackendUnavailable, InferenceError, ShapeError

LIBRARIES = ("auto", "pycuda", "torch")
Shape = tuple[int, ...]


class EventTimer:
    """Milliseconds of device work between `__enter__` and `__exit__`, measured with CUDA events."""

    def __init__(self, start: Any, stop: Any, record: Callable[[Any], None], elapsed: Callable[[Any, Any], float]):
        self._start, self._stop, self._record, self._elapsed = start, stop, record, elapsed
        self.ms: float | None = None

    def __enter__(self) -> EventTimer:
        self._record(self._start)
        return self

    def __exit__(self, *exc: object) -> None:
        self._record(self._stop)
        if exc[0] is None:
            self.ms = self._elapsed(self._start, self._stop)  # waits for the stop event


class CudaDevice(ABC):
    """One CUDA device and stream, as a backend sees it. Arrays are the library's own type."""

    library: ClassVar[str]
    supports_graphs: ClassVar[bool] = False

    def __init__(self, index: int = 0) -> None:
        self.index = index

    @property
    @abstractmethod
    def stream_handle(self) -> int:
        """The `cudaStream_t` of this device's stream, as an int (for execute_async_v3)."""

    @abstractmethod
    def empty(self, shape: Shape, dtype: str) -> Any: ...

    @abstractmethod
    def upload(self, array: np.ndarray) -> Any:
        """A new device array holding `array` (the host array may be reused after this returns)."""

    @abstractmethod
    def copy_from_host(self, target: Any, array: np.ndarray) -> None:
        """Overwrite the device array `target` (same shape and dtype) with `array`."""

    @abstractmethod
    def download(self, array: Any) -> np.ndarray:
        """Wait for the stream, then copy `array` to the host."""

    @abstractmethod
    def pinned(self, shape: Shape, dtype: str) -> np.ndarray:
        """A page-locked host array (asynchronous copies need one; pageable memory would block)."""

    @abstractmethod
    def copy_in_async(self, target: Any, host: np.ndarray) -> None:
        """Queue a copy of the page-locked `host` into the device array `target` on the stream."""

    @abstractmethod
    def copy_out_async(self, host: np.ndarray, source: Any) -> None:
        """Queue a copy of the device array `source` into the page-locked `host` on the stream."""

    @abstractmethod
    def copy_tile(self, target: Any, source: Any, top: int, left: int) -> None:
        """Queue on the stream a copy of the (N, C, h, w) window at (top, left) of the device
        array `source` (N, C, H, W) into the contiguous device array `target` (N, C, h, w)."""

    @abstractmethod
    def describe(self, array: Any) -> tuple[Shape, str]:
        """(shape, numpy dtype name) of a device array."""

    @abstractmethod
    def pointer(self, array: Any) -> int:
        """Device address of a contiguous device array."""

    @abstractmethod
    def synchronize(self) -> None: ...

    @abstractmethod
    def timer(self) -> EventTimer: ...

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """Library calls inside this context queue on this device's stream."""
        return contextlib.nullcontext()

    def capture(self, body: Callable[[], Any]) -> tuple[Callable[[], None], Any]:
        """Capture the device work of `body()` as a CUDA graph: (replay, what body returned)."""
        raise BackendUnavailable(f"CUDA graphs are not available through {self.library}")

    def close(self) -> None:
        return None


# --------------------------------------------------------------------------------- torch


_TORCH_DTYPES = ("float32", "float16", "int32", "int64", "int8", "uint8", "bool")


class TorchCudaDevice(CudaDevice):
    """torch tensors on CUDA; every op of this backend runs on one dedicated stream."""

    library = "torch"
    supports_graphs = True

    def __init__(self, index: int = 0) -> None:
        super().__init__(index)
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable("torch sees no CUDA device")
        if index >= torch.cuda.device_count():
            raise BackendUnavailable(f"CUDA device {index} requested; torch sees {torch.cuda.device_count()}")
        self._torch = torch
        self.device = torch.device("cuda", index)
        self._stream = torch.cuda.Stream(self.device)

    @property
    def stream_handle(self) -> int:
        return int(self._stream.cuda_stream)

    @property
    def stream(self) -> Any:
        return self._stream

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        return self._torch.cuda.stream(self._stream)

    def _dtype(self, name: str) -> Any:
        if name not in _TORCH_DTYPES:
            raise ShapeError(f"dtype {name!r} is not supported on the device (use one of {', '.join(_TORCH_DTYPES)})")
        return getattr(self._torch, name)

    def empty(self, shape: Shape, dtype: str) -> Any:
        with self.scope():
            return self._torch.empty(tuple(shape), dtype=self._dtype(dtype), device=self.device)

    def upload(self, array: np.ndarray) -> Any:
        with self.scope():
            # Pageable host memory: the copy has finished reading `array` when this returns.
            return self._torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def copy_from_host(self, target: Any, array: np.ndarray) -> None:
        with self.scope():
            target.copy_(self._torch.from_numpy(np.ascontiguousarray(array)))

    def download(self, array: Any) -> np.ndarray:
        with self.scope():
            host = array.detach().to("cpu")  # a blocking copy, queued after the work on the stream
        return host.numpy()

    def pinned(self, shape: Shape, dtype: str) -> np.ndarray:
        # The numpy view keeps the pinned tensor alive through its base.
        return self._torch.empty(tuple(shape), dtype=self._dtype(dtype), pin_memory=True).numpy()

    def copy_in_async(self, target: Any, host: np.ndarray) -> None:
        with self.scope():
            target.copy_(self._torch.from_numpy(host), non_blocking=True)

    def copy_out_async(self, host: np.ndarray, source: Any) -> None:
        with self.scope():
            self._torch.from_numpy(host).copy_(source, non_blocking=True)

    def copy_tile(self, target: Any, source: Any, top: int, left: int) -> None:
        height, width = target.shape[2:]
        with self.scope():
            target.copy_(source[:, :, top : top + height, left : left + width])

    def describe(self, array: Any) -> tuple[Shape, str]:
        return tuple(array.shape), str(array.dtype).removeprefix("torch.")

    def pointer(self, array: Any) -> int:
        if not array.is_contiguous():
            raise ShapeError("device arrays handed to an engine must be contiguous")
        return int(array.data_ptr())

    def synchronize(self) -> None:
        self._stream.synchronize()

    def timer(self) -> EventTimer:
        def elapsed(start: Any, stop: Any) -> float:
            stop.synchronize()
            return float(start.elapsed_time(stop))

        event = self._torch.cuda.Event
        return EventTimer(
            event(enable_timing=True), event(enable_timing=True), lambda e: e.record(self._stream), elapsed
        )

    def capture(self, body: Callable[[], Any]) -> tuple[Callable[[], None], Any]:
        graph = self._torch.cuda.CUDAGraph()
        self.synchronize()
        # thread_local: other threads (capture, output) may still use CUDA while we capture.
        with self._torch.cuda.graph(graph, stream=self._stream, capture_error_mode="thread_local"):
            result = body()
        return graph.replay, result


# -------------------------------------------------------------------------------- pycuda


class PyCudaDevice(CudaDevice):
    """pycuda GPUArrays in the device's primary context (shared with PyTorch and TensorRT).

    The driver API needs a current context in the calling thread, and a context is current only
    in the thread that pushed it: `pycuda.autoprimaryctx` would make it current in the importing
    thread alone, while the video loop runs inference in a thread of its own. So this device
    retains the primary context itself and pushes it around every call (`scope()`), from
    whichever thread the call comes. Buffers must be freed inside `scope()` too (pycuda frees
    in the context that is current), which the backends do when they close.
    """

    library = "pycuda"

    def __init__(self, index: int = 0) -> None:
        super().__init__(index)
        try:
            import pycuda.driver as driver
            import pycuda.gpuarray as gpuarray
        except ImportError as exc:
            raise BackendUnavailable(f"pycuda is not installed ({exc})") from exc
        try:
            driver.init()
            if index >= driver.Device.count():
                raise BackendUnavailable(f"CUDA device {index} requested; the driver sees {driver.Device.count()}")
            self._context = driver.Device(index).retain_primary_context()
        except driver.Error as exc:  # cuInit or context errors: no usable device
            raise BackendUnavailable(f"pycuda cannot open CUDA device {index} ({exc})") from exc
        self._driver, self._gpuarray = driver, gpuarray
        with self.scope():
            self._stream = driver.Stream()

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """This device's context is current in the calling thread while the block runs."""
        self._context.push()
        try:
            yield
        finally:
            self._driver.Context.pop()

    @property
    def stream_handle(self) -> int:
        return int(self._stream.handle)

    def empty(self, shape: Shape, dtype: str) -> Any:
        with self.scope():
            return self._gpuarray.empty(tuple(shape), dtype=np.dtype(dtype))

    def upload(self, array: np.ndarray) -> Any:
        with self.scope():
            # The legacy default stream orders this copy before later work on our (blocking) stream.
            return self._gpuarray.to_gpu(np.ascontiguousarray(array))

    def copy_from_host(self, target: Any, array: np.ndarray) -> None:
        with self.scope():
            self._stream.synchronize()
            target.set(np.ascontiguousarray(array))

    def download(self, array: Any) -> np.ndarray:
        with self.scope():
            self._stream.synchronize()
            return array.get()

    def pinned(self, shape: Shape, dtype: str) -> np.ndarray:
        with self.scope():
            return self._driver.pagelocked_empty(tuple(shape), np.dtype(dtype))

    def copy_in_async(self, target: Any, host: np.ndarray) -> None:
        with self.scope():
            self._driver.memcpy_htod_async(target.gpudata, host, self._stream)

    def copy_out_async(self, host: np.ndarray, source: Any) -> None:
        with self.scope():
            self._driver.memcpy_dtoh_async(host, source.gpudata, self._stream)

    def copy_tile(self, target: Any, source: Any, top: int, left: int) -> None:
        batch, channels, height, width = (int(d) for d in target.shape)
        full_height, full_width = int(source.shape[2]), int(source.shape[3])
        item = source.dtype.itemsize
        with self.scope():
            # One pitched 2D copy per (image, channel) plane: the planes are stacked rows of one
            # pitched block, so plane p's window starts at row p * full_height + top.
            for plane in range(batch * channels):
                copy = self._driver.Memcpy2D()
                copy.set_src_device(source.gpudata)
                copy.src_x_in_bytes, copy.src_y = left * item, plane * full_height + top
                copy.src_pitch = full_width * item
                copy.set_dst_device(target.gpudata)
                copy.dst_y, copy.dst_pitch = plane * height, width * item
                copy.width_in_bytes, copy.height = width * item, height
                copy(self._stream)

    def describe(self, array: Any) -> tuple[Shape, str]:
        return tuple(int(d) for d in array.shape), array.dtype.name

    def pointer(self, array: Any) -> int:
        if not array.flags.c_contiguous:
            raise ShapeError("device arrays handed to an engine must be contiguous")
        return int(array.gpudata)

    def synchronize(self) -> None:
        with self.scope():
            self._stream.synchronize()

    def timer(self) -> EventTimer:
        def record(event: Any) -> None:
            with self.scope():
                event.record(self._stream)

        def elapsed(start: Any, stop: Any) -> float:
            with self.scope():
                stop.synchronize()
                return float(stop.time_since(start))

        with self.scope():
            return EventTimer(self._driver.Event(), self._driver.Event(), record, elapsed)

    def close(self) -> None:
        """Release the stream and this device's hold on the primary context."""
        with self.scope():
            self._stream.synchronize()
            self._stream = None
        self._context.detach()


def open_cuda_device(library: str = "auto", index: int = 0) -> CudaDevice:
    """The device through `library`: "pycuda", "torch", or "auto" (pycuda, else torch)."""
    if library not in LIBRARIES:
        raise BackendUnavailable(f"unknown CUDA library {library!r} (use one of {', '.join(LIBRARIES)})")
    if library == "pycuda":
        return PyCudaDevice(index)
    if library == "torch":
        try:
            return TorchCudaDevice(index)
        except ImportError as exc:
            raise BackendUnavailable(f"torch is not installed ({exc})") from exc
    reasons = []
    for make in (PyCudaDevice, TorchCudaDevice):
        try:
            return make(index)
        except ImportError as exc:
            reasons.append(str(exc))
        except BackendUnavailable as exc:
            reasons.append(str(exc))
    raise BackendUnavailable(
        "no CUDA library for device buffers: " + "; ".join(reasons) + " (install pycuda, or torch with CUDA)"
    )


# ------------------------------------------------------------------------- buffer reuse


class BufferPool:
    """One buffer per (slot, shape, dtype), allocated on first use and reused afterwards.

    A backend takes its output buffers from here with slot = (graph, output name): each graph
    writes into the same memory on every call, so a graph's output stays valid until that
    graph runs again (the pipeline consumes every output before then), and a captured CUDA graph
    finds its buffers at the same addresses on replay. Frames of another size get their own
    buffers; `clear` frees them all.
    """

    def __init__(self, allocate: Callable[[Shape, str], Any]) -> None:
        self._allocate = allocate
        self._buffers: dict[tuple[Hashable, Shape, str], Any] = {}
        self.allocations = 0

    def get(self, slot: Hashable, shape: Shape, dtype: str) -> Any:
        key = (slot, tuple(int(d) for d in shape), dtype)
        if key not in self._buffers:
            self._buffers[key] = self._allocate(key[1], dtype)
            self.allocations += 1
        return self._buffers[key]

    def __len__(self) -> int:
        return len(self._buffers)

    def clear(self) -> None:
        self._buffers = {}


class Staging:
    """Frame data crossing to and from the device without allocating or waiting per frame.

    `stage_in(slot, array)`: the slot's device buffer (kept per slot, shape and dtype), filled
    from the slot's page-locked host twin by a copy queued on the stream. `fetch_later(slot,
    tensor)`: a copy into the slot's page-locked host buffer, queued on the stream; its value is
    read once the caller has synchronised (once per frame, at the end). Each slot's host buffer
    is written again only after that synchronisation, so no queued copy can see it change; and
    a device buffer is rewritten only by work queued after every earlier reader on the one stream.
    """

    def __init__(self, device: CudaDevice) -> None:
        self.device = device
        self._buffers = BufferPool(device.empty)
        self._hosts = BufferPool(device.pinned)

    @property
    def allocations(self) -> int:
        return self._buffers.allocations + self._hosts.allocations

    def stage_in(self, slot: Hashable, array: np.ndarray) -> Any:
        host = self._hosts.get(("in", slot), array.shape, array.dtype.name)
        np.copyto(host, array)
        target = self._buffers.get(("in", slot), array.shape, array.dtype.name)
        self.device.copy_in_async(target, host)
        return target

    def fetch_later(self, slot: Hashable, tensor: Any) -> np.ndarray:
        """The host buffer the copy lands in: valid after the next synchronisation."""
        shape, dtype = self.device.describe(tensor)
        host = self._hosts.get(("out", slot), shape, dtype)
        self.device.copy_out_async(host, tensor)
        return host

    def clear(self) -> None:
        self._buffers.clear()
        self._hosts.clear()


# --------------------------------------------------------------------- whole-frame graphs



class FrameGraph:
    """A whole frame, every stage of every graph, captured once as one CUDA graph and replayed.

    `body(inputs)` takes device arrays (name -> array) and returns device arrays; it must queue
    device work only (no downloads, no host synchronisation), e.g. the pipeline's stage loop.
    The constructor stages `example` into the inputs' buffers, runs `body` once eagerly (the
    warm-up TensorRT needs before capture, and lazy library initialisation), then captures it.
    `__call__` copies new host inputs of the same shapes into those buffers (page-locked, queued
    on the stream), replays the graph, queues the outputs' copies back and waits once. Static
    shapes only: another shape is a ShapeError.
    """

    def __init__(self, device: CudaDevice, body: FrameBody, example: Mapping[str, np.ndarray]) -> None:
        if not device.supports_graphs:
            raise BackendUnavailable(f"CUDA graphs are not available through {device.library} (use torch)")
        self.device = device
        self.shapes = {name: (tuple(a.shape), a.dtype.name) for name, a in example.items()}
        self._staging = Staging(device)
        self._inputs = {name: self._staging.stage_in(name, a) for name, a in example.items()}
        with device.scope():
            body(self._inputs)  # warm-up, outside the capture
        device.synchronize()
        self._replay, outputs = device.capture(lambda: dict(body(self._inputs)))
        self._outputs: dict[str, Any] = outputs

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        got = {name: (tuple(a.shape), a.dtype.name) for name, a in inputs.items()}
        if got != self.shapes:
            raise ShapeError(f"this frame graph was captured for {self.shapes}, got {got}: capture another one")
        for name, array in inputs.items():
            self._staging.stage_in(name, array)  # the same buffers the graph reads
        with self.device.scope():
            self._replay()
        hosts = {name: self._staging.fetch_later(name, array) for name, array in self._outputs.items()}
        self.device.synchronize()
        return {name: host.copy() for name, host in hosts.items()}


def check_finite(array: np.ndarray, what: str) -> np.ndarray:
    """`array` unchanged, or InferenceError when a float array holds NaN or Inf.

    One pass over data already on the host; backends call it on what they download (the final
    frame in the whole-frame pipeline), not on intermediate device tensors: a NaN or Inf inside
    the pipeline reaches the final output through every later graph.
    """
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        check_nonfinite_count(int(array.size - np.count_nonzero(np.isfinite(array))), array.size, what)
    return array


def check_nonfinite_count(count: int, size: int, what: str) -> None:
    """InferenceError when `count` of an output's `size` values were NaN or Inf: `check_finite`'s
    error, for outputs counted on the device (8-bit frames, `runtime/backends/device_frames.py`)."""
    if count:
        raise InferenceError(f"{what}: {count} of {size} output values are NaN or Inf")
