"""The CPU backends timed against each other at export: the manifest's `cpu_timing`.

The default backend order on a CPU (runtime/backends/select.py) tries the backend measured
fastest here first: OpenVINO ran the shipped model's FP32 graphs about twice as fast as ONNX
Runtime on the CPUs we measured (docs/BENCHMARKS.md), but that is a property of a CPU and of
the graphs, so it is measured, not assumed. Each backend that opens (ONNX Runtime always;
OpenVINO where installed) restores the same synthetic frame at FP32 through the real pipeline;
after one warm-up frame each, the frames alternate between the backends so that other work on
the machine slows both alike, and the median is kept.
"""

from __future__ import annotations

import statistics
import time

from export.cli_sizes import DEFAULT_CPU_TIMING_SIZE
from runtime.backends.select import create_backend
from runtime.bench.measure import synthetic_frame
from runtime.errors import BackendUnavailable
from runtime.manifest import CpuTiming, Manifest
from runtime.pipeline import Pipeline

CPU_BACKENDS = ("onnxruntime", "openvino")


def time_cpu_backends(
    manifest: Manifest, size: tuple[int, int] = DEFAULT_CPU_TIMING_SIZE, frames: int = 3, threads: int | None = None
) -> CpuTiming:
    """Median FP32 frame time of each CPU backend that opens, `frames` alternating frames each."""
    frame = synthetic_frame(*size)
    pipelines: dict[str, Pipeline] = {}
    try:
        for name in CPU_BACKENDS:
            backend = create_backend(name, manifest, "cpu", "fp32", threads)
            try:
                backend.open()
            except BackendUnavailable:
                continue  # e.g. OpenVINO not installed: it cannot be chosen by default either
            try:
                pipelines[name] = Pipeline(manifest, backend)
            except BaseException:
                backend.close()
                raise
            pipelines[name].restore(frame)  # warm-up: arena growth, OpenVINO's compile for this shape
        seconds: dict[str, list[float]] = {name: [] for name in pipelines}
        for _ in range(frames):
            for name, pipeline in pipelines.items():
                start = time.perf_counter()
                pipeline.restore(frame)
                seconds[name].append(time.perf_counter() - start)
    finally:
        for pipeline in pipelines.values():
            pipeline.close()
    frame_ms = {name: round(1000 * statistics.median(times), 1) for name, times in seconds.items()}
    return CpuTiming(height=size[0], width=size[1], threads=threads, frame_ms=frame_ms)
