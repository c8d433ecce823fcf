"""Calibrate an artifacts folder: INT8 Q/DQ graphs, their accuracy report, the `auto` plans.

    python calibration/calibrate.py                                  # artifacts/edge, built-in photos
    python calibration/calibrate.py --source clips/street.mp4 --frames 32 --method minmax
    python calibration/calibrate.py --source my_frames/ --heldout my_other_frames/

Each graph is calibrated on the inputs the FP32 graphs before it really produce on the
calibration frames (pipeline replay), quantized (symmetric `<graph>.int8.onnx` for TensorRT,
and `<graph>.int8-cpu.onnx` for ONNX Runtime on x86), and checked on held-out frames that were
not used for calibration: per graph and end to end against FP32, and against ground truth where
the frames have it (the built-in photos are clean photos degraded like training data). A graph
that misses the gate keeps its higher precision. `--precision auto` at run time then takes INT8
only where it passed, and on ONNX Runtime CPU only where it also measured faster.
The report is written to <artifacts>/calibration/report.json and summarised here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from calibration.qdq import METHODS
from calibration.sources import BUILTIN, BUILTIN_HELDOUT, load_frames
from runtime import cli
from runtime.errors import InputError, UnfoldError, report_error

if TYPE_CHECKING:
    from calibration.int8 import CalibrationReport
    from calibration.precision import PrecisionResult

# The FP16 gate's frames: two built-in held-out photos at 256x256, whatever the INT8 flags say.
FP16_HELDOUT_FRAMES = 2

def add_calibration_arguments(p: argparse.ArgumentParser) -> None:
    """The calibration flags, shared with export/build_engines.py."""
    p.add_argument(
        "--source",
        default=BUILTIN,
        help="calibration frames: an image folder, a video file, an image sequence (folder, printf or glob "
        f"pattern) or '{BUILTIN}': photos bundled with scikit-image, degraded like training data (default)",
    )
    p.add_argument(
        "--heldout",
        default=BUILTIN_HELDOUT,
        help="frames for the accuracy gate, never calibrated on; same kinds as --source "
        f"(default: '{BUILTIN_HELDOUT}', two other bundled photos, degraded, with ground truth)",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=8,
        help="calibration frames, sampled evenly (default: 8). The entropy method keeps every activation of every "
        "frame in memory (about 0.6 GB per 256x256 frame for edge); use --method minmax for many or large frames",
    )
    p.add_argument("--heldout-frames", type=int, default=4, help="held-out frames for the gate (default: 4)")
    cli.add_frame_size_argument(p, "--calibration-size", (256, 256), "frames are centre-cropped to this size")
    p.add_argument(
        "--degrade",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="apply training's random degradations to the frames, keeping the clean ones as ground truth "
        "(default: only for the built-in photos)",
    )
    p.add_argument("--method", choices=METHODS, default="entropy", help="activation range estimate (default: entropy)")
    p.add_argument(
        "--gate-db",
        type=float,
        default=40.0,
        help="least PSNR of the INT8 pipeline's output against the FP32 pipeline's, worst held-out frame (default: 40)",
    )
    p.add_argument(
        "--graph-screen-db",
        type=float,
        default=35.0,
        help="least PSNR against FP32 of one graph alone to be tried in the INT8 pipeline; the end-to-end gate "
        "decides (default: 35)",
    )
    p.add_argument(
        "--max-gt-loss-db",
        type=float,
        default=0.3,
        help="most PSNR the INT8 pipeline may lose against ground truth (default: 0.3)",
    )
    p.add_argument(
        "--no-cpu-flavour", action="store_true", help="do not write the uint8-activation <graph>.int8-cpu.onnx graphs"
    )


def precision_from_args(
    args: argparse.Namespace,
    artifacts: Path,
    threads: int | None,
    progress: bool,
    fp16: bool = False,
    int8: bool = True,
) -> PrecisionResult:
    """The precision step (calibration/precision.py) on `artifacts` with the frames the flags
    name: FP16 when `fp16`, INT8 when `int8`, the `auto` plans always."""
    from calibration.int8 import Int8Settings  # onnx and onnxruntime: only when calibrating
    from calibration.precision import build_precision

    settings = None
    if int8:
        if args.frames < 1 or args.heldout_frames < 1:
            raise InputError("--frames and --heldout-frames must be >= 1")
        settings = Int8Settings(
            calibration=load_frames(args.source, args.frames, args.calibration_size, args.degrade, seed=0),
            heldout=load_frames(args.heldout, args.heldout_frames, args.calibration_size, args.degrade, seed=1),
            source=str(args.source),
            method=args.method,
            gate_db=args.gate_db,
            graph_screen_db=args.graph_screen_db,
            max_gt_loss_db=args.max_gt_loss_db,
            cpu_flavour=not args.no_cpu_flavour,
        )
    heldout = load_frames(BUILTIN_HELDOUT, FP16_HELDOUT_FRAMES, (256, 256), seed=1) if fp16 else None
    return build_precision(artifacts, fp16_heldout=heldout, int8=settings, threads=threads, progress=progress)


def format_precision(result: PrecisionResult) -> str:
    """The FP16 table, then the INT8 report, for the sub-steps that ran."""
    from calibration.fp16_variants import format_fp16_rows

    parts = [] if result.fp16 is None else [format_fp16_rows(result.fp16)]
    return "\n".join(parts + ([] if result.int8 is None else [format_report(result.int8)]))


_COLUMNS = ("graph", "INT8 level", "int8 dB", "cpu dB", "fp32 ms", "int8 ms", "cpu ms")


def format_report(report: CalibrationReport) -> str:
    table = [_COLUMNS]
    for name, r in report.graphs.items():
        acc = {k: f"{v.min_psnr_db:.1f}" for k, v in r.accuracy.items()}
        ms = {k: f"{v:.0f}" for k, v in r.latency_ms.items()}
        level = r.level or f"none: {r.note}"
        cells = (acc.get("int8"), acc.get("int8-cpu"), ms.get("fp32"), ms.get("int8"), ms.get("int8-cpu"))
        table.append((name, level, *(c or "-" for c in cells)))
    widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS))]
    rows = [
        "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    for label, accuracy in (("INT8 pipeline", report.int8_pipeline), ("CPU auto pipeline", report.cpu_pipeline)):
        if accuracy is None:
            rows.append(f"{label}: none")
            continue
        gt = "n/a (no ground truth)" if accuracy.gt_loss_db is None else f"{accuracy.gt_loss_db:+.3f} dB"
        rows.append(f"{label}: {accuracy.psnr_vs_fp32_db:.1f} dB vs FP32 (worst frame), loss against ground truth {gt}")
    for target, plan in report.plans.items():
        rows.append(f"auto on {target}: " + ", ".join(f"{g}={p}" for g, p in sorted(plan.items())))
    rows.extend(report.notes)
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    p = cli.tool_parser("calibrate.py", __doc__)
    cli.add_artifacts_argument(p)
    add_calibration_arguments(p)
    cli.add_threads_argument(p, "CPU threads for ONNX Runtime (default: one per core)")
    cli.add_verbosity_arguments(p, verbose="show tracebacks and debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Library warnings (ONNX Runtime's, quantisation's) would bury the report: errors only unless -v.
    cli.setup_logging(args.verbose, normal=logging.ERROR, detailed=logging.DEBUG)
    try:
        print(format_precision(precision_from_args(args, args.artifacts, args.threads, not args.quiet)))
    except UnfoldError as exc:
        return report_error(exc, args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
