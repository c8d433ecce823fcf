"""The benchmark grid: every backend x precision x frame size, timed after a warm-up.

A cell is one (backend, device, precision, size). Before anything is opened, each
(backend, device, precision) is resolved to the graph variant every graph would run
(`Manifest.precision_for`); it is skipped, with the reason, when the artifacts lack that
variant, when it would run exactly the variants an earlier precision of the same backend ran
(`auto` on artifacts whose auto plan is all FP32, `int8` on artifacts without INT8 graphs),
when the backend on that device lacks one of the backend options set (a cell measured
without an option asked for would be mislabelled), or when the backend cannot open. A
backend is opened once and timed at every size.

Per frame we time `Pipeline.restore` (layout, padding, upload, every graph, download, crop:
what a caller waits for) with the backend's per-graph timings on. On CUDA those timings
synchronise around every graph, which would slow the frame they are part of, so there the
frames are timed first without them (with CUDA events for device time) and the graphs in a
second pass of as many frames.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from runtime.backends.base import Backend
from runtime.backends.options import check_backend_options, unmet_options
from runtime.backends.select import create_backend
from runtime.bench.device_time import device_timer
from runtime.bench.memory import MemoryProbe
from runtime.bench.stats import summarize
from runtime.errors import BackendUnavailable, InferenceError, InputError, ShapeError
from runtime.manifest import Manifest
from runtime.pipeline import Pipeline, padded_size


@dataclass(frozen=True)
class Settings:
    backends: tuple[str, ...]
    devices: tuple[str, ...]
    precisions: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]  # (height, width)
    warmup: int = 3
    iters: int = 20
    threads: int | None = None
    tile: int | None = None
    backend_options: Mapping[str, Any] = field(default_factory=dict)  # runtime/backends/options.py

    def __post_init__(self) -> None:
        object.__setattr__(self, "backend_options", check_backend_options(self.backend_options))
        if self.warmup < 0 or self.iters < 1:
            raise InputError(f"need --warmup >= 0 and --iters >= 1, got {self.warmup} and {self.iters}")
        if not (self.backends and self.devices and self.precisions and self.sizes):
            raise InputError("need at least one backend, device, precision and size")


def synthetic_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth noisy test frame, float32 HxWx3 in [0, 1] (the content does not change the cost)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 16 + 1, width // 16 + 1, 3), dtype=np.float32)
    ys = np.linspace(0, coarse.shape[0] - 1, height).astype(int)
    xs = np.linspace(0, coarse.shape[1] - 1, width).astype(int)
    frame = coarse[ys][:, xs] + 0.1 * rng.standard_normal((height, width, 3), dtype=np.float32)
    return np.ascontiguousarray(frame.clip(0, 1), dtype=np.float32)


def graph_precisions(manifest: Manifest, backend: str, device: str, requested: str) -> dict[str, str] | str:
    """The variant each graph in use runs for this request, or the reason the request cannot run."""
    if backend == "tensorrt" and device != "cuda":
        return "TensorRT runs on CUDA only"
    graphs = manifest.graphs_in_use()
    if requested in ("fp16", "int8"):
        prefix = requested  # int8 covers the int8-cpu flavour too
        if not any(v.startswith(prefix) for g in graphs for v in manifest.graph(g).variants):
            return f"the artifacts have no {requested} graphs (write them with the precision tools first)"
    target = f"{backend}/{device}"
    missing = manifest.missing_variants(requested, target, graphs)
    if missing:
        return f"the artifacts have no {requested} variant of {', '.join(missing)}"
    return {g: manifest.precision_for(g, requested, target) for g in graphs}


def _skip(cell: dict[str, Any], reason: str) -> dict[str, Any]:
    return {**cell, "reason": reason}


def run_grid(
    manifest: Manifest,
    settings: Settings,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Measure every cell; returns (results, skipped), each skipped entry with its reason."""
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []

    def skip_sizes(base: dict[str, Any], reason: str, sizes: Sequence[tuple[int, int]]) -> None:
        for height, width in sizes:
            skipped.append(_skip({**base, "width": width, "height": height}, reason))

    for name in settings.backends:
        for device in settings.devices:
            ran: dict[tuple[tuple[str, str], ...], str] = {}  # variant plan -> the precision that ran it
            for precision in settings.precisions:
                base = {"backend": name, "device": device, "precision": precision}
                unmet = unmet_options(settings.backend_options, name, device)
                if unmet:
                    skip_sizes(base, "; ".join(unmet), settings.sizes)
                    continue
                plan = graph_precisions(manifest, name, device, precision)
                if isinstance(plan, dict) and (same := ran.get(_plan_key(plan))):
                    plan = f"runs the same graph variants as {same} ({_plan_text(plan)})"
                if isinstance(plan, str):
                    skip_sizes(base, plan, settings.sizes)
                    continue
                backend = create_backend(name, manifest, device, precision, settings.threads, settings.backend_options)
                try:
                    backend.open()
                except BackendUnavailable as exc:
                    skip_sizes(base, str(exc), settings.sizes)
                    continue
                ran[_plan_key(plan)] = precision
                with backend:
                    pipeline = Pipeline(manifest, backend, tile=settings.tile)
                    for height, width in settings.sizes:
                        cell = {**base, "width": width, "height": height}
                        try:
                            measured = measure_cell(pipeline, height, width, settings, progress)
                        except (ShapeError, InferenceError) as exc:
                            skipped.append(_skip(cell, f"failed: {exc}"))
                            continue
                        results.append({**cell, "graph_precisions": plan, **measured})
    return results, skipped


def _plan_key(plan: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(plan.items()))


def _plan_text(plan: dict[str, str]) -> str:
    used = sorted(set(plan.values()))
    return f"{used[0]} for every graph" if len(used) == 1 else ", ".join(f"{g} {plan[g]}" for g in plan)


def measure_cell(pipeline: Pipeline, height: int, width: int, settings: Settings, progress: bool) -> dict[str, Any]:
    """Time `settings.iters` frames of `height` x `width` after `settings.warmup` untimed ones."""
    backend = pipeline.backend
    manifest = pipeline.manifest
    frame = synthetic_frame(height, width)
    on_cuda = backend.device == "cuda"
    timer, device_note = device_timer(backend)
    total = settings.warmup + settings.iters * (2 if on_cuda else 1)
    label = f"{backend.name}/{backend.device} {backend.precision} {width}x{height}"
    probe = MemoryProbe(cuda_torch=on_cuda and backend.name == "torch")
    with tqdm(total=total, desc=label, unit="frame", leave=False, disable=not progress) as bar:
        probe.start()
        for _ in range(settings.warmup):
            pipeline.restore(frame)
            bar.update(1)
        backend.reset_timings()
        backend.record_timings = not on_cuda
        walls: list[float] = []
        device_seconds: list[float] = []
        try:
            for _ in range(settings.iters):
                start = time.perf_counter()
                if timer:
                    timer.start()
                pipeline.restore(frame)
                if timer:
                    device_seconds.append(timer.stop())
                walls.append(time.perf_counter() - start)
                bar.update(1)
            if on_cuda:  # graph timings synchronise around each graph: a pass of their own
                backend.record_timings = True
                for _ in range(settings.iters):
                    pipeline.restore(frame)
                    bar.update(1)
        finally:
            backend.record_timings = False
        memory = probe.stop()
    graphs = _graph_stats(backend, manifest, settings.iters)
    end_to_end = summarize(walls)
    padded_h, padded_w = padded_size(height, width, manifest.pad_multiple, manifest.min_size)
    return {
        "padded_width": padded_w,
        "padded_height": padded_h,
        "tile": pipeline.tile,
        "warmup": settings.warmup,
        "iters": settings.iters,
        "end_to_end": {**end_to_end, "samples_ms": [s * 1e3 for s in walls]},
        "throughput_fps": end_to_end["throughput_per_s"],
        "device_time": summarize(device_seconds) if device_seconds else None,
        "device_time_note": device_note,
        "host_overhead_ms": (float(np.mean(np.subtract(walls, device_seconds))) * 1e3 if device_seconds else None),
        "graphs": graphs,
        # Padding, layout, uploads, downloads and Python between the graphs.
        "unattributed_ms": end_to_end["mean_ms"] - sum(g["per_frame_ms"] for g in graphs.values()),
        "memory": memory,
        # Other work on the machine slows every figure; this says how busy it was during the cell.
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _graph_stats(backend: Backend, manifest: Manifest, iters: int) -> dict[str, dict[str, Any]]:
    """Per graph in use: its role, variant, calls per frame, per-call latency and time per frame."""
    stats: dict[str, dict[str, Any]] = {}
    for graph in manifest.graphs_in_use():
        times = backend.timings.get(graph, [])
        if not times:
            continue  # not run at this size (cannot happen untiled; kept honest for the tiled path)
        stats[graph] = {
            "role": manifest.graph(graph).role,
            "precision": backend.graph_precision(graph),
            "calls_per_frame": len(times) / iters,
            "per_call": summarize(times),
            "per_frame_ms": sum(times) / iters * 1e3,
        }
    return stats
