"""Video throughput against pure inference throughput, in one run.

    python runtime/video_throughput.py                    # edge, ONNX Runtime, Vid4 walk at 320x240
    python runtime/video_throughput.py --frames 8 --json throughput.json

The clip (a folder of frames or a video file; default the real Vid4 'walk' clip in
../shared/data/video/) is centre-cropped to --size and encoded to a temporary video file
(--container). Then, on the same decoded frames:

- pure inference: the 8-bit frames decoded beforehand, restored one after the other as the video
  loop restores them (`FrameRestorer`: `pipeline.restore_bgr8`, so on a CUDA backend with the
  native frame kernels the colour conversion runs on the device);
- video: that file in, restored, a video file out, through the three-thread loop
  (`run_video`, the same `FrameRestorer`) with decoding and encoding included, timed from opening
  the input to the finished output file.

Both come after --warmup frames of warm-up, and the ratio video fps / inference fps is printed
(the goal is at least 0.9: the loop should hide decoding and encoding behind inference). With
--rounds R the two alternate R times and the medians are reported, so that a change in machine
load hits both alike. Decoding alone and encoding alone are timed too, to show what the loop
has to hide. The figures depend on what else runs on the machine: measure on an idle one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from runtime import cli
from runtime.backends.select import BACKEND_NAMES
from runtime.bench.environment import describe_environment
from runtime.bench.report import environment_line
from runtime.bench.stats import summarize
from runtime.errors import InputError, UnfoldError, report_error
from runtime.image_io import centre_crop
from runtime.manifest import REQUESTED_PRECISIONS
from runtime.pipeline import Pipeline
from runtime.video.loop import run_video
from runtime.video.restore_video import FrameRestorer
from runtime.video.sinks import FOURCC_BY_EXTENSION, VideoFileSink
from runtime.video.sources import Frame, open_source

DEFAULT_CLIP = cli.DEFAULT_DATA / "video" / "vid4_walk"
GOAL_RATIO = 0.9


def build_parser() -> argparse.ArgumentParser:
    p = cli.tool_parser("video_throughput.py", __doc__)
    cli.add_artifacts_argument(p)
    p.add_argument(
        "--clip",
        default=str(DEFAULT_CLIP),
        metavar="SOURCE",
        help="the clip: a folder of frames, a frame pattern or a video file (default: ../shared/data/video/vid4_walk)",
    )
    cli.add_frame_size_argument(p, "--size", (240, 320), "centre crop of every frame")
    p.add_argument("--frames", type=int, metavar="N", help="use the first N frames of the clip (default: all)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of the encoded clip (default: 25)")
    p.add_argument(
        "--container",
        choices=sorted(FOURCC_BY_EXTENSION),
        default=".mp4",
        help="container (and so codec) of the input and output files (default: .mp4, mp4v)",
    )
    p.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        default="onnxruntime",
        help="backend for the graphs (default: onnxruntime)",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device for the backend (default: cpu)")
    p.add_argument("--precision", choices=REQUESTED_PRECISIONS, default="auto", help="graph precision (default: auto)")
    cli.add_threads_argument(p)
    cli.add_backend_option_argument(p)
    p.add_argument("--warmup", type=int, default=2, metavar="N", help="warm-up frames, not timed (default: 2)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="R",
        help="alternate inference and video R times and report the medians (default: 1)",
    )
    p.add_argument("--queue-size", type=int, default=4, metavar="N", help="queue size of the video loop (default: 4)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures and the environment as JSON")
    cli.add_verbosity_arguments(p)
    return p


def read_clip(spec: str, height: int, width: int, frames: int | None) -> list[np.ndarray]:
    """The clip's first `frames` frames (all when None), centre-cropped, float32 RGB."""
    with open_source(spec) as source:
        cropped = []
        for frame in source:
            cropped.append(centre_crop(frame.rgb, height, width))
            if frames is not None and len(cropped) == frames:
                break
    if frames is not None and len(cropped) < frames:
        raise InputError(f"{spec}: has {len(cropped)} frames, fewer than --frames {frames}")
    return cropped


def encode(frames: list[np.ndarray], path: Path, fps: float) -> float:
    """Write `frames` to the video file `path`; the seconds it took."""
    started = time.perf_counter()
    with VideoFileSink(path, fps, (frames[0].shape[1], frames[0].shape[0])) as sink:
        for rgb in frames:
            sink.write(rgb, rgb)
    return time.perf_counter() - started


def decode(path: Path) -> tuple[list[Frame], float]:
    """Every frame of the video file `path` as the source delivers it (8-bit BGR), and the seconds
    decoding took."""
    started = time.perf_counter()
    with open_source(path) as source:
        frames = list(source)
    return frames, time.perf_counter() - started


def restore_as_the_loop_does(restorer: FrameRestorer, frame: Frame) -> np.ndarray:
    """`frame` restored as `run_video` restores it: from its 8-bit BGR pixels where it has them."""
    if frame.bgr8 is not None:
        return restorer.process_bgr8(frame.bgr8, frame.scale_rule)
    return restorer(frame.rgb)


def time_inference(pipeline: Pipeline, frames: list[Frame], progress: bool) -> dict[str, Any]:
    """Pure inference: the frames, already in memory, restored as the video loop restores them."""
    restorer = FrameRestorer(pipeline)
    per_frame = []
    started = time.perf_counter()
    for frame in tqdm(frames, desc="inference", unit="frame", disable=not progress, leave=False):
        t0 = time.perf_counter()
        restore_as_the_loop_does(restorer, frame)
        per_frame.append(time.perf_counter() - t0)
    wall = time.perf_counter() - started
    return {"frames": len(frames), "seconds": wall, "fps": len(frames) / wall, "latency": summarize(per_frame)}


def time_video(
    pipeline: Pipeline, source_path: Path, out_path: Path, queue_size: int, progress: bool
) -> dict[str, Any]:
    """File in, restored, file out through `run_video`: opening to the finished output file."""
    started = time.perf_counter()
    source = open_source(source_path)
    sink = VideoFileSink(out_path, source.fps, source.size)
    summary = run_video(source, FrameRestorer(pipeline), [sink], queue_size=queue_size, progress=progress)
    wall = time.perf_counter() - started
    if summary.frames_out != summary.frames_in or summary.decode_errors:
        raise InputError(f"{source_path}: the video run restored {summary.frames_out} of {summary.frames_in} frames")
    written, _ = decode(out_path)
    if len(written) != summary.frames_out:
        raise InputError(f"{out_path}: holds {len(written)} frames, {summary.frames_out} were written")
    return {
        "frames": summary.frames_out,
        "seconds": wall,
        "fps": summary.frames_out / wall,
        "process_ms_mean": summary.process_ms_mean,
        "latency_p50_ms": summary.latency_p50_ms,
        "latency_p99_ms": summary.latency_p99_ms,
    }


def measure(args: argparse.Namespace, pipeline: Pipeline, work: Path) -> dict[str, Any]:
    height, width = args.size
    clip = read_clip(args.clip, height, width, args.frames)
    source_path = work / f"input{args.container}"
    encode_s = encode(clip, source_path, args.fps)
    decoded, decode_s = decode(source_path)
    if len(decoded) != len(clip):
        raise InputError(f"{source_path}: {len(decoded)} frames decoded, {len(clip)} encoded")
    for _ in range(args.warmup):
        restore_as_the_loop_does(FrameRestorer(pipeline), decoded[0])
    progress = not args.quiet
    inference_runs, video_runs = [], []
    for round_index in range(args.rounds):
        inference_runs.append(time_inference(pipeline, decoded, progress))
        out_path = work / f"restored{round_index}{args.container}"
        video_runs.append(time_video(pipeline, source_path, out_path, args.queue_size, progress))
        out_path.unlink()
    inference_fps = statistics.median(r["fps"] for r in inference_runs)
    video_fps = statistics.median(r["fps"] for r in video_runs)
    n = len(decoded)
    return {
        "settings": {
            "artifacts": str(args.artifacts),
            "model": pipeline.manifest.name,
            "clip": args.clip,
            "width": width,
            "height": height,
            "frames": n,
            "fps": args.fps,
            "container": args.container,
            "fourcc": FOURCC_BY_EXTENSION[args.container],
            "backend": pipeline.backend.name,
            "device": pipeline.backend.device,
            "precision": args.precision,
            "frame_work": pipeline.frame_work,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "queue_size": args.queue_size,
            **cli.options_setting(args.backend_options),
        },
        "environment": describe_environment(args.threads, uses_cuda=pipeline.backend.device == "cuda"),
        "encode_alone": {"frames": n, "seconds": encode_s, "fps": n / encode_s},
        "decode_alone": {"frames": n, "seconds": decode_s, "fps": n / decode_s},
        "inference": inference_runs,
        "video": video_runs,
        "inference_fps": inference_fps,
        "video_fps": video_fps,
        "ratio": video_fps / inference_fps,
        "goal_ratio": GOAL_RATIO,
    }


def format_table(result: dict[str, Any]) -> str:
    s = result["settings"]
    rows = [("encode alone", result["encode_alone"]), ("decode alone", result["decode_alone"])]
    rows += [(f"pure inference{f' #{i + 1}' if s['rounds'] > 1 else ''}", r) for i, r in enumerate(result["inference"])]
    rows += [(f"video file->file{f' #{i + 1}' if s['rounds'] > 1 else ''}", r) for i, r in enumerate(result["video"])]
    lines = [
        environment_line(result["environment"]),
        f"{s['model']}, {s['backend']}/{s['device']} {s['precision']}, {s['frames']} frames of {s['clip']} "
        f"centre-cropped to {s['width']}x{s['height']}, {s['fourcc']} {s['container']}, {s['warmup']} warm-up frames",
        f"{'':20}{'frames':>8}{'seconds':>10}{'fps':>10}{'ms/frame':>10}",
    ]
    for label, r in rows:
        lines.append(f"{label:20}{r['frames']:>8}{r['seconds']:>10.2f}{r['fps']:>10.2f}{1000 / r['fps']:>10.1f}")
    verdict = "met" if result["ratio"] >= result["goal_ratio"] else "MISSED"
    lines.append(
        f"video / inference throughput: {result['video_fps']:.2f} / {result['inference_fps']:.2f} fps = "
        f"{result['ratio']:.3f} (goal >= {result['goal_ratio']}: {verdict})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.verbose)
    try:
        for flag, value, least in (
            ("--frames", args.frames, 1),
            ("--warmup", args.warmup, 0),
            ("--rounds", args.rounds, 1),
        ):
            if value is not None and value < least:
                raise InputError(f"{flag} must be >= {least}, got {value}")
        cli.require_export(args.artifacts)
        with (
            Pipeline.from_manifest(
                args.artifacts,
                backend=args.backend,
                device=args.device,
                precision=args.precision,
                threads=args.threads,
                backend_options=args.backend_options,
            ) as pipeline,
            tempfile.TemporaryDirectory(prefix="video_throughput_") as work,
        ):
            result = measure(args, pipeline, Path(work))
        print(format_table(result))
        if args.json is not None:
            cli.write_json_report(args.json, result)
            print(f"wrote {args.json}")
    except UnfoldError as exc:
        return report_error(exc, args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
