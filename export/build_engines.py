"""One command from a checkpoint to everything the runtime can use: export, FP16, INT8, engines.

    python export/build_engines.py                      # the shipped model -> artifacts/edge/
    python export/build_engines.py --checkpoint runs/x/last.pt --name mine --out /tmp/mine
    python export/build_engines.py --from-artifacts artifacts/edge   # on the Jetson: engines only

1. Export: per stage the gradient half and the proximal half, plus the `prior` graph
   (condition encoder and the whole fixed-step sampler), each as ONNX (opset 17 unless --opset)
   and as a torch.export program; onnx.checker, shape inference, parity of every graph and of
   the whole pipeline against PyTorch; then ONNX Runtime and OpenVINO (where installed) timed
   against each other at --cpu-timing-size, the faster leading the default order on a CPU.
2. FP16: `<graph>.fp16.onnx` with FP32 islands, checked against FP32 (--no-fp16 skips).
3. INT8: calibration by pipeline replay, `<graph>.int8.onnx` (symmetric Q/DQ, for TensorRT) and
   `<graph>.int8-cpu.onnx` and the accuracy gate (--no-int8 skips; the calibration flags are
   those of calibration/calibrate.py). Steps 2 and 3 are one call into calibration/, which also
   writes the `auto` plans: per backend, INT8 where it passed its gate, else FP16 where it did.
4. TensorRT engines for this machine's GPU at --sizes (or a dynamic --profile). Without
   TensorRT or a GPU this step says so in one line and the command still exits 0: the ONNX
   Runtime artifacts (FP32, FP16, INT8) are ready.

`--from-artifacts DIR` runs step 4 alone on an existing artifacts folder: no torch, no
checkpoint (the device side of the two-machine flow). The manifest is written last at every
step and read back with every sha256 checked.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

from calibration.calibrate import add_calibration_arguments, format_precision, precision_from_args
from export.cli_sizes import DEFAULT_CPU_TIMING_SIZE, frame_size
from export.opsets import DEFAULT_OPSET, MAX_OPSET
from runtime import cli
from runtime.errors import BackendUnavailable, InputError, UnfoldError, report_error
from runtime.manifest import REQUESTED_PRECISIONS
from runtime.shipped import SHIPPED_CHECKPOINT

DEFAULT_CHECKPOINT = SHIPPED_CHECKPOINT
DEFAULT_NAME = "edge"


def build_parser() -> argparse.ArgumentParser:
    p = cli.tool_parser("build_engines.py", __doc__)
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=DEFAULT_CHECKPOINT,
        help=f"model checkpoint (.pt) to export (default: the shipped {cli.shown(DEFAULT_CHECKPOINT)})",
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
        "(default: artifacts/<name>/ in the repository). A non-empty folder that is not an artifacts "
        "folder of ours is refused (see --allow-non-empty); a rebuild removes only files our manifest listed",
    )
    p.add_argument(
        "--allow-non-empty",
        action="store_true",
        help="write the artifacts into a non-empty folder that is not an artifacts folder of ours; its files "
        "are kept and none is replaced (the build stops instead if one has a name the build writes)",
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
        help="write the ONNX graphs as the exporter made them from the training modules, without the exact "
        "speed rewrites (the graph forms of model/export_forms.py: convolutions split instead of chunk(); "
        "export/graph_passes.py: mean over channels as a 1x1 Conv)",
    )
    p.add_argument(
        "--cpu-timing-size",
        type=frame_size,
        default=DEFAULT_CPU_TIMING_SIZE,
        metavar="WxH",
        help="frame size at which ONNX Runtime and OpenVINO (where installed) are timed against each other "
        "at FP32; the faster one leads the default backend order on a CPU (default: "
        f"{DEFAULT_CPU_TIMING_SIZE[1]}x{DEFAULT_CPU_TIMING_SIZE[0]})",
    )
    p.add_argument(
        "--no-cpu-timing",
        action="store_true",
        help="do not time the CPU backends: the default order on a CPU keeps ONNX Runtime first",
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
    p.add_argument(
        "--from-artifacts",
        type=Path,
        metavar="DIR",
        help="build TensorRT engines for the existing artifacts folder DIR only (no export, no torch, no checkpoint)",
    )
    g = p.add_argument_group("FP16 and INT8")
    g.add_argument("--no-fp16", action="store_true", help="do not write the FP16 graphs")
    g.add_argument("--no-int8", action="store_true", help="do not calibrate or write the INT8 graphs")
    add_calibration_arguments(g)
    e = p.add_argument_group("TensorRT engines")
    e.add_argument(
        "--precision",
        choices=REQUESTED_PRECISIONS,
        default="auto",
        help="engine precision per graph: auto takes the manifest's TensorRT plan (INT8 where it passed the gate, "
        "else FP16, else FP32) (default: auto)",
    )
    e.add_argument(
        "--sizes",
        type=frame_size,
        action="append",
        metavar="WxH",
        help="frame size of a static engine, repeatable (default: 1280x720); padded to the model multiple",
    )
    e.add_argument(
        "--profile",
        type=frame_size,
        nargs=3,
        metavar=("MIN", "OPT", "MAX"),
        help="one dynamic-shape engine per graph over this WxH range instead of static sizes",
    )
    e.add_argument(
        "--timing-cache", type=Path, help="TensorRT timing cache, shared by every build (default: <artifacts>/engines/)"
    )
    e.add_argument("--workspace-mb", type=int, help="builder workspace limit in MiB (default: TensorRT's)")
    e.add_argument("--dla-core", type=int, help="build for this DLA core (Jetson), with GPU fallback")
    e.add_argument("--no-gpu-fallback", action="store_true", help="with --dla-core: fail on layers DLA cannot run")
    e.add_argument(
        "--weak-fp16",
        action="store_true",
        help="FP16 engines from the FP32 graph with the FP16 builder flag and FP32 layer pins (TensorRT 8.6/10.x)",
    )
    e.add_argument("--force", action="store_true", help="rebuild engines even when a matching one exists")
    cli.add_threads_argument(p, "CPU threads for the checks (default: one per core)")
    cli.add_verbosity_arguments(p, quiet="no progress bar", verbose="show tracebacks and debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Library warnings (ONNX Runtime's, TensorRT's) would bury the summaries: errors only unless -v.
    cli.setup_logging(args.verbose, normal=logging.ERROR, detailed=logging.DEBUG)
    try:
        _check_args(args)
        out = args.from_artifacts or args.out or cli.REPO / "artifacts" / args.name
        if args.from_artifacts is None:
            _prepare_onnx_artifacts(args, out)
        _build_engines(args, out)
    except UnfoldError as exc:
        return report_error(exc, args.verbose)
    return 0


def _check_args(args: argparse.Namespace) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.name):
        raise InputError(f"--name {args.name!r}: use letters, digits, '.', '_' and '-' (it names a folder)")
    if args.tolerance <= 0:
        raise InputError(f"--tolerance must be positive, got {args.tolerance}")
    if args.sizes and args.profile:
        raise InputError("--sizes and --profile exclude each other (static engines or one dynamic profile)")
    if args.workspace_mb is not None and args.workspace_mb < 1:
        raise InputError(f"--workspace-mb must be >= 1, got {args.workspace_mb}")
    if args.from_artifacts is not None and not (args.from_artifacts / "manifest.json").is_file():
        raise InputError(f"--from-artifacts {args.from_artifacts}: no manifest.json there")


def _prepare_onnx_artifacts(args: argparse.Namespace, out: Path) -> None:
    """Steps 1-3: export and verify; then FP16, INT8 and the `auto` plans. torch is imported here only."""
    from export.build import ExportOptions, build_from_checkpoint

    shapes = tuple((1, h, w) for h, w in args.check_size) if args.check_size else None
    options = ExportOptions(
        opset=args.opset,
        torch_programs=not args.no_torch_programs,
        graph_passes=not args.plain_graphs,
        cpu_timing_size=None if args.no_cpu_timing else args.cpu_timing_size,
        parity_shapes=shapes,
        tolerance=args.tolerance,
        threads=args.threads,
        progress=not args.quiet,
        allow_non_empty=args.allow_non_empty,
    )
    if args.checkpoint == DEFAULT_CHECKPOINT and not DEFAULT_CHECKPOINT.is_file():
        raise InputError(f"{DEFAULT_CHECKPOINT}: the shipped checkpoint is missing (pass --checkpoint PT)")
    start = time.perf_counter()
    manifest = build_from_checkpoint(args.checkpoint, out, args.name, options)
    worst = max(g.parity.onnxruntime_max_abs_error for g in manifest.graphs.values() if g.parity is not None)
    print(
        f"wrote {out / 'manifest.json'}: {len(manifest.graphs)} graphs, opset {manifest.opset}, "
        f"max |ONNX Runtime - PyTorch| {worst:.2e}, verified in {time.perf_counter() - start:.0f} s"
    )
    # Steps 2-3, one call: calibration/ writes every reduced-precision variant and the `auto` plans.
    fp16, int8 = not args.no_fp16, not args.no_int8
    summary = format_precision(precision_from_args(args, out, args.threads, not args.quiet, fp16=fp16, int8=int8))
    if summary:
        print(summary)


def _build_engines(args: argparse.Namespace, out: Path) -> None:
    """Step 4. Without TensorRT or a GPU: one line, and the ONNX Runtime artifacts stand."""
    from export.engines import build_engines_for_artifacts, format_summary

    try:
        rows = build_engines_for_artifacts(
            out,
            precision=args.precision,
            sizes=args.sizes,
            profile=tuple(args.profile) if args.profile else None,
            timing_cache=args.timing_cache,
            workspace_bytes=args.workspace_mb * 2**20 if args.workspace_mb else None,
            dla_core=args.dla_core,
            gpu_fallback=not args.no_gpu_fallback,
            weak_fp16=args.weak_fp16,
            force=args.force,
            progress=not args.quiet,
        )
    except BackendUnavailable as exc:
        if args.from_artifacts is not None:
            raise
        print(f"TensorRT engines: skipped ({exc}); the ONNX Runtime artifacts in {out} are ready.")
        return
    print(format_summary(rows))


if __name__ == "__main__":
    sys.exit(main())
