"""What a benchmark figure was measured on: versions, CPU, GPU, threads, machine load."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

from runtime.errors import BackendUnavailable


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_version(*distributions: str) -> str | None:
    """The installed version of the first of `distributions` that is installed (no import)."""
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def tensorrt_version() -> str | None:
    """TensorRT's version where a real TensorRT imports (the type stub alone does not count)."""
    from runtime.trt_version import detect

    try:
        return detect().version
    except BackendUnavailable:
        return None


def gpu_name() -> str | None:
    from runtime.gpu_info import query_gpu

    try:
        info = query_gpu(0)
    except BackendUnavailable:
        return None
    return f"{info.name} (compute capability {info.compute_capability_str})"


def describe_environment(threads: int | None, uses_cuda: bool) -> dict[str, Any]:
    """The environment record of one benchmark run. `threads` is what the backends were asked
    for (None: their default, one per core); the load average shows whether the machine was shared."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": package_version("numpy"),
        "onnxruntime": package_version("onnxruntime", "onnxruntime-gpu"),
        "torch": package_version("torch"),
        "tensorrt": tensorrt_version(),
        "openvino": package_version("openvino"),
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "threads": threads,
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "gpu": gpu_name() if uses_cuda else None,
    }
