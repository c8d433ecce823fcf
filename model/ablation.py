"""Ablation at one small budget: each part of UnfoldLDM switched off, against a full-model control.

    python model/ablation.py --iters 2000 --out runs/ablation      # about 0.6 h per variant, 2 cores

Every variant (the control included) trains from scratch with the same schedule, data, seed and
iteration count, then is scored on the same degraded CBSD68 crops. Variants:
  full           the `edge` model (control)
  no_prior       no DR-LDM prior (OCFormer gets a zero prior)
  holistic_only  MGDA without the decomposed W X M path
  no_high_freq   OCFormer without the Haar high-frequency branch
  single_stage   K = 1 with a wider OCFormer, chosen to match the full model's GMAC
The table gives dB lost without each part and dB per GMAC it adds; for single_stage, the dB that
unfolding gains at equal cost. Resumable at three levels: a row already in OUT/ablation.json with
the same iterations, config and scoring set is kept as it is (so the JSON alone carries finished
variants from one machine or session to the next); a variant whose model.pt exists is only scored
again; an interrupted one resumes from its last.pt.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.checkpoint import load_model
from model.complexity import describe
from model.config import ModelConfig, named_config
from model.datasets import CleanFolderDataset, load_clean_images, validation_pairs
from model.degradations import apply_case, load_kernels
from model.inference import restore_array
from model.training import TrainSettings, train
from runtime.atomic_io import atomic_write_bytes
from runtime.cli import DEFAULT_DATA, REPO
from runtime.errors import UnfoldError, report_error
from runtime.image_io import list_images
from runtime.metrics import psnr

VARIANTS = ("full", "no_prior", "holistic_only", "no_high_freq", "single_stage")
CASES = ("noise25", "gauss_blur", "jpeg20", "mixed")
# The main run's phase proportions (3800 / 300 / 1900 iterations of round 2).
PHASE_SHARES = (0.63, 0.05)
GMAC_SIZE = ((256, 256),)


def gmac(config: ModelConfig) -> float:
    return describe(config, GMAC_SIZE)["gmac_256x256"]


def matched_single_stage(base: ModelConfig) -> ModelConfig:
    """K = 1 with the even OCFormer width whose GMAC at 256x256 is closest to `base`'s."""
    target = gmac(base)
    candidates = [dataclasses.replace(base, stages=1, dim=d) for d in range(base.dim, 4 * base.dim + 1, 2)]
    return min(candidates, key=lambda c: abs(gmac(c) - target))


def variant_config(base: ModelConfig, name: str) -> ModelConfig:
    changes: dict[str, dict[str, Any]] = {
        "full": {},
        "no_prior": {"use_prior": False},
        "holistic_only": {"mgda_mode": "holistic"},
        "no_high_freq": {"use_high_freq": False},
    }
    if name == "single_stage":
        return matched_single_stage(base)
    return dataclasses.replace(base, **changes[name])


def schedule(iters: int, config: ModelConfig) -> tuple[int, int, int]:
    """Phase 1, warm-up and joint iterations; without a prior the warm-up's share goes to phase 1."""
    warmup = max(1, round(iters * PHASE_SHARES[1])) if config.use_prior else 0
    phase1 = round(iters * PHASE_SHARES[0]) + (0 if config.use_prior else round(iters * PHASE_SHARES[1]))
    return phase1, warmup, max(1, iters - phase1 - warmup)


def score(checkpoint: Path, images: list[np.ndarray], kernels: list[np.ndarray]) -> dict[str, float]:
    """Mean PSNR per case on the fixed degraded crops (seed = image index, as in evaluate.py)."""
    model, _ = load_model(checkpoint)
    scores = {}
    for case in CASES:
        values = [
            psnr(restore_array(model, apply_case(gt, case, seed=i, kernels=kernels)), gt) for i, gt in enumerate(images)
        ]
        scores[case] = float(np.mean(values))
    return scores


def format_table(rows: list[dict[str, Any]]) -> str:
    full = next(r for r in rows if r["variant"] == "full")
    header = f"{'variant':<15}{'params M':>9}{'GMAC':>7}" + "".join(f"{c:>11}" for c in CASES)
    header += f"{'mean':>8}{'vs full':>9}{'dB/GMAC':>9}"
    lines = [header, "-" * len(header)]
    for r in rows:
        delta = r["mean_psnr"] - full["mean_psnr"]
        saved = full["gmac"] - r["gmac"]
        # dB the part adds per GMAC it costs; a part that costs nothing (or less) has no ratio.
        per_gmac = (
            f"{-delta / saved:>9.2f}" if r["variant"] not in ("full", "single_stage") and saved > 0.01 else f"{'-':>9}"
        )
        cells = "".join(f"{r['psnr'][c]:>11.2f}" for c in CASES)
        lines.append(
            f"{r['variant']:<15}{r['params_m']:>9.3f}{r['gmac']:>7.2f}{cells}{r['mean_psnr']:>8.2f}{delta:>+9.2f}{per_gmac}"
        )
    return "\n".join(lines)


def measured(variant: str, iters: int, config: dict[str, Any], scored_on: dict[str, Any] | None) -> tuple[Any, ...]:
    """What a row measured: variant, budget, config (as JSON holds it) and scoring set."""
    return variant, iters, json.loads(json.dumps(config)), scored_on


def row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return measured(row["variant"], row["iters"], row["config"], row.get("scored_on"))


def finished_row(
    rows: list[dict[str, Any]], name: str, iters: int, config: ModelConfig, scored_on: dict[str, Any]
) -> dict[str, Any] | None:
    """The row of an earlier run that measured exactly this variant, budget and scoring set, if any."""
    wanted = measured(name, iters, config.to_dict(), scored_on)
    return next((row for row in rows if row_key(row) == wanted), None)


def merge_rows(earlier: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Earlier rows not measured again, then this run's rows."""
    measured_again = [row_key(row) for row in new]
    return [row for row in earlier if row_key(row) not in measured_again] + new


NUMBER = (int, float)  # a JSON number may load as either

# Each field of a row and the JSON type it must have; format_table does arithmetic on the numbers.
ROW_FIELDS: dict[str, type | tuple[type, ...]] = {
    "variant": str,
    "params_m": NUMBER,
    "gmac": NUMBER,
    "psnr": dict,
    "mean_psnr": NUMBER,
    "iters": int,
    "config": dict,
}


def _of_type(value: object, kind: type | tuple[type, ...]) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)  # JSON's true is an int to Python


def is_row(row: object) -> bool:
    """A dict with every field of ROW_FIELDS, of its type, and a number for each scored case."""
    if not isinstance(row, dict) or not all(_of_type(row.get(f), kind) for f, kind in ROW_FIELDS.items()):
        return False
    return all(_of_type(v, NUMBER) for v in row["psnr"].values())


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of earlier runs; a file that is not a list of rows is refused rather than overwritten."""
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UnfoldError(f"{path}: not valid JSON ({exc}); move it away to start the ablation afresh") from exc
    if not isinstance(rows, list) or not all(is_row(r) for r in rows):
        raise UnfoldError(
            f"{path}: not a list of ablation rows (each with {', '.join(ROW_FIELDS)}, numbers where numbers belong); "
            "move it away to start the ablation afresh"
        )
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="edge", choices=["edge", "small", "base", "tiny"], help="base model size")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS, help="variants to run")
    p.add_argument(
        "--iters", type=int, default=2000, help="training iterations per variant, all phases (default: 2000)"
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA / "train", help="clean training photos")
    p.add_argument("--kernels", type=Path, default=DEFAULT_DATA / "kernels" / "npy", help="real blur kernels")
    p.add_argument("--val", type=Path, default=DEFAULT_DATA / "val" / "CBSD68", help="clean photos to score on")
    p.add_argument("--val-images", type=int, default=16, help="photos scored per case (default: 16)")
    p.add_argument("--val-crop", type=int, default=128, help="centre crop of each scored photo (default: 128)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default: 8, as the main run)")
    p.add_argument("--crop", type=int, default=64, help="training crop (default: 64, as the main run)")
    p.add_argument("--lr", type=float, default=4e-4, help="peak learning rate (default: 4e-4, as the main run)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "ablation", help="one run folder per variant + JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        base = named_config(args.size)
        kernels = load_kernels(args.kernels) if args.kernels.is_dir() else []
        images = load_clean_images(args.val, args.val_images, args.val_crop)
        train_set = CleanFolderDataset(
            args.data, args.crop, kernels=kernels, length=max(len(list_images(args.data, recursive=True)), 400)
        )
        variants = ["full", *[v for v in args.variants if v != "full"]]  # the control always runs
        scored_on = {"folder": args.val.name, "images": len(images), "crop": args.val_crop}
        earlier = read_rows(args.out / "ablation.json")
        rows = []
        for name in variants:
            config = variant_config(base, name)
            kept = finished_row(earlier, name, args.iters, config, scored_on)
            if kept is not None:
                print(f"kept {name} from {args.out / 'ablation.json'}")
                rows.append(kept)
                continue
            run = args.out / name
            final = run / "model.pt"
            if not final.is_file():
                print(f"training {name} ({args.iters} iterations)")
                p1, warm, joint = schedule(args.iters, config)
                last = run / "last.pt"
                settings = TrainSettings(
                    config=config,
                    out_dir=run,
                    phase1_iters=p1,
                    warmup_iters=warm,
                    joint_iters=joint,
                    batch_size=args.batch_size,
                    lr=args.lr,
                    val_every=max(1, args.iters // 4),
                    save_every=250,
                    resume=last if last.is_file() else None,
                )
                val = validation_pairs(args.val, 4, args.val_crop, "noise25", config.pad_multiple)
                train(settings, train_set, val)
            psnrs = score(final, images, kernels)
            described = describe(config, GMAC_SIZE)
            rows.append(
                {
                    "variant": name,
                    "params_m": described["params_m"],
                    "gmac": described["gmac_256x256"],
                    "psnr": psnrs,
                    "mean_psnr": float(np.mean(list(psnrs.values()))),
                    "iters": args.iters,
                    "config": config.to_dict(),
                    "scored_on": scored_on,
                }
            )
            # Written after every variant, so a run cut short still leaves the finished rows; rows of
            # earlier runs (other variants, budgets or scoring sets) stay in the file.
            atomic_write_bytes(args.out / "ablation.json", json.dumps(merge_rows(earlier, rows), indent=1).encode())
        print(format_table(rows))
        print(f"wrote {args.out / 'ablation.json'}")
    except UnfoldError as exc:
        return report_error(exc, verbose=False, status=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
