"""Peak memory of one benchmark cell.

Host: the kernel's peak resident set (VmHWM in /proc/self/status) is process-wide and only
grows, so before a cell we reset it by writing "5" to /proc/self/clear_refs (Linux >= 4.0); the
cell's figure is then its own peak minus the resident set at its start. Where the reset is not
allowed, the figure is how much the process-wide peak grew during the cell (0 when an earlier,
larger cell already set it) and `host_peak_scope` says "process".

Memory an earlier cell left allocated (ONNX Runtime's arena, say) is resident at the start and
not counted again. CUDA: torch's allocator peak (`torch.cuda.max_memory_allocated`), which sees
only what torch allocates: the torch backend's tensors, not ONNX Runtime's or TensorRT's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_bytes(field: str) -> int | None:
    """A `VmXxx:  1234 kB` line of /proc/self/status in bytes; None where there is no /proc."""
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def host_rss() -> int | None:
    return _status_bytes("VmRSS")


def host_peak_rss() -> int | None:
    return _status_bytes("VmHWM")


def reset_host_peak() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel or sandbox does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class MemoryProbe:
    """Brackets one cell: `start()` before its first frame, `stop()` after its last."""

    def __init__(self, cuda_torch: bool) -> None:
        self.cuda_torch = cuda_torch  # the torch backend on CUDA: its allocator can be asked
        self._scope = "process"
        self._rss_start: int | None = None
        self._peak_start: int | None = None
        self._cuda_start = 0

    def start(self) -> None:
        self._scope = "cell" if reset_host_peak() else "process"
        self._rss_start, self._peak_start = host_rss(), host_peak_rss()
        if self.cuda_torch:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._cuda_start = torch.cuda.memory_allocated()

    def stop(self) -> dict[str, Any]:
        peak = host_peak_rss()
        delta: int | None = None
        if peak is not None and self._rss_start is not None and self._peak_start is not None:
            base = self._rss_start if self._scope == "cell" else max(self._rss_start, self._peak_start)
            delta = max(0, peak - base)
        result: dict[str, Any] = {
            "host_peak_rss_bytes": peak,
            "host_peak_rss_delta_bytes": delta,
            "host_peak_scope": self._scope if peak is not None else None,
            "cuda_peak_allocated_bytes": None,
            "cuda_peak_allocated_delta_bytes": None,
        }
        if self.cuda_torch:
            import torch

            torch.cuda.synchronize()
            cuda_peak = torch.cuda.max_memory_allocated()
            result["cuda_peak_allocated_bytes"] = cuda_peak
            result["cuda_peak_allocated_delta_bytes"] = max(0, cuda_peak - self._cuda_start)
        return result
