"""CPU benchmark of an exported model: PyTorch eager against the ONNX Runtime pipeline.

    python export/benchmark_cpu.py                       # artifacts/edge/ and the shipped checkpoint
    python export/benchmark_cpu.py --artifacts DIR --checkpoint PT --repeats 5 --json out.json

Prints, in one run:
  1. the machine's measured FP32 peak: the best of a large sgemm in numpy and in torch
     (a measurement, not a datasheet figure: it is what a well-tuned kernel reaches here);
  2. PyTorch eager (the checkpoint's model) against the ONNX Runtime pipeline (padding, stage
     loop, cropping: `runtime.Pipeline`) at 1280x720 (--size), the speed-up, and the pipeline's
     achieved GFLOP/s (2 x the model's MACs from `model.complexity.inference_gmac`) as a
     fraction of that peak;
  3. at 256x256, the pipeline's end-to-end time per frame against the sum of its graph times
     (time inside session.run), i.e. the Python orchestration overhead in ms and percent.
Times are medians over --repeats runs after one warm-up run. The load average is printed
because another job on the machine skews every figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.checkpoint import load_model
from model.complexity import inference_gmac
from runtime import cli
from runtime.bench.environment import cpu_name
from runtime.bench.measure import synthetic_frame
from runtime.errors import InputError, ManifestError
from runtime.manifest import load_manifest, sha256_file
from runtime.pipeline import Pipeline, sampler_noise
from runtime.shipped import SHIPPED_CHECKPOINT

DEFAULT_CHECKPOINT = SHIPPED_CHECKPOINT


def build_parser() -> argparse.ArgumentParser:
    p = cli.tool_parser("benchmark_cpu.py", __doc__)
    cli.add_artifacts_argument(p)
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=DEFAULT_CHECKPOINT,
        help="checkpoint the artifacts were exported from, for the PyTorch eager run and the MAC count "
        "(default: model/weights/edge.pt); its sha256 must match the manifest's source",
    )
    cli.add_threads_argument(p, "threads for torch, numpy's sgemm and ONNX Runtime (default: all cores)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per figure after one warm-up (default: 3)")
    p.add_argument(
        "--frames", type=int, default=20, help="frames timed at 256x256 for the overhead figure (default: 20)"
    )
    cli.add_frame_size_argument(p, "--size", (720, 1280), "frame size of the eager-vs-pipeline and GFLOP/s figures")
    p.add_argument(
        "--sgemm-size", type=int, default=4096, help="matrix size of the sgemm that measures the peak (default: 4096)"
    )
    p.add_argument("--json", type=Path, help="also write every figure and the environment to this JSON file")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks")
    return p


def _median_time(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_peak(threads: int, size: int = 4096, repeats: int = 3) -> dict[str, float]:
    """FP32 GFLOP/s of a size x size sgemm in numpy (BLAS) and torch: the best of `repeats`."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    flops = 2.0 * size**3
    out = np.empty_like(a)
    numpy_best = min(_timed(lambda: np.matmul(a, b, out=out)) for _ in range(repeats + 1))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    tout = torch.empty_like(ta)
    torch_best = min(_timed(lambda: torch.mm(ta, tb, out=tout)) for _ in range(repeats + 1))
    return {
        "sgemm_size": size,
        "numpy_sgemm_gflops": flops / numpy_best / 1e9,
        "torch_sgemm_gflops": flops / torch_best / 1e9,
    }


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> dict[str, Any]:
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    manifest = load_manifest(args.artifacts)
    if not args.checkpoint.is_file():
        raise InputError(f"{args.checkpoint}: checkpoint not found (pass --checkpoint PT)")
    if sha256_file(args.checkpoint) != manifest.source.sha256:
        raise ManifestError(
            f"{args.artifacts}: exported from another checkpoint than {args.checkpoint} (source.sha256 differs); "
            "re-export or pass the matching --checkpoint"
        )
    model, _ = load_model(args.checkpoint)
    env = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": threads,
        "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "model": manifest.model_config.get("name"),
        "checkpoint": args.checkpoint.name,
    }
    import onnxruntime

    env["onnxruntime"] = onnxruntime.__version__
    result: dict[str, Any] = {"environment": env}

    peak = measure_peak(threads, args.sgemm_size)
    peak_gflops = max(peak["numpy_sgemm_gflops"], peak["torch_sgemm_gflops"])
    result["peak"] = {**peak, "peak_gflops": peak_gflops}

    height, width = args.size
    frame = synthetic_frame(height, width)
    noise = torch.from_numpy(sampler_noise(manifest)) if manifest.sampler else torch.zeros(1, manifest.prior_dim)
    y = torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1)))[None]

    def eager() -> None:
        with torch.inference_mode():
            model(y, noise)

    eager_s = _median_time(eager, args.repeats)
    with Pipeline.from_manifest(args.artifacts, backend="onnxruntime", device="cpu", threads=threads) as pipeline:
        pipeline.backend.record_timings = True
        ort_s = _median_time(lambda: pipeline.restore(frame), args.repeats)
        per_graph_large = {n: statistics.median(t) for n, t in pipeline.backend.timings.items()}
        pipeline.backend.reset_timings()

        small = synthetic_frame(256, 256)
        pipeline.restore(small)  # warm-up at this size
        pipeline.backend.reset_timings()
        overheads, totals = [], []
        for _ in range(args.frames):
            before = sum(sum(t) for t in pipeline.backend.timings.values())
            start = time.perf_counter()
            pipeline.restore(small)
            total = time.perf_counter() - start
            graphs = sum(sum(t) for t in pipeline.backend.timings.values()) - before
            totals.append(total)
            overheads.append(total - graphs)
    gmac = inference_gmac(model, height, width)
    achieved = 2 * gmac / ort_s
    result["large"] = {
        "size": f"{width}x{height}",
        "pytorch_eager_s": eager_s,
        "onnxruntime_pipeline_s": ort_s,
        "speedup": eager_s / ort_s,
        "gmac": gmac,
        "achieved_gflops": achieved,
        "fraction_of_peak": achieved / peak_gflops,
        "per_graph_s": per_graph_large,
    }
    end_to_end = statistics.median(totals)
    overhead = statistics.median(overheads)
    result["256x256"] = {
        "end_to_end_ms": end_to_end * 1e3,
        "sum_of_graphs_ms": (end_to_end - overhead) * 1e3,
        "overhead_ms": overhead * 1e3,
        "overhead_fraction": overhead / end_to_end,
    }
    return result


def report(result: dict[str, Any]) -> str:
    env, peak, hd, small = result["environment"], result["peak"], result["large"], result["256x256"]
    lines = [
        f"machine: {env['cpu']}, {env['cores']} cores, {env['threads']} threads, "
        f"load average {env['load_average_1min']:.2f} | torch {env['torch']}, "
        f"onnxruntime {env['onnxruntime']}, numpy {env['numpy']}",
        f"model: {env['model']} from {env['checkpoint']}",
        f"FP32 peak (measured, {peak['sgemm_size']}^3 sgemm): numpy {peak['numpy_sgemm_gflops']:.1f} GFLOP/s, "
        f"torch {peak['torch_sgemm_gflops']:.1f} GFLOP/s -> peak {peak['peak_gflops']:.1f} GFLOP/s",
        f"{hd['size']}: PyTorch eager {hd['pytorch_eager_s']:.2f} s, "
        f"ONNX Runtime pipeline {hd['onnxruntime_pipeline_s']:.2f} s -> {hd['speedup']:.2f}x (goal >= 2x)",
        f"{hd['size']}: {hd['gmac']:.1f} GMAC = {2 * hd['gmac']:.1f} GFLOP per frame -> "
        f"{hd['achieved_gflops']:.1f} GFLOP/s, {100 * hd['fraction_of_peak']:.1f}% of the measured peak (goal >= 25%)",
        f"{hd['size']} per graph (s): " + ", ".join(f"{n} {t:.2f}" for n, t in hd["per_graph_s"].items()),
        f"256x256: end to end {small['end_to_end_ms']:.1f} ms per frame, graphs {small['sum_of_graphs_ms']:.1f} ms, "
        f"orchestration overhead {small['overhead_ms']:.2f} ms = {100 * small['overhead_fraction']:.2f}% (goal <= 5%)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def measure() -> dict[str, Any]:
        if args.repeats < 1 or args.frames < 1 or args.sgemm_size < 1:
            raise InputError("--repeats, --frames and --sgemm-size must be >= 1")
        return run(args)

    return cli.measure_and_report(measure, report, args.json, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
