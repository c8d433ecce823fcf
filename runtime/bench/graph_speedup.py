"""Whole-frame CUDA graphs against plain launches, in one run on one GPU.

    python -m runtime.bench.graph_speedup --artifacts DIR [--backend torch] [--size 1280x720]

Opens the pipeline twice on the same backend (`cuda_graphs=False`, then `True`), restores the
same frame `--warmup` times untimed and `--iters` times timed with each, alternating the two
every frame so that a change in the GPU's clocks or load falls on both, and prints the mean and
p50 per-frame latency of each and the speed-up (plain / graphs). The frame is 8-bit BGR, restored
as the video loop and image restoration restore theirs (`Pipeline.restore_bgr8`: bytes in and
out, converted on the device where the native frame kernels are built; the output says where).
The graph path's first frame captures the graph, so it is part of the warm-up. Needs a CUDA
device; the torch backend is the default because the device tool's machines have no TensorRT.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from runtime import cli
from runtime.bench.measure import synthetic_frame
from runtime.bench.stats import summarize
from runtime.errors import InputError
from runtime.pipeline import Pipeline
from runtime.pixels import rgb_float_to_bgr8


def build_parser() -> argparse.ArgumentParser:
    p = cli.tool_parser("graph_speedup", __doc__)
    cli.add_artifacts_argument(p)
    p.add_argument("--backend", default="torch", choices=["torch", "tensorrt"], help="CUDA backend (default: torch)")
    p.add_argument("--precision", default="fp32", help="precision to run (default: fp32)")
    cli.add_frame_size_argument(p, "--size", (720, 1280), "frame size")
    p.add_argument("--warmup", type=int, default=3, help="untimed frames per mode (default: 3)")
    p.add_argument("--iters", type=int, default=20, help="timed frames per mode (default: 20)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here as JSON")
    return p


def measure(artifacts: Path, backend: str, precision: str, size: tuple[int, int], warmup: int, iters: int) -> dict:
    if warmup < 1 or iters < 1:
        raise InputError("need --warmup >= 1 (the graph is captured then) and --iters >= 1")
    frame = rgb_float_to_bgr8(synthetic_frame(*size))
    modes = {"plain": False, "graphs": True}
    opened = {
        mode: Pipeline.from_manifest(artifacts, backend=backend, device="cuda", precision=precision, cuda_graphs=on)
        for mode, on in modes.items()
    }
    try:
        for _ in range(warmup):
            for pipeline in opened.values():
                pipeline.restore_bgr8(frame)
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(iters):
            for mode, pipeline in opened.items():
                start = time.perf_counter()
                pipeline.restore_bgr8(frame)  # returns the frame on the host: the device work is done
                times[mode].append(time.perf_counter() - start)
        launches = {mode: pipeline.launches for mode, pipeline in opened.items()}
        frame_work = opened["graphs"].frame_work
    finally:
        for pipeline in opened.values():
            pipeline.close()
    stats = {mode: summarize(t) for mode, t in times.items()}
    return {
        "backend": backend,
        "precision": precision,
        "frame": f"{size[1]}x{size[0]}",
        "launches": launches,
        "frame_work": frame_work,
        "plain_ms": stats["plain"],
        "graphs_ms": stats["graphs"],
        "speedup": stats["plain"]["mean_ms"] / stats["graphs"]["mean_ms"],
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = measure(args.artifacts, args.backend, args.precision, args.size, args.warmup, args.iters)
    for mode in ("plain", "graphs"):
        s = result[f"{mode}_ms"]
        print(f"{mode:7s} {result['frame']} {result['backend']} {result['precision']}: mean {s['mean_ms']:.2f} ms, "
              f"p50 {s['p50_ms']:.2f} ms ({result['launches'][mode]})")  # fmt: skip
    print(f"speed-up of CUDA graphs: {result['speedup']:.3f}x (frames converted by {result['frame_work']})")
    if args.json is not None:
        cli.write_json_report(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
