"""Every CPU plan against a baseline ONNX Runtime FP32 pipeline, in one run, with the sgemm peak.

    python export/cpu_plans_bench.py --baseline /tmp/plain --artifacts artifacts/edge
    python export/cpu_plans_bench.py --baseline OLD --artifacts NEW --size 640x360 --rounds 3 --json plans.json

A plan is (artifacts folder, backend, precision): the baseline folder (e.g. an earlier export, or
`build_engines.py --plain-graphs --no-int8 --no-fp16` for graphs without the export's rewrites)
on ONNX Runtime FP32, and the artifacts folder on ONNX Runtime and OpenVINO at FP32 and at INT8 (each
backend's INT8 flavour, runtime/backends/), where the folder has INT8 graphs. Every plan's
pipeline is opened, warmed up with one frame, then the plans restore the same synthetic frame in
turn, --rounds times, so that other work on the machine slows each plan alike. Printed per plan:
the median time per frame, the speed-up over the first plan, GFLOP/s (2 x the model's MACs from
model/complexity.py) and its share of the FP32 peak measured in the same run (the best of a
numpy and a torch sgemm, export/benchmark_cpu.py), then the median time per graph.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from export.benchmark_cpu import measure_peak
from model.complexity import inference_gmac
from model.config import ModelConfig
from model.unfoldldm import UnfoldLDM
from runtime import cli
from runtime.bench.environment import cpu_name
from runtime.bench.measure import synthetic_frame
from runtime.errors import BackendUnavailable
from runtime.manifest import Manifest, load_manifest
from runtime.pipeline import Pipeline

BACKENDS = ("onnxruntime", "openvino")


def plans(baseline: Path, artifacts: Path, manifest: Manifest) -> list[tuple[str, Path, str, str]]:
    """(label, folder, backend, precision) in table order; INT8 only where the folder has it."""
    has_int8 = any(k.startswith("int8") for entry in manifest.graphs.values() for k in entry.variants)
    out = [("baseline", baseline, "onnxruntime", "fp32")]
    for backend in BACKENDS:
        out.append(("artifacts", artifacts, backend, "fp32"))
        if has_int8:
            out.append(("artifacts", artifacts, backend, "int8"))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    threads = args.threads or os.cpu_count() or 1
    manifest = load_manifest(args.artifacts)
    height, width = args.size
    model = UnfoldLDM(ModelConfig.from_dict(manifest.model_config)).eval()
    gmac = inference_gmac(model, height, width)
    peak = measure_peak(threads, args.sgemm_size)
    peak_gflops = max(peak["numpy_sgemm_gflops"], peak["torch_sgemm_gflops"])
    frame = synthetic_frame(height, width)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    with ExitStack() as stack:
        opened: list[tuple[dict[str, Any], Pipeline]] = []
        for label, folder, backend, precision in plans(args.baseline, args.artifacts, manifest):
            row = {"graphs": label, "artifacts": str(folder), "backend": backend, "precision": precision}
            try:
                pipeline = stack.enter_context(
                    Pipeline.from_manifest(folder, backend=backend, device="cpu", precision=precision, threads=threads)
                )
            except BackendUnavailable as exc:
                skipped.append(f"{backend} {precision}: {exc}")
                continue
            pipeline.restore(frame)  # warm-up: arenas, OpenVINO's compile for this shape
            pipeline.backend.reset_timings()
            pipeline.backend.record_timings = True
            opened.append((row, pipeline))
        seconds: list[list[float]] = [[] for _ in opened]
        for _ in range(args.rounds):
            for i, (_, pipeline) in enumerate(opened):
                start = time.perf_counter()
                pipeline.restore(frame)
                seconds[i].append(time.perf_counter() - start)
        for (row, pipeline), times in zip(opened, seconds, strict=True):
            frame_s = statistics.median(times)
            graph_ms = {g: 1000 * statistics.median(t) for g, t in pipeline.backend.timings.items()}
            rows.append({**row, "frame_ms": 1000 * frame_s, "gflops": 2 * gmac / frame_s, "graph_ms": graph_ms})
    base = rows[0]["frame_ms"] if rows else float("nan")
    for row in rows:
        row["speedup"] = base / row["frame_ms"]
        row["fraction_of_peak"] = row["gflops"] / peak_gflops
    environment = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": threads,
        "load_average_1min": os.getloadavg()[0],
    }
    return {
        "size": [height, width],
        "rounds": args.rounds,
        "gmac": gmac,
        "peak": {**peak, "peak_gflops": peak_gflops},
        "environment": environment,
        "rows": rows,
        "skipped": skipped,
    }


def report(result: dict[str, Any]) -> str:
    height, width = result["size"]
    env, peak = result["environment"], result["peak"]
    lines = [
        f"{width}x{height}, {result['gmac']:.1f} GMAC per frame, median of {result['rounds']} interleaved rounds; "
        f"{env['cpu']}, {env['threads']} threads, load average {env['load_average_1min']:.2f}",
        f"FP32 peak (measured, {peak['sgemm_size']}^3 sgemm): {peak['peak_gflops']:.1f} GFLOP/s",
        f"{'graphs':<16}{'backend':<13}{'precision':<10}{'ms/frame':>10}{'speed-up':>10}{'GFLOP/s':>9}{'% peak':>8}",
    ]
    for row in result["rows"]:
        lines.append(
            f"{row['graphs']:<16}{row['backend']:<13}{row['precision']:<10}{row['frame_ms']:>10.0f}"
            f"{row['speedup']:>9.2f}x{row['gflops']:>9.1f}{100 * row['fraction_of_peak']:>7.1f}%"
        )
    lines.append("per graph (ms):")
    for row in result["rows"]:
        graphs = ", ".join(f"{g} {ms:.0f}" for g, ms in row["graph_ms"].items())
        lines.append(f"  {row['graphs']}, {row['backend']} {row['precision']}: {graphs}")
    lines += [f"skipped: {reason}" for reason in result["skipped"]]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.tool_parser("cpu_plans_bench.py", __doc__)
    parser.add_argument(
        "--baseline",
        type=Path,
        required=True,
        help="artifacts folder of the reference plan (ONNX Runtime FP32), e.g. an earlier export",
    )
    cli.add_artifacts_argument(parser)
    cli.add_frame_size_argument(parser, "--size", (720, 1280), "frame size")
    parser.add_argument("--rounds", type=cli.positive_int, default=3, help="timed frames per plan (default: 3)")
    parser.add_argument(
        "--sgemm-size",
        type=cli.positive_int,
        default=4096,
        help="matrix size of the sgemm that measures the peak (default: 4096)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every figure as JSON")
    cli.add_threads_argument(parser, "threads for every backend and the sgemm (default: one per core)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.verbose)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    return cli.measure_and_report(lambda: run(args), report, args.json, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
