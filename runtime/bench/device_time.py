"""Device time of a frame from CUDA events, apart from the host's wall-clock time.

Two events on torch's current stream bracket the frame; their elapsed time is what the GPU
spent between them, and wall time minus that is host overhead (Python, launches, copies the
host waits for). The events only see work queued on that stream: the torch backend's. ONNX
Runtime's CUDA provider queues on a stream of its own, so no device time is claimed for it.
"""

from __future__ import annotations

from typing import Any

from runtime.backends.base import Backend


class CudaEventTimer:
    """`start()` before a frame, `stop()` after it: seconds of device time between them."""

    def __init__(self) -> None:
        import torch

        self._torch = torch
        self._start: Any = None

    def start(self) -> None:
        self._start = self._torch.cuda.Event(enable_timing=True)
        self._start.record()

    def stop(self) -> float:
        end = self._torch.cuda.Event(enable_timing=True)
        end.record()
        end.synchronize()
        return self._start.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds


def device_timer(backend: Backend) -> tuple[CudaEventTimer | None, str | None]:
    """A timer for this backend, or None and the reason there is none."""
    if backend.device != "cuda":
        return None, None  # on the CPU, wall time is device time
    if backend.name != "torch":
        return None, f"{backend.name} does not queue its work on torch's CUDA stream; device time not measured"
    return CudaEventTimer(), None
