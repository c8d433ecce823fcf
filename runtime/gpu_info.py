"""Name and compute capability of a CUDA GPU, without torch where possible.

The engine key (`runtime/engine_key.py`) includes the GPU's name and compute capability, and both
the engine builder and the TensorRT backend ask for them, on a Jetson without torch. The CUDA
driver is asked through whichever binding is installed, imported only when asked:

1. pycuda (`pycuda.driver.Device(i).name()`, `.compute_capability()`), the Jetson default;
2. cuda-python (`cuda.bindings.driver`, or `cuda.cuda` in releases before 12.6): cuInit,
   cuDeviceGet, cuDeviceGetName, cuDeviceGetAttribute;
3. torch, where it is installed with CUDA (the desktop export machine).

All three read the same driver fields, so the name is the same string whichever answers. No
CUDA context is created.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from runtime.errors import BackendUnavailable


@dataclass(frozen=True)
class GpuInfo:
    name: str  # e.g. "NVIDIA H100 80GB HBM3", "Orin (nvgpu)"
    compute_capability: tuple[int, int]  # e.g. (8, 7)
    source: str = ""  # which binding answered; not part of any key

    @property
    def compute_capability_str(self) -> str:
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


def _from_pycuda(device: int) -> GpuInfo:
    import pycuda.driver as cuda

    cuda.init()
    dev = cuda.Device(device)
    major, minor = dev.compute_capability()
    return GpuInfo(str(dev.name()), (int(major), int(minor)), "pycuda")


def _from_cuda_python(device: int) -> GpuInfo:
    try:
        from cuda.bindings import driver
    except ImportError:
        from cuda import cuda as driver  # cuda-python < 12.6

    def check(result: tuple, call: str) -> tuple:
        if result[0] != driver.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"{call} failed: {result[0]}")
        return result[1:]

    check(driver.cuInit(0), "cuInit")
    (dev,) = check(driver.cuDeviceGet(device), "cuDeviceGet")
    (raw_name,) = check(driver.cuDeviceGetName(256, dev), "cuDeviceGetName")
    attribute = driver.CUdevice_attribute
    (major,) = check(
        driver.cuDeviceGetAttribute(attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "cuDeviceGetAttribute"
    )
    (minor,) = check(
        driver.cuDeviceGetAttribute(attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "cuDeviceGetAttribute"
    )
    name = raw_name.split(b"\0", 1)[0].decode() if isinstance(raw_name, bytes) else str(raw_name)
    return GpuInfo(name.strip(), (int(major), int(minor)), "cuda-python")


def _from_torch(device: int) -> GpuInfo:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("torch is installed without a usable CUDA device")
    major, minor = torch.cuda.get_device_capability(device)
    return GpuInfo(torch.cuda.get_device_name(device), (int(major), int(minor)), "torch")


_SOURCES: tuple[tuple[str, Callable[[int], GpuInfo]], ...] = (
    ("pycuda", _from_pycuda),
    ("cuda-python", _from_cuda_python),
    ("torch", _from_torch),
)


@functools.cache
def query_gpu(device: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device `device`; BackendUnavailable when none answers."""
    if device < 0:
        raise BackendUnavailable(f"CUDA device index must be >= 0, got {device}")
    reasons = []
    for label, source in _SOURCES:
        try:
            return source(device)
        except ImportError:
            reasons.append(f"{label} not installed")
        except Exception as exc:  # a driver or binding error: try the next binding, report all
            reasons.append(f"{label}: {exc}")
    raise BackendUnavailable(f"cannot query CUDA device {device} ({'; '.join(reasons)})")
