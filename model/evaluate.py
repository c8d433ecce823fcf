"""Score a checkpoint per degradation case on folders of clean images.

Prints a PSNR/SSIM table per folder (degraded input, OpenCV non-local means at its best strength,
UnfoldLDM), writes them to one CSV and saves a side-by-side image grid per folder, plus a grid of
real degraded photos that have no ground truth. With --artifacts the exported FP32 pipeline
scores the same inputs too, in ONNX Runtime and/or OpenVINO (--backends), and the largest gap
between PyTorch and each runtime is printed.

    python model/evaluate.py                                   # shipped model, CBSD68 + McMaster + Set14
    python model/evaluate.py --data ../shared/data/val/CBSD68 --cases noise25 --limit 8
    python model/evaluate.py --artifacts artifacts/edge        # PyTorch and ONNX Runtime side by side
    python model/evaluate.py --artifacts artifacts/edge --backends onnxruntime openvino
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import load_model
from model.datasets import load_clean_images
from model.degradations import EVAL_CASES, load_kernels
from model.evaluation import (
    NLM_STRENGTHS,
    CaseResult,
    Restorer,
    centre_crop,
    evaluate,
    format_table,
    largest_gap_db,
    write_csv,
    write_grid,
    write_real_grid,
)
from model.inference import restore_array
from model.unfoldldm import UnfoldLDM
from runtime.cli import DEFAULT_DATA, REPO
from runtime.errors import InputError, UnfoldError, report_error
from runtime.image_io import list_images, read_rgb8
from runtime.manifest import sha256_file
from runtime.pipeline import Pipeline
from runtime.shipped import SHIPPED_CHECKPOINT

DEFAULT_CHECKPOINT = SHIPPED_CHECKPOINT
DEFAULT_SETS = [DEFAULT_DATA / "val" / name for name in ("CBSD68", "McMaster", "Set14")]
DEFAULT_REAL = [DEFAULT_DATA / "val" / name for name in ("RNI15", "real_blur_misc")]
# The cases of the README's quality table; motion_blur and downup2 stay available with --cases.
DEFAULT_CASES = ["noise15", "noise25", "noise50", "gauss_blur", "jpeg20", "mixed"]
# The runtimes --artifacts can score, with the name their gap to PyTorch is printed under.
RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=DEFAULT_CHECKPOINT,
        help="checkpoint to score (default: the shipped model/weights/edge.pt, checked against its sha256)",
    )
    p.add_argument(
        "--data",
        type=Path,
        nargs="+",
        default=DEFAULT_SETS,
        metavar="DIR",
        help="folders of clean images, one table each (default: ../shared/data/val/CBSD68, McMaster and Set14)",
    )
    p.add_argument(
        "--cases",
        nargs="+",
        default=DEFAULT_CASES,
        choices=EVAL_CASES,
        metavar="CASE",
        help=f"degradation cases to score, from {', '.join(EVAL_CASES)} (default: {' '.join(DEFAULT_CASES)})",
    )
    p.add_argument(
        "--kernels",
        type=Path,
        default=DEFAULT_DATA / "kernels" / "npy",
        help="real blur kernels for the motion_blur and mixed cases; synthetic ones are used if absent",
    )
    p.add_argument("--limit", type=int, default=0, help="score only the first N images of each folder (default: all)")
    p.add_argument("--crop", type=int, default=0, help="centre-crop every image to N x N first (default: whole image)")
    p.add_argument("--stages", type=int, help="run only the first K unfolding stages (default: all)")
    p.add_argument(
        "--artifacts",
        type=Path,
        help="also score the exported FP32 pipeline in this artifacts folder (it must come from --checkpoint) "
        "on each of --backends, and print each one's largest PSNR gap to PyTorch",
    )
    p.add_argument(
        "--backends",
        nargs="+",
        default=["onnxruntime"],
        choices=RUNTIME_NAMES,
        metavar="BACKEND",
        help="CPU runtimes that run the --artifacts pipeline, from onnxruntime and openvino: the two a CPU "
        "plan can pick (default: onnxruntime)",
    )
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
        "--real",
        type=Path,
        nargs="*",
        default=DEFAULT_REAL,
        metavar="DIR",
        help="folders of real degraded photos without ground truth for real_grid.png; give none to skip "
        "(default: ../shared/data/val/RNI15 and real_blur_misc)",
    )
    p.add_argument("--real-count", type=int, default=3, help="photos per --real folder in the grid (default: 3)")
    p.add_argument("--real-crop", type=int, default=256, help="centre crop of each real photo (default: 256)")
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "runs" / "eval",
        help="folder for results.csv, grid_<folder>.png and real_grid.png (default: runs/eval)",
    )
    p.add_argument("--threads", type=int, help="CPU threads for torch and the runtimes (default: their choice)")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    return p


def _open_artifacts(folder: Path, checkpoint: Path, threads: int | None, backend: str) -> Pipeline:
    pipeline = Pipeline.from_manifest(folder, backend=backend, precision="fp32", threads=threads)
    if pipeline.manifest.source.sha256 != sha256_file(checkpoint):
        pipeline.close()
        raise InputError(
            f"--artifacts {folder}: exported from {pipeline.manifest.source.checkpoint}, not from {checkpoint}; "
            "re-export it (python export/build_engines.py --checkpoint ...) or pass the matching checkpoint"
        )
    return pipeline


def _restorers(model: UnfoldLDM, pipelines: dict[str, Pipeline], stages: int | None) -> dict[str, Restorer]:
    restorers: dict[str, Restorer] = {"unfoldldm": lambda lq: restore_array(model, lq, stages=stages)}
    for backend, pipeline in pipelines.items():
        restorers[backend] = lambda lq, pipeline=pipeline: pipeline.restore(lq, stages=stages)
    return restorers


def _real_rows(
    folders: Sequence[Path], count: int, crop: int, restore: Restorer
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    rows = []
    for folder in folders:
        for path in list_images(folder)[:count]:
            lq = centre_crop(read_rgb8(path).astype(np.float32) / 255, crop)
            rows.append((f"{folder.name}/{path.name}"[:28], lq, restore(lq)))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    pipelines: dict[str, Pipeline] = {}
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        model, ckpt = load_model(args.checkpoint)
        datasets = {folder.name: load_clean_images(folder, args.limit, args.crop) for folder in args.data}
        for folder in args.real:  # before the long run, not after it
            if not list_images(folder):
                raise InputError(f"--real {folder}: no images found (give --real with no folder to skip the grid)")
        kernels = load_kernels(args.kernels) if args.kernels.is_dir() else []
        if args.artifacts is not None:
            for backend in dict.fromkeys(args.backends):
                pipelines[backend] = _open_artifacts(args.artifacts, args.checkpoint, args.threads, backend)
        restorers = _restorers(model, pipelines, args.stages)
        label = " (INTERIM weights)" if ckpt.interim else ""
        print(f"{args.checkpoint.name}: {ckpt.config.name}, {ckpt.phase}, step {ckpt.step}{label}")
        results: dict[str, list[CaseResult]] = {}
        for name, images in datasets.items():
            results[name] = evaluate(
                images, args.cases, restorers, kernels, args.nlm_strengths, args.nlm_tuning_images, desc=name
            )
            print(f"\n{name} ({len(images)} images)\n{format_table(results[name])}")
            write_grid(results[name], args.out / f"grid_{name}.png")
        write_csv(results, args.out / "results.csv")
        for backend in pipelines:
            gap = max(largest_gap_db(rows, b=backend) for rows in results.values())
            name = RUNTIME_NAMES[backend]
            print(f"\nlargest |PyTorch - {name}| mean PSNR gap over every folder and case: {gap:.4f} dB")
        if args.real:
            rows = _real_rows(args.real, args.real_count, args.real_crop, restorers["unfoldldm"])
            write_real_grid(rows, args.out / "real_grid.png")
        print(f"wrote {args.out / 'results.csv'} and the grids beside it")
    except UnfoldError as exc:
        return report_error(exc, args.verbose, status=2)
    finally:
        for pipeline in pipelines.values():
            pipeline.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
