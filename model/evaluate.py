"""Score a checkpoint per degradation case on a folder of clean images.

Prints a PSNR/SSIM table (degraded input, OpenCV non-local means at its best strength, UnfoldLDM),
writes it as CSV and saves a side-by-side image grid.

    python model/evaluate.py --data ../shared/data/val/CBSD68 --cases noise25
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import load_model
from model.degradations import EVAL_CASES, load_kernels
from model.evaluation import NLM_STRENGTHS, centre_crop, evaluate, format_table, write_csv, write_grid
from runtime.errors import InputError, UnfoldError
from runtime.image_io import list_images, read_rgb8

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = REPO / "model" / "weights" / "edge_interim.pt"
DEFAULT_DATA = REPO.parent / "shared" / "data"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=DEFAULT_CHECKPOINT,
        help="checkpoint to score (default: the shipped model/weights/edge_interim.pt)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA / "val" / "CBSD68",
        help="folder of clean images (default: ../shared/data/val/CBSD68)",
    )
    p.add_argument(
        "--cases",
        nargs="+",
        default=list(EVAL_CASES),
        choices=EVAL_CASES,
        metavar="CASE",
        help=f"degradation cases to score (default: all of {', '.join(EVAL_CASES)})",
    )
    p.add_argument(
        "--kernels",
        type=Path,
        default=DEFAULT_DATA / "kernels" / "npy",
        help="real blur kernels for the motion_blur case; a synthetic shake kernel is used if absent",
    )
    p.add_argument("--limit", type=int, default=0, help="score only the first N images (default: all)")
    p.add_argument("--crop", type=int, default=0, help="centre-crop every image to N x N first (default: whole image)")
    p.add_argument("--stages", type=int, help="run only the first K unfolding stages (default: all)")
    p.add_argument(
        "--nlm-strengths",
        type=float,
        nargs="*",
        default=list(NLM_STRENGTHS),
        help="grid of non-local-means strengths h to pick the best from; give none to skip NLM",
    )
    p.add_argument(
        "--nlm-tuning-images", type=int, default=4, help="how many images per case choose the NLM strength (default: 4)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "runs" / "eval",
        help="folder for results.csv and grid.png (default: runs/eval)",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    return p


def load_clean_images(folder: Path, limit: int, crop: int) -> list[np.ndarray]:
    paths = list_images(folder)
    if not paths:
        raise InputError(f"{folder}: no images found")
    paths = paths[:limit] if limit > 0 else paths
    return [centre_crop(read_rgb8(p).astype(np.float32) / 255, crop) for p in paths]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        model, ckpt = load_model(args.checkpoint)
        images = load_clean_images(args.data, args.limit, args.crop)
        kernels = load_kernels(args.kernels) if args.kernels.is_dir() else []
        label = " (INTERIM weights)" if ckpt.interim else ""
        print(
            f"{args.checkpoint.name}: {ckpt.config.name}, {ckpt.phase}, step {ckpt.step}{label}; {len(images)} images"
        )
        results = evaluate(model, images, args.cases, kernels, args.nlm_strengths, args.nlm_tuning_images, args.stages)
        print(format_table(results))
        write_csv(results, args.out / "results.csv")
        write_grid(results, args.out / "grid.png")
        print(f"wrote {args.out / 'results.csv'} and {args.out / 'grid.png'}")
    except UnfoldError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
