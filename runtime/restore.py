"""Restore an image, a folder of images, or a video with an exported UnfoldLDM model.

    python runtime/restore.py noisy.png -o clean.png
    python runtime/restore.py photos/ -o restored/ --backend onnxruntime --tile 512
    python runtime/restore.py clip.mp4 -o restored.mp4 --side-by-side
    python runtime/restore.py 0 --preview --realtime -o camera.mp4

Images: INPUT is an image file or a folder of images (not searched recursively; hidden files and
other extensions are ignored). With a file, OUTPUT is the file to write (or an existing
folder to write it into under the same name). With a folder, OUTPUT is a folder that receives
only the restored images, under the same file names. 8- and 16-bit, grey, RGB and RGBA
images are kept as they came: same bit depth and channels, alpha passed through untouched.
Files that cannot be restored are listed, one line each; the others are still restored, and
the exit status is 1. Every output is written whole or not at all. Outputs that already exist
are refused unless --overwrite, and every output path, its format and its folder are checked
before the first image is restored.

Memory: by default (--tile auto) a frame whose estimated peak memory (from the manifest's
per-graph activation sizes) is over --max-memory is restored in the largest tiles that fit,
and one line says so. A frame that takes more than a few seconds shows its progress per
graph or per tile; a single image ends with one line saying what was written.

Videos: INPUT is a video file, a camera index (0, 1, ...), an RTSP/HTTP URL, a GStreamer
pipeline (text with "!"), a numbered or glob pattern of images (frames/%06d.png, "frames/*.png"),
or a folder of frames when OUTPUT is a video file or a video flag is given. OUTPUT is a video
file (.mp4, .m4v, .mov: mp4v; .avi: MJPG; .mkv: lossless FFV1) written at the source's frame
rate, a folder (frames 000001.png, ...) or a pattern (out/%05d.png); with --preview it may be
left out. Capture, restoration and writing run in three threads. A summary (frames, fps,
dropped, latency p50/p99) ends every run. A cut-off video file ends at its last good frame;
Ctrl-C finishes the frames already restored (twice: stops writing at once); either way the
output file is complete and playable. Exit status: 0, or 1 when frames of the input could not
be read or a live source was lost, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from contextlib import ExitStack
from pathlib import Path

from tqdm import tqdm

from runtime import cli, cli_restore
from runtime.cli import DEFAULT_ARTIFACTS
from runtime.errors import InferenceError, InputError, ShapeError, UnfoldError, report_error
from runtime.image_jobs import image_jobs, make_output_folder, restore_image_file
from runtime.memory_plan import TilePlan, describe_plan
from runtime.pipeline import Pipeline
from runtime.video.loop import INTERRUPTED, SOURCE_LOST, VideoSummary, run_video
from runtime.video.restore_video import (
    FrameRestorer,
    is_video_input,
    make_depth_controller,
    make_prior_cache,
    make_sinks,
)
from runtime.video.sources import open_source
from runtime.video.wrappers import DelayedProcess

# Per-image problems: the image is skipped and listed, the rest of the folder goes on.
IMAGE_ERRORS = (InputError, ShapeError, InferenceError)
# Exit status after Ctrl-C, as shells report a process ended by SIGINT.
EXIT_INTERRUPTED = 130
# A frame's progress bar appears only once it has run this long: quick frames stay silent.
PROGRESS_DELAY_S = 3.0


def build_parser() -> argparse.ArgumentParser:
    p = cli.tool_parser("restore.py", __doc__)
    p.add_argument(
        "input",
        metavar="INPUT",
        help="an image file or a folder of images; or a video: a video file, camera index, URL, GStreamer "
        "pipeline, or image-sequence pattern (see above)",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="OUTPUT",
        help="output image file (INPUT is a file) or output folder (INPUT is a folder; created if missing); for "
        "a video: a video file (by extension), a folder of numbered frames, or a pattern such as out/%%06d.png "
        "(required, except for a video with --preview)",
    )
    cli.add_artifacts_argument(p, DEFAULT_ARTIFACTS)  # this module's name: tests point it elsewhere
    cli_restore.add_pipeline_arguments(p)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs that already exist (default: refuse, naming the file, before anything runs)",
    )
    cli.add_threads_argument(p)
    cli.add_backend_option_argument(p)
    _add_video_arguments(p)
    cli.add_verbosity_arguments(
        p,
        quiet="no progress bars, no tiling line and no summary or result line",
        verbose="show tracebacks, which backend was chosen and the precision each graph runs",
    )
    return p


def _add_video_arguments(p: argparse.ArgumentParser) -> None:
    v = p.add_argument_group("video", "flags for video inputs; any of them makes a folder INPUT a video")
    v.add_argument(
        "--realtime",
        action="store_true",
        help="keep up with the source: when restoration falls behind, drop the oldest waiting frames (counted "
        "in the summary); a file is read at its own frame rate, as a camera would deliver it "
        "(default: restore every frame)",
    )
    v.add_argument(
        "--queue-size",
        type=int,
        default=4,
        metavar="N",
        help="frames that may wait between capture and restoration, and between restoration and writing; "
        "bounds the delay in --realtime mode (default: 4)",
    )
    v.add_argument(
        "--side-by-side",
        action="store_true",
        help="write and show input | restored side by side (twice the width)",
    )
    v.add_argument("--preview", action="store_true", help="show the restored frames in a window ('q' or Esc stops)")
    v.add_argument(
        "--fps",
        type=float,
        metavar="FPS",
        help="frame rate of the source, overriding what it reports (default: the source's; 25 for image "
        "sequences); the output video uses it",
    )
    v.add_argument(
        "--adaptive-depth",
        action="store_true",
        help="when restoration falls behind the per-frame budget, run fewer unfolding stages (every stage's "
        "output is a valid image) and more again once it catches up",
    )
    v.add_argument(
        "--budget-ms",
        type=float,
        metavar="MS",
        help="per-frame latency budget for --adaptive-depth (default: one frame interval, 1000 / source fps)",
    )
    v.add_argument(
        "--prior-reuse",
        type=int,
        metavar="N",
        help="reuse a frame's diffusion prior for up to N following frames, or until a scene change "
        "(default: a new prior every frame)",
    )
    v.add_argument(
        "--scene-threshold",
        type=float,
        metavar="T",
        help="with --prior-reuse: how different a frame must be from the one whose prior is cached to count "
        "as a scene change (default: the cache's own)",
    )
    v.add_argument(
        "--simulate-slowdown-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="sleep MS after restoring each frame, to see how a slower device would behave (e.g. drops in "
        "--realtime mode) (default: 0)",
    )


def _video_flags(args: argparse.Namespace) -> list[str]:
    """The video-only flags given on the command line."""
    given = {
        "--realtime": args.realtime,
        "--side-by-side": args.side_by_side,
        "--preview": args.preview,
        "--fps": args.fps is not None,
        "--adaptive-depth": args.adaptive_depth,
        "--budget-ms": args.budget_ms is not None,
        "--prior-reuse": args.prior_reuse is not None,
        "--scene-threshold": args.scene_threshold is not None,
        "--simulate-slowdown-ms": args.simulate_slowdown_ms != 0.0,
    }
    return [flag for flag, on in given.items() if on]


class _FrameProgress:
    """progress(done, total) for one frame: a bar that shows only once the frame has run for
    PROGRESS_DELAY_S (quick frames stay silent)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.start = time.monotonic()
        self.bar = tqdm(desc=label, unit="step", delay=PROGRESS_DELAY_S, leave=False, disable=not enabled)

    def __call__(self, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.update(done - self.bar.n)
        if done >= total and time.monotonic() - self.start >= PROGRESS_DELAY_S:
            self.bar.refresh()  # the last step shows even inside tqdm's minimum redraw interval

    def close(self) -> None:
        self.bar.close()


def _restore_file(pipeline: Pipeline, source: Path, target: Path, args: argparse.Namespace, said: set) -> TilePlan:
    """Read, check the output can hold it, restore and write one image; the plan it ran with."""

    def say_plan(width: int, height: int, plan: TilePlan) -> None:
        line = describe_plan(plan, width, height, args.max_memory)
        if line and not args.quiet and (width, height) not in said:
            said.add((width, height))  # once per size in a folder, not per image
            tqdm.write(f"{source.name}: {line}", file=sys.stderr)

    progress = _FrameProgress(source.name, not args.quiet)
    try:
        return restore_image_file(pipeline, source, target, on_plan=say_plan, progress=progress)
    finally:
        progress.close()


def _open_pipeline(args: argparse.Namespace) -> Pipeline:
    return cli_restore.open_pipeline(args, DEFAULT_ARTIFACTS)  # read here: tests point it elsewhere


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cli.setup_logging(args.verbose)
    video_flags = _video_flags(args)
    if is_video_input(args.input, args.output, bool(video_flags)):
        if args.output is None and not args.preview:
            parser.error("a video needs -o/--output (a video file, a folder or a pattern), or --preview")
        return _main_video(args)
    if args.output is None:
        parser.error("the following arguments are required: -o/--output")
    if video_flags:
        return report_error(
            InputError(f"{args.input} is an image; {', '.join(video_flags)}: these flags apply to videos only"),
            args.verbose,
        )
    return _main_images(args)


def _main_images(args: argparse.Namespace) -> int:
    source_path = Path(args.input)
    try:
        jobs = image_jobs(source_path, args.output, args.overwrite)
        pipeline = _open_pipeline(args)
    except UnfoldError as exc:
        return report_error(exc, args.verbose)

    failed: list[str] = []
    folder = source_path.is_dir()
    said: set[tuple[int, int]] = set()
    with pipeline:
        if folder:
            try:
                make_output_folder(args.output)
            except InputError as exc:
                return report_error(exc, args.verbose)
        bar = tqdm(jobs, desc="restore", unit="image", disable=args.quiet or len(jobs) == 1)
        for source, target in bar:
            start = time.perf_counter()
            try:
                plan = _restore_file(pipeline, source, target, args, said)
            except IMAGE_ERRORS as exc:
                if args.verbose:
                    traceback.print_exc()
                message = str(exc) if str(source) in str(exc) or str(target) in str(exc) else f"{source}: {exc}"
                failed.append(message)
                tqdm.write(f"error: {message}", file=sys.stderr)
                continue
            if not folder and not args.quiet:
                how = f"in {plan.tile}x{plan.tile} tiles" if plan.tile else "whole"
                print(f"restored {source} -> {target} ({how}, {time.perf_counter() - start:.1f} s)", file=sys.stderr)
    if not args.quiet and folder:
        print(f"restored {len(jobs) - len(failed)} of {len(jobs)} images into {args.output}", file=sys.stderr)
    if failed:
        if folder:
            print(f"error: {len(failed)} of {len(jobs)} images failed (listed above)", file=sys.stderr)
        return 1
    return 0


def _check_video_args(args: argparse.Namespace) -> None:
    if args.queue_size < 1:
        raise InputError(f"--queue-size must be >= 1, got {args.queue_size}")
    if not args.simulate_slowdown_ms >= 0:
        raise InputError(f"--simulate-slowdown-ms must be >= 0, got {args.simulate_slowdown_ms}")
    if args.budget_ms is not None and not args.adaptive_depth:
        raise InputError("--budget-ms applies to --adaptive-depth only")
    if args.scene_threshold is not None and args.prior_reuse is None:
        raise InputError("--scene-threshold applies to --prior-reuse only")


def _main_video(args: argparse.Namespace) -> int:
    try:
        _check_video_args(args)
        pipeline = _open_pipeline(args)
    except UnfoldError as exc:
        return report_error(exc, args.verbose)
    with pipeline:
        try:
            with ExitStack() as on_error:  # until run_video owns the source and sinks
                source = open_source(args.input, fps=args.fps)
                on_error.callback(source.close)
                depth = None
                if args.adaptive_depth:
                    budget_ms = args.budget_ms if args.budget_ms is not None else 1000.0 / source.fps
                    depth = make_depth_controller(pipeline, budget_ms / 1000.0)
                cache = None
                if args.prior_reuse is not None:
                    cache = make_prior_cache(args.prior_reuse, args.scene_threshold)
                restorer = FrameRestorer(pipeline, depth=depth, prior_cache=cache)
                sinks = make_sinks(
                    args.output, source, args.input, args.side_by_side, args.preview, overwrite=args.overwrite
                )
                line = describe_plan(pipeline.tile_plan(source.size[1], source.size[0]), *source.size, args.max_memory)
                if line and not args.quiet:
                    print(f"{args.input}: {line}", file=sys.stderr)
                on_error.pop_all()
        except UnfoldError as exc:
            return report_error(exc, args.verbose)
        slowdown_s = args.simulate_slowdown_ms / 1000.0
        process = DelayedProcess(restorer, slowdown_s) if slowdown_s > 0 else restorer
        try:
            summary = run_video(
                source,
                process,
                sinks,
                realtime=args.realtime,
                queue_size=args.queue_size,
                controller=restorer.controller,
                progress=not args.quiet,
            )
        except UnfoldError as exc:
            return report_error(exc, args.verbose)
    return _report_video(args, summary, restorer)


def _report_video(args: argparse.Namespace, summary: VideoSummary, restorer: FrameRestorer) -> int:
    """Print the summary; the exit status (see the module docstring)."""
    if not args.quiet:
        where = f" into {args.output}" if args.output is not None and summary.frames_out else ""
        print(f"restored {summary.frames_out} frames{where}", file=sys.stderr)
        print(summary.format(), file=sys.stderr)
        for line in restorer.summary_lines():
            print(line, file=sys.stderr)
    if summary.end_reason == INTERRUPTED:
        return EXIT_INTERRUPTED
    if summary.decode_errors:
        print(
            f"error: {summary.decode_errors} frame(s) of {args.input} could not be read (cut off or damaged); "
            f"the {summary.frames_out} restored frames were kept",
            file=sys.stderr,
        )
        return 1
    if summary.end_reason == SOURCE_LOST:
        print(
            f"error: {args.input}: the live source was lost; the {summary.frames_out} restored frames were kept",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
