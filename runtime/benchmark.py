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
import json
import logging
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runtime.atomic_io import atomic_write_bytes
from runtime.backends.base import DEVICES
from runtime.backends.select import BACKEND_NAMES
from runtime.bench.environment import describe_environment
from runtime.bench.measure import Settings, run_grid
from runtime.bench.report import format_report
from runtime.cli_sizes import frame_sizes
from runtime.errors import InputError, ManifestError, UnfoldError, report_error
from runtime.manifest import MANIFEST_NAME, REQUESTED_PRECISIONS, load_manifest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ARTIFACTS = REPO / "artifacts" / "edge"
RESULT_FORMAT = "unfoldldm-edge/benchmark"
RESULT_SCHEMA_VERSION = 1


def _names(allowed: tuple[str, ...], what: str) -> Any:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
        bad = [n for n in names if n not in allowed]
        if not names or bad:
            raise argparse.ArgumentTypeError(f"{what}: choose from {', '.join(allowed)}, comma-separated")
        return names

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmark.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--artifacts",
        type=Path,
        default=DEFAULT_ARTIFACTS,
        metavar="DIR",
        help=f"folder holding {MANIFEST_NAME} and graphs/, written by export/build_engines.py "
        "(default: artifacts/edge/ in the repository)",
    )
    p.add_argument(
        "--backends",
        type=_names(BACKEND_NAMES, "--backends"),
        default=("onnxruntime",),
        metavar="LIST",
        help=f"backends to measure, comma-separated, from {', '.join(BACKEND_NAMES)} (default: onnxruntime)",
    )
    p.add_argument(
        "--device",
        type=_names(DEVICES, "--device"),
        default=("cpu",),
        metavar="LIST",
        help="devices to measure every backend on: cpu, cuda, or cpu,cuda (default: cpu)",
    )
    p.add_argument(
        "--precisions",
        type=_names(REQUESTED_PRECISIONS, "--precisions"),
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
    p.add_argument(
        "--threads", type=int, metavar="N", help="CPU threads for every backend (default: the backend's, one per core)"
    )
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
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks")
    return p


def benchmark(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Run the grid `args` describes; the whole result as the JSON file stores it."""
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    if args.tile < 0:
        raise InputError(f"--tile must be >= 0, got {args.tile}")
    if args.artifacts == DEFAULT_ARTIFACTS and not (DEFAULT_ARTIFACTS / MANIFEST_NAME).is_file():
        raise ManifestError(
            f"{DEFAULT_ARTIFACTS}: the shipped model has not been exported yet; "
            "run `python export/build_engines.py` first (or pass --artifacts DIR)"
        )
    settings = Settings(
        backends=args.backends,
        devices=args.device,
        precisions=args.precisions,
        sizes=args.sizes,
        warmup=args.warmup,
        iters=args.iters,
        threads=args.threads,
        tile=args.tile or None,
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
        },
        "environment": environment,
        "results": results,
        "skipped": skipped,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        result = benchmark(args, argv)
        print(format_report(result))
        if args.json:
            try:
                atomic_write_bytes(args.json, (json.dumps(result, indent=2) + "\n").encode())
            except OSError as exc:
                raise InputError(f"{args.json}: cannot be written ({exc.strerror or exc})") from exc
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
