"""Export a checkpoint to ONNX graphs and torch.export programs, verify them, write manifest.json.

    python export/build_engines.py                      # the shipped model -> artifacts/edge/
    python export/build_engines.py --checkpoint runs/x/last.pt --name mine --out /tmp/mine

Per stage the gradient half and the proximal half, plus the `prior` graph (condition encoder
and the whole fixed-step sampler), each as ONNX (opset 17 unless --opset) and as a
torch.export program; then onnx.checker, shape inference, parity of every graph and of the
whole pipeline against PyTorch, and the manifest, read back with every sha256 checked.
TensorRT engines and INT8 calibration are not built yet: the command says so and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
import traceback
from pathlib import Path

from export.build import BuildOptions, build_from_checkpoint
from export.cli_sizes import frame_size
from export.onnx_export import DEFAULT_OPSET, MAX_OPSET
from runtime.errors import InputError, UnfoldError

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = REPO / "model" / "weights" / "edge_interim.pt"
DEFAULT_NAME = "edge"
NOT_YET = (
    "TensorRT engines and INT8 calibration: not built yet (they arrive in a later release); ONNX and torch graphs only."
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="build_engines.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=DEFAULT_CHECKPOINT,
        help=f"model checkpoint (.pt) to export (default: the shipped {DEFAULT_CHECKPOINT.relative_to(REPO)})",
    )
    p.add_argument(
        "--name",
        default=DEFAULT_NAME,
        help=f"artifacts name, recorded in the manifest and used for the default --out (default: {DEFAULT_NAME})",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="artifacts folder: the folder that will hold manifest.json and graphs/ "
        "(default: artifacts/<name>/ in the repository)",
    )
    p.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset to write, {DEFAULT_OPSET}..{MAX_OPSET} (default: {DEFAULT_OPSET}, the highest every "
        "supported JetPack TensorRT parses); the opset found in each written file is checked",
    )
    p.add_argument(
        "--no-torch-programs",
        action="store_true",
        help="skip the torch.export programs (.pt2); the torch backend then cannot run these artifacts",
    )
    p.add_argument(
        "--plain-graphs",
        action="store_true",
        help="write the ONNX graphs as the exporter made them, without the exact speed rewrites of "
        "export/graph_passes.py (mean over channels as a 1x1 Conv)",
    )
    p.add_argument(
        "--check-size",
        type=frame_size,
        action="append",
        metavar="WxH",
        help="frame size for the per-graph parity check, repeatable, multiples of the model's pad multiple "
        "(default: 80x48 at batch 2 and 256x256)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest allowed |ONNX Runtime - PyTorch| per graph and end to end, FP32 (default: 1e-4)",
    )
    p.add_argument("--threads", type=int, help="CPU threads for the checks (default: one per core)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    out = args.out or REPO / "artifacts" / args.name
    try:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.name):
            raise InputError(f"--name {args.name!r}: use letters, digits, '.', '_' and '-' (it names a folder)")
        if args.threads is not None and args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        if args.tolerance <= 0:
            raise InputError(f"--tolerance must be positive, got {args.tolerance}")
        shapes = tuple((1, h, w) for h, w in args.check_size) if args.check_size else None
        options = BuildOptions(
            opset=args.opset,
            torch_programs=not args.no_torch_programs,
            graph_passes=not args.plain_graphs,
            parity_shapes=shapes,
            tolerance=args.tolerance,
            threads=args.threads,
            progress=not args.quiet,
        )
        if args.checkpoint == DEFAULT_CHECKPOINT and not DEFAULT_CHECKPOINT.is_file():
            raise InputError(f"{DEFAULT_CHECKPOINT}: the shipped checkpoint is missing (pass --checkpoint PT)")
        start = time.perf_counter()
        manifest = build_from_checkpoint(args.checkpoint, out, args.name, options)
    except UnfoldError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    worst = max(g.parity.onnxruntime_max_abs_error for g in manifest.graphs.values() if g.parity is not None)
    print(
        f"wrote {out / 'manifest.json'}: {len(manifest.graphs)} graphs, opset {manifest.opset}, "
        f"max |ONNX Runtime - PyTorch| {worst:.2e}, verified in {time.perf_counter() - start:.0f} s"
    )
    print(NOT_YET)
    return 0


if __name__ == "__main__":
    sys.exit(main())
