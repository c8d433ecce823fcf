"""Latency benchmark of an exported model: per graph and end to end, over backends, devices,
precisions and frame sizes in one run.

    python runtime/benchmark.py                                   # artifacts/edge/, ONNX Runtime, CPU
    python runtime/benchmark.py --backends onnxruntime,torch --precisions auto,fp32,fp16,int8 \\
        --sizes 256x256,1280x720 --iters 50 --json bench.json --plot bench.png
    python runtime/benchmark.py --device cuda --backends tensorrt,onnxruntime,torch

For every cell (backend, device, precision, size) it restores --warmup untimed frames, then
times --iters frames (`Pipeline.restore`: layout, padding, upload, every graph, download, crop)
and reports mean, p50, p90, p99 and throughput end to end, the same per graph (from the
backend's own timings), the time outside the graphs, and peak memory (host resident-set peak
above the cell's start; on CUDA also torch's allocator peak). On CUDA with the torch backend,
CUDA events give the GPU's own time per frame apart from host overhead. A cell that cannot run
(no such precision variant in the artifacts, a backend that cannot do it, the same graphs as
an earlier precision) is listed with the reason. The environment (versions, CPU, GPU, threads,
load average) is printed and stored with the figures; --plot draws where each frame's time goes
and the latency distribution.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runtime import cli
from runtime.backends.base import DEVICES
from runtime.backends.select import BACKEND_NAMES
from runtime.bench.environment import describe_environment
from runtime.bench.measure import Settings, run_grid
from runtime.bench.report import format_report
from runtime.cli_sizes import frame_sizes
from runtime.errors import InputError, UnfoldError, report_error
from runtime.manifest import REQUESTED_PRECISIONS, load_manifest

RESULT_FORMAT = "unfoldldm-edge/benchmark"
RESULT_SCHEMA_VERSION = 1


def build_parser() -> argparse.ArgumentParser:
    p = cli.tool_parser("benchmark.py", __doc__)
    cli.add_artifacts_argument(p, cli.DEFAULT_ARTIFACTS)
    p.add_argument(
        "--backends",
        type=cli.name_list(BACKEND_NAMES, "--backends"),
        default=("onnxruntime",),
        metavar="LIST",
        help=f"backends to measure, comma-separated, from {', '.join(BACKEND_NAMES)} (default: onnxruntime)",
    )
    p.add_argument(
        "--device",
        type=cli.name_list(DEVICES, "--device"),
        default=("cpu",),
        metavar="LIST",
        help="devices to measure every backend on: cpu, cuda, or cpu,cuda (default: cpu)",
    )
    p.add_argument(
        "--precisions",
        type=cli.name_list(REQUESTED_PRECISIONS, "--precisions"),
        default=("auto",),
        metavar="LIST",
        help="precisions, comma-separated, from auto (each graph's planned variant for the backend), fp32, fp16, "
        "int8; one the artifacts or a backend lack is skipped with the reason (default: auto)",
    )
    p.add_argument(
        "--sizes",
        type=frame_sizes,
        default=((256, 256),),
        metavar="LIST",
        help="frame sizes, WIDTHxHEIGHT, comma-separated, e.g. 256x256,1280x720 (default: 256x256)",
    )
    p.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed frames per cell first (default: 3)")
    p.add_argument("--iters", type=int, default=20, metavar="N", help="timed frames per cell (default: 20)")
    cli.add_threads_argument(p, "CPU threads for every backend (default: the backend's, one per core)")
    cli.add_backend_option_argument(p)
    p.add_argument(
        "--tile",
        type=int,
        default=0,
        metavar="N",
        help="time the tiled path: frames larger than N x N run in N x N tiles (default: 0, whole frames)",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="write every figure and the environment to this file")
    p.add_argument(
        "--plot",
        type=Path,
        metavar="PATH",
        help="draw latency per graph and the latency distribution to this .png, .svg or .pdf (needs matplotlib)",
    )
    cli.add_verbosity_arguments(p)
    return p


def benchmark(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Run the grid `args` describes; the whole result as the JSON file stores it."""
    if args.tile < 0:
        raise InputError(f"--tile must be >= 0, got {args.tile}")
    cli.require_export(args.artifacts, cli.DEFAULT_ARTIFACTS)
    settings = Settings(
        backends=args.backends,
        devices=args.device,
        precisions=args.precisions,
        sizes=args.sizes,
        warmup=args.warmup,
        iters=args.iters,
        threads=args.threads,
        tile=args.tile or None,
        backend_options=args.backend_options,
    )
    manifest = load_manifest(args.artifacts)
    environment = describe_environment(args.threads, "cuda" in args.device)

    results, skipped = run_grid(manifest, settings, progress=not args.quiet)
    return {
        "format": RESULT_FORMAT,
        "schema_version": RESULT_SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "runtime/benchmark.py", *argv]),
        "model": manifest.name,
        "artifacts": str(args.artifacts),
        "source": {"checkpoint": manifest.source.checkpoint, "interim": manifest.source.interim},
        "settings": {
            "backends": list(settings.backends),
            "devices": list(settings.devices),
            "precisions": list(settings.precisions),
            "sizes": [f"{w}x{h}" for h, w in settings.sizes],
            "warmup": settings.warmup,
            "iters": settings.iters,
            "threads": settings.threads,
            "tile": settings.tile,
            **cli.options_setting(settings.backend_options),
        },
        "environment": environment,
        "results": results,
        "skipped": skipped,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.verbose)
    try:
        result = benchmark(args, argv)
        print(format_report(result))
        if args.json:
            cli.write_json_report(args.json, result)
        if not result["results"]:
            raise InputError("every cell was skipped (reasons above): nothing was measured")
        if args.plot:
            from runtime.bench.plot import write_plot

            write_plot(result, args.plot)
    except UnfoldError as exc:
        return report_error(exc, args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
