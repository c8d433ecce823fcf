"""What the restoring tools share (runtime/restore.py on one machine, runtime/batch.py on a Ray
cluster): the flags that choose how frames are restored, and opening the pipeline they ask for.

Written once so that a batch run and a single run given the same flags open the same pipeline
and write the same bytes. A CLI-layer module like runtime/cli.py: the core never imports it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime import cli
from runtime.backends.select import BACKEND_NAMES
from runtime.errors import ManifestError
from runtime.manifest import REQUESTED_PRECISIONS, load_manifest
from runtime.memory_plan import DEFAULT_MAX_MEMORY, format_bytes, parse_size
from runtime.pipeline import AUTO_TILE, DEFAULT_TILE_OVERLAP, Pipeline
from runtime.shipped import SHIPPED_SHA256

_tile_pixels = cli.int_at_least(0)


def tile_size(text: str) -> int | str:
    """argparse type of --tile: auto, 0 or a size in pixels."""
    if text.strip().lower() == AUTO_TILE:
        return AUTO_TILE
    try:
        return _tile_pixels(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"use auto, 0 (whole frames) or a tile size in pixels, got {text!r}") from None


def memory_size(text: str) -> int:
    """argparse type of --max-memory: 2GiB, 1500MB, ..."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """--backend, --device, --tile, --max-memory, --tile-overlap, --precision."""
    p.add_argument(
        "--backend",
        type=cli.name_list(BACKEND_NAMES, "--backend"),
        metavar="|".join(BACKEND_NAMES),
        help="backend to run the graphs with; a comma-separated list is a fallback order, tried once at "
        "start (default: tensorrt, then onnxruntime, then torch, GPU before CPU; openvino runs when named)",
    )
    p.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        help="run on this device only (default: CUDA when the backend can use it, else the CPU)",
    )
    p.add_argument(
        "--tile",
        type=tile_size,
        default=AUTO_TILE,
        metavar="auto|0|N",
        help="auto: a frame runs whole when its estimated peak memory (from the manifest) fits --max-memory, else "
        "in the largest N x N tiles that fit, and one line says so; 0: always whole frames; N: frames larger than "
        "N x N in overlapping N x N tiles (N a multiple of the model's pad multiple). The prior is still computed "
        "once per stage on the whole frame and shared by the tiles; tiles cost a little quality (default: auto)",
    )
    p.add_argument(
        "--max-memory",
        type=memory_size,
        default=DEFAULT_MAX_MEMORY,
        metavar="SIZE",
        help="memory budget of one frame for --tile auto, e.g. 2GiB, 1500MB; the process's own libraries and "
        "weights (a few hundred MB) come on top. A fixed default, so the same input always gives the same "
        f"output whatever memory is free (default: {format_bytes(DEFAULT_MAX_MEMORY).replace(' ', '')})",
    )
    p.add_argument(
        "--tile-overlap",
        type=int,
        default=DEFAULT_TILE_OVERLAP,
        metavar="N",
        help=f"overlap between neighbouring tiles in pixels (default: {DEFAULT_TILE_OVERLAP})",
    )
    p.add_argument(
        "--precision",
        choices=REQUESTED_PRECISIONS,
        default="auto",
        help="graph precision: auto follows the manifest's plan for the backend (fp32 where it has none; -v "
        "shows the plan); fp32, fp16 and int8 are an error naming the graphs that lack them (default: auto)",
    )


def open_pipeline(args: argparse.Namespace, default_artifacts: Path) -> Pipeline:
    """The pipeline the flags of `add_pipeline_arguments` (plus --artifacts, --threads,
    --backend-option, -q) ask for. `default_artifacts` is the calling tool's default, so that the
    shipped-model check applies to it alone. UnfoldError when it cannot be opened."""
    cli.require_export(args.artifacts, default_artifacts)
    if args.artifacts == default_artifacts:
        # Artifacts exported from older weights (say the interim model) would run silently otherwise.
        # Checked on the manifest alone, before any backend session is opened.
        source = load_manifest(args.artifacts, verify=False).source
        if source.sha256 != SHIPPED_SHA256:
            raise ManifestError(
                f"{default_artifacts}: exported from {source.checkpoint} (sha256 {source.sha256[:12]}...), "
                "not from the shipped model; run `python export/build_engines.py` to re-export it"
            )
    pipeline = Pipeline.from_manifest(
        args.artifacts,
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        tile=args.tile or None,
        tile_overlap=args.tile_overlap,
        max_memory=args.max_memory,
        backend_options=args.backend_options,
    )
    graphs = pipeline.manifest.graphs.values()
    if args.tile == AUTO_TILE and not args.quiet and any(g.activation_bytes is None for g in graphs):
        print(
            f"note: {args.artifacts} records no activation sizes (exported by an older version), so --tile auto "
            "restores whole frames; re-export with export/build_engines.py, or pass --tile N",
            file=sys.stderr,
        )
    return pipeline
