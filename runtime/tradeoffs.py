"""Measure the two speed-for-quality knobs of the pipeline on real data: adaptive depth and prior reuse.

    python runtime/tradeoffs.py                              # artifacts/edge, ONNX Runtime, CPU
    python runtime/tradeoffs.py --frames 20 --images 8 --json runs/tradeoffs.json

Prints two tables (and writes them as JSON with --json):

1. Adaptive depth: for K = 1 .. K_max stages, PSNR against the ground truth and the time per
   frame, on real photographs (CBSD68) and on the frames of a real clip (Vid4 "walk",
   centre-cropped to --size). Every stage output x_K is an image, so a real-time loop can run
   fewer stages when it falls behind (runtime/video/adaptive.py).
2. Prior reuse, on the noisy clip at K_max: for each N in --reuse, the prior z of a frame is
   reused for the next N frames unless the scene changes (runtime/prior_cache.py; N = 0 is
   off). Reported: time per frame, the prior-graph runs, PSNR against the clean frames, and
   two temporal measures:
   - flicker: mean absolute frame-to-frame difference of the outputs minus that of the clean
     frames, in 8-bit levels. The clean clip's own motion cancels out; what is left is change
     that the restoration adds (noise left over, a prior that jumps). Lower is better, 0 is as
     steady as the clean video (negative: smoother than it, e.g. detail lost).
   - temporal PSNR (tPSNR): PSNR of the output's frame differences (x_t - x_{t-1}) against the
     clean frame differences, pooled over the clip, data range 1. Higher is better.

Degradation: additive Gaussian noise of --sigma (in 8-bit levels), by the rule of
`model.degradations.apply_case("noise<sigma>", seed=i)` (re-implemented here with numpy, since
runtime/ may not import model/): generator `numpy.random.default_rng((i, crc32("noise<sigma>")))`,
float32 standard normals, then clipped and rounded to 8-bit levels; i is the image index in
sorted order, or the frame index. So K_max on CBSD68 scores what `model/evaluate.py --cases
noise25` scores.

Timings are wall-clock per frame around `Pipeline.restore`, after one warm-up frame per frame
size; they are only meaningful on an otherwise idle machine (the JSON records the load average).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from runtime import cli
from runtime.backends.select import BACKEND_NAMES
from runtime.bench.environment import describe_environment
from runtime.bench.report import text_table
from runtime.errors import InputError, UnfoldError, report_error
from runtime.image_io import centre_crop, list_images, read_rgb8
from runtime.manifest import REQUESTED_PRECISIONS
from runtime.metrics import psnr
from runtime.pipeline import Pipeline
from runtime.prior_cache import DEFAULT_SCENE_THRESHOLD, PriorCache

DEFAULT_IMAGES = cli.DEFAULT_DATA / "val" / "CBSD68"
DEFAULT_CLIP = cli.DEFAULT_DATA / "video" / "vid4_walk"


# --------------------------------------------------------------------------- data


def add_noise(clean: np.ndarray, sigma: int, seed: int) -> np.ndarray:
    """The `noise<sigma>` evaluation case of model.degradations, for one float32 HxWx3 image in [0, 1]."""
    rng = np.random.default_rng((seed, zlib.crc32(f"noise{sigma}".encode("ascii"))))
    noisy = clean + np.float32(sigma / 255.0) * rng.standard_normal(clean.shape, dtype=np.float32)
    return np.clip(np.rint(noisy * np.float32(255.0)), 0, 255).astype(np.float32) / np.float32(255.0)


def load_images(folder: Path, count: int | None) -> list[np.ndarray]:
    paths = list_images(folder)[:count]
    if not paths:
        raise InputError(f"{folder}: no images found")
    return [read_rgb8(p).astype(np.float32) / np.float32(255.0) for p in paths]


def load_clip(folder: Path, frames: int | None, size: tuple[int, int]) -> np.ndarray:
    """The clip's frames in file-name order, centre-cropped to size (h, w): (N, h, w, 3) float32."""
    paths = list_images(folder)[:frames]
    if len(paths) < 2:
        raise InputError(f"{folder}: a clip needs at least 2 frames, found {len(paths)}")
    crops = [centre_crop(read_rgb8(p), *size) for p in paths]
    return np.stack(crops).astype(np.float32) / np.float32(255.0)


# --------------------------------------------------------------------------- measures


def frame_difference(frames: np.ndarray) -> float:
    """Mean absolute difference between consecutive frames (N, H, W, 3), in 8-bit levels."""
    return 255.0 * float(np.mean([np.abs(b - a).mean() for a, b in zip(frames[:-1], frames[1:], strict=True)]))


def flicker(frames: np.ndarray, clean: np.ndarray) -> float:
    """Frame-to-frame change beyond the clean clip's own, in 8-bit levels (module docstring)."""
    return frame_difference(frames) - frame_difference(clean)


def temporal_psnr(frames: np.ndarray, clean: np.ndarray) -> float:
    """PSNR (data range 1) of the frame differences against the clean frame differences, pooled."""
    errors = [
        np.mean(((b - a).astype(np.float64) - (d - c).astype(np.float64)) ** 2)
        for a, b, c, d in zip(frames[:-1], frames[1:], clean[:-1], clean[1:], strict=True)
    ]
    mse = float(np.mean(errors))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


class Timer:
    """Restores frames and times each call, after one untimed warm-up per frame size."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._warm: set[tuple[int, ...]] = set()

    def restore(self, frame: np.ndarray, stages: int, cache: PriorCache | None = None) -> tuple[np.ndarray, float]:
        if frame.shape not in self._warm:
            self.pipeline.restore(frame, stages=stages)  # first runs allocate and pick kernels
            self._warm.add(frame.shape)
        start = time.perf_counter()
        out = self.pipeline.restore(frame, stages=stages, prior_cache=cache)
        return out, time.perf_counter() - start


# --------------------------------------------------------------------------- the two tables


def depth_rows(
    timer: Timer, sets: dict[str, tuple[list[np.ndarray], list[np.ndarray]]], progress: bool
) -> list[dict[str, Any]]:
    """Per stage count K and data set: mean PSNR of x_K and of the input, mean ms per frame."""
    max_stages = timer.pipeline.stage_count
    total = sum(len(clean) for clean, _ in sets.values()) * max_stages
    rows = []
    with tqdm(total=total, desc="depth", unit="frame", disable=not progress, dynamic_ncols=True) as bar:
        for name, (clean, noisy) in sets.items():
            scores: dict[int, list[float]] = {k: [] for k in range(1, max_stages + 1)}
            times: dict[int, list[float]] = {k: [] for k in range(1, max_stages + 1)}
            for gt, y in zip(clean, noisy, strict=True):
                for k in scores:
                    out, seconds = timer.restore(y, k)
                    scores[k].append(psnr(out, gt))
                    times[k].append(seconds)
                    bar.update()
            input_psnr = float(np.mean([psnr(y, gt) for gt, y in zip(clean, noisy, strict=True)]))
            full_ms = 1000.0 * float(np.mean(times[max_stages]))
            for k in scores:
                ms = 1000.0 * float(np.mean(times[k]))
                rows.append(
                    {
                        "data": name,
                        "frames": len(clean),
                        "stages": k,
                        "psnr_db": float(np.mean(scores[k])),
                        "input_psnr_db": input_psnr,
                        "ms_per_frame": ms,
                        "speedup_vs_all_stages": full_ms / ms,
                    }
                )
    return rows


def reuse_rows(
    timer: Timer, clean: np.ndarray, noisy: np.ndarray, reuse: Sequence[int], threshold: float, progress: bool
) -> list[dict[str, Any]]:
    """Per reuse length N (0: off): ms per frame, prior-graph runs and time, PSNR, flicker, tPSNR."""
    backend = timer.pipeline.backend
    k = timer.pipeline.stage_count
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(reuse) * len(noisy), desc="reuse", unit="frame", disable=not progress) as bar:
        for n in reuse:
            cache = PriorCache(n, threshold) if n > 0 else None
            outputs, times = [], []
            backend.reset_timings()
            backend.record_timings = True
            try:
                for frame in noisy:
                    out, seconds = timer.restore(frame, k, cache)
                    outputs.append(out)
                    times.append(seconds)
                    bar.update()
                prior_s = backend.timings.get("prior", [])
            finally:
                backend.record_timings = False
            restored = np.stack(outputs)
            rows.append(
                {
                    "reuse_frames": n,
                    "frames": len(noisy),
                    "stages": k,
                    "ms_per_frame": 1000.0 * float(np.mean(times)),
                    "prior_runs": len(prior_s),
                    "prior_ms_per_frame": 1000.0 * sum(prior_s) / len(noisy),
                    "psnr_db": float(np.mean([psnr(o, c) for o, c in zip(restored, clean, strict=True)])),
                    "flicker_levels": flicker(restored, clean),
                    "temporal_psnr_db": temporal_psnr(restored, clean),
                    "cache": cache.to_dict() if cache is not None else None,
                }
            )
    base = rows[0]["ms_per_frame"] if rows and rows[0]["reuse_frames"] == 0 else None
    for row in rows:
        row["speedup_vs_no_reuse"] = None if base is None else base / row["ms_per_frame"]
    return rows


# --------------------------------------------------------------------------- report


def format_report(result: dict[str, Any]) -> str:
    env, s = result["environment"], result["settings"]
    lines = [
        f"{s['backend']}, {s['threads'] or 'default'} threads, load average {env['load_average_1min']:.2f} "
        f"on {env['cpu_cores']} cores ({env['cpu']}); noise sigma {s['sigma']}",
        "",
        "Adaptive depth: x_K after the first K stages",
    ]
    rows = [
        [
            f"{r['data']} ({r['frames']})",
            str(r["stages"]),
            f"{r['psnr_db']:.2f}",
            f"{r['psnr_db'] - r['input_psnr_db']:+.2f}",
            f"{r['ms_per_frame']:.1f}",
            f"{r['speedup_vs_all_stages']:.2f}x",
        ]
        for r in result["depth"]
    ]
    lines += text_table(["data (frames)", "K", "PSNR dB", "vs input", "ms/frame", "speed-up"], rows)
    if result["reuse"]:
        first = result["reuse"][0]
        lines += [
            "",
            f"Prior reuse on the noisy clip ({first['frames']} frames, K = {first['stages']}; "
            f"input PSNR {result['clip_input_psnr_db']:.2f} dB, input flicker {result['clip_input_flicker']:.2f})",
        ]
        rows = []
        base = result["reuse"][0] if first["reuse_frames"] == 0 else None
        for r in result["reuse"]:
            cache = r["cache"]
            reused = "off" if cache is None else f"{cache['hits']}/{cache['misses']}/{cache['scene_cuts']}"
            speedup = "" if r["speedup_vs_no_reuse"] is None else f"{r['speedup_vs_no_reuse']:.3f}x"
            rows.append(
                [
                    str(r["reuse_frames"]),
                    f"{r['ms_per_frame']:.1f}",
                    speedup,
                    f"{r['prior_runs']} ({r['prior_ms_per_frame']:.1f} ms)",
                    reused,
                    f"{r['psnr_db']:.3f}",
                    "" if base is None else f"{r['psnr_db'] - base['psnr_db']:+.5f}",
                    f"{r['flicker_levels']:+.4f}",
                    f"{r['temporal_psnr_db']:.4f}",
                ]
            )
        header = ["N", "ms/frame", "speed-up", "prior runs (ms/frame)", "hit/miss/cut", "PSNR dB", "vs N=0", "flicker"]
        header.append("tPSNR")
        lines += text_table(header, rows)
        lines.append("flicker: output frame-to-frame change minus the clean clip's, 8-bit levels; tPSNR in dB")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def _reuse_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(dict.fromkeys(int(part) for part in text.split(",") if part.strip()))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected frame counts such as 0,2,4,8, got {text!r}") from exc
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected frame counts >= 0 such as 0,2,4,8, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = cli.tool_parser("python runtime/tradeoffs.py", __doc__)
    cli.add_artifacts_argument(parser)
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="onnxruntime", help="backend to measure")
    parser.add_argument("--precision", choices=REQUESTED_PRECISIONS, default="auto", help="graph precision")
    cli.add_threads_argument(parser, "backend threads (default: the backend's, one per core)")
    cli.add_backend_option_argument(parser)
    parser.add_argument(
        "--images", type=Path, default=DEFAULT_IMAGES, help="folder of clean photographs for the depth table"
    )
    parser.add_argument("--image-count", type=cli.positive_int, help="use only the first N images (default: all)")
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="folder of the clean clip's frames, in order")
    parser.add_argument(
        "--frames", type=cli.positive_int, help="use only the first N frames of the clip (default: all)"
    )
    cli.add_frame_size_argument(parser, "--size", (240, 320), "centre crop of the clip's frames")
    parser.add_argument("--sigma", type=int, default=25, help="Gaussian noise sigma in 8-bit levels (default 25)")
    parser.add_argument(
        "--reuse",
        type=_reuse_list,
        default=(0, 2, 4, 8),
        metavar="N,N,...",
        help="prior reuse lengths to compare, 0 = no reuse (default 0,2,4,8)",
    )
    parser.add_argument(
        "--scene-threshold",
        type=float,
        default=DEFAULT_SCENE_THRESHOLD,
        help=f"scene-change threshold of the prior cache (default {DEFAULT_SCENE_THRESHOLD})",
    )
    parser.add_argument("--json", type=Path, help="also write the settings, environment and tables to this JSON file")
    cli.add_verbosity_arguments(parser, verbose="log more, and print tracebacks on errors")
    return parser


def measure(args: argparse.Namespace) -> dict[str, Any]:
    if args.sigma < 0:
        raise InputError(f"--sigma must be >= 0, got {args.sigma}")
    if not args.scene_threshold > 0:
        raise InputError(f"--scene-threshold must be > 0, got {args.scene_threshold}")
    cli.require_export(args.artifacts)
    images = load_images(args.images, args.image_count)
    clip = load_clip(args.clip, args.frames, args.size)
    noisy_images = [add_noise(img, args.sigma, i) for i, img in enumerate(images)]
    noisy_clip = np.stack([add_noise(f, args.sigma, i) for i, f in enumerate(clip)])
    progress = not args.quiet
    with Pipeline.from_manifest(
        args.artifacts, args.backend, "cpu", args.precision, args.threads, backend_options=args.backend_options
    ) as pipeline:
        timer = Timer(pipeline)
        sets = {args.images.name: (images, noisy_images), args.clip.name: (list(clip), list(noisy_clip))}
        depth = depth_rows(timer, sets, progress)
        reuse = reuse_rows(timer, clip, noisy_clip, args.reuse, args.scene_threshold, progress)
        backend = pipeline.backend.describe()
    return {
        "settings": {
            "artifacts": str(args.artifacts),
            "backend": backend,
            "threads": args.threads,
            "images": str(args.images),
            "clip": str(args.clip),
            "clip_size": {"width": args.size[1], "height": args.size[0]},
            "sigma": args.sigma,
            "scene_threshold": args.scene_threshold,
            **cli.options_setting(args.backend_options),
        },
        "environment": describe_environment(args.threads, uses_cuda=False),
        "clip_input_psnr_db": float(np.mean([psnr(y, c) for y, c in zip(noisy_clip, clip, strict=True)])),
        "clip_input_flicker": flicker(noisy_clip, clip),
        "depth": depth,
        "reuse": reuse,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.verbose)
    try:
        result = measure(args)
        print(format_report(result))
        if args.json:
            cli.write_json_report(args.json, result)
    except UnfoldError as exc:
        return report_error(exc, args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
