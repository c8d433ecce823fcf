"""Time the per-frame conversions: native frame kernels against the NumPy/OpenCV path.

    python runtime/frame_kernels_bench.py                       # 1920x1080, FP16, multiple 8
    python runtime/frame_kernels_bench.py --size 1280x720 --dtype fp32 --repeats 50

For one 8-bit BGR frame, prints milliseconds per frame (mean and median over the repeats, after a
warm-up) of the two conversions the TensorRT video path needs: BGR -> padded planar RGB
(to_planar) and planar RGB -> cropped BGR (to_frame), each through the NumPy/OpenCV path the
runtime uses, the native C reference (one CPU thread) and, where a CUDA device is usable, the CUDA
kernels (CUDA-event times of the kernel alone, and of the 8-bit upload/download of the frame from
and to pageable host memory). Without CUDA it says so and times the CPU paths only. Build the
library first: cmake -S . -B build && cmake --build build -j2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from runtime import cli
from runtime import frame_kernels as fk
from runtime.cli_sizes import frame_size
from runtime.errors import InputError, UnfoldError

_DTYPES = {"fp32": np.float32, "fp16": np.float16}


def build_parser() -> argparse.ArgumentParser:
    p = cli.tool_parser("frame_kernels_bench.py", __doc__)
    p.add_argument("--size", type=frame_size, default=(1080, 1920), help="frame size WIDTHxHEIGHT (default: 1920x1080)")
    p.add_argument(
        "--multiple", type=int, default=8, help="pad the planar tensor up to a multiple of this (default: 8)"
    )
    p.add_argument(
        "--dtype", choices=sorted(_DTYPES), default="fp16", help="planar tensor element type (default: fp16)"
    )
    p.add_argument("--repeats", type=int, default=20, help="timed runs of each conversion (default: 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs before the timed ones (default: 3)")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    return p


def _time_ms(work: Callable[[], object], repeats: int, warmup: int) -> tuple[float, float]:
    """Mean and median wall milliseconds of `work` after `warmup` untimed calls."""
    for _ in range(warmup):
        work()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        samples.append((time.perf_counter() - start) * 1000.0)
    return float(np.mean(samples)), float(np.median(samples))


def _rows(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(conversion, path, time text) for every path that can run here."""
    height, width = args.size
    padded = (-(-height // args.multiple) * args.multiple, -(-width // args.multiple) * args.multiple)
    dtype = _DTYPES[args.dtype]
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    planar = rng.uniform(0.0, 1.0, size=(3, *padded)).astype(dtype)
    kernels = fk.load_frame_kernels()

    jobs: list[tuple[str, str, Callable[[], object]]] = [
        ("to_planar", "numpy/opencv", lambda: fk.frame_to_planar_numpy(frame, *padded, dtype=dtype)),
        ("to_frame", "numpy/opencv", lambda: fk.planar_to_frame_numpy(planar, height, width)),
    ]
    if kernels is not None:
        out = np.empty((height, width, 3), dtype=np.uint8)
        jobs += [
            ("to_planar", "C reference", lambda: kernels.frame_to_planar(frame, *padded, dtype=dtype)),
            ("to_frame", "C reference", lambda: kernels.planar_to_frame(planar, height, width, out=out)),
        ]
    rows = []
    for conversion, path, work in tqdm(jobs, desc="timing", unit="path", leave=False):
        mean, median = _time_ms(work, args.repeats, args.warmup)
        rows.append((conversion, path, f"{mean:8.3f} ms mean {median:8.3f} ms median"))

    if kernels is None:
        rows.append(("-", "CUDA kernels", "not timed: the native library is not built"))
    elif not kernels.cuda_available:
        why = "library built without CUDA" if not kernels.built_with_cuda else "no usable CUDA device here"
        rows.append(("-", "CUDA kernels", f"not timed: CUDA unavailable ({why})"))
    else:
        t = kernels.cuda_benchmark(height, width, *padded, fk.dtype_code(dtype), args.repeats)
        rows += [
            ("to_planar", "CUDA kernel", f"{t.to_planar_ms:8.3f} ms mean (+ {t.upload_ms:.3f} ms 8-bit upload)"),
            ("to_frame", "CUDA kernel", f"{t.to_u8_ms:8.3f} ms mean (+ {t.download_ms:.3f} ms 8-bit download)"),
        ]
    return rows


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        if args.multiple < 1 or args.repeats < 1 or args.warmup < 0:
            raise InputError("--multiple and --repeats must be at least 1, --warmup at least 0")
        rows = _rows(args)
    except UnfoldError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    height, width = args.size
    kernels = fk.load_frame_kernels()
    print(f"frame {width}x{height} BGR uint8 <-> planar RGB {args.dtype}, padded to a multiple of {args.multiple}")
    print(f"library: {kernels.path if kernels else 'not built'}")
    for conversion, path, text in rows:
        print(f"{conversion:<10} {path:<13} {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
