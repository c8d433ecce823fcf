"""Train UnfoldLDM in two phases on clean photos (synthetic blind degradations) or real pairs.

python model/train.py --size edge --phase1-iters 3000 --warmup-iters 500 --joint-iters 1500
torchrun --nproc_per_node 2 model/train.py ...        (DDP: gloo on CPU, NCCL on CUDA)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from model.config import named_config
from model.datasets import CleanFolderDataset, PairedFolderDataset, validation_pairs
from model.degradations import load_kernels
from model.training import TrainSettings, train
from runtime.cli import DEFAULT_DATA, REPO
from runtime.errors import UnfoldError
from runtime.image_io import list_images


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--size",
        default="edge",
        choices=["edge", "small", "base", "tiny"],
        help="named model size (default: edge); tiny is a toy model for smoke tests",
    )
    p.add_argument("--stages", type=int, help="override the number of unfolding stages K of the named size")
    p.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA / "train",
        help="folder of clean training photos, degraded on the fly (default: ../shared/data/train)",
    )
    p.add_argument(
        "--paired", type=Path, help="train on real LQ/GT pairs in this folder instead (GoPro, SIDD or lq/+gt/ layout)"
    )
    p.add_argument(
        "--kernels",
        type=Path,
        default=DEFAULT_DATA / "kernels" / "npy",
        help="folder of real blur kernels (.npy) mixed into the synthetic blur; skipped if absent",
    )
    p.add_argument(
        "--val",
        type=Path,
        default=DEFAULT_DATA / "val" / "CBSD68",
        help="folder of clean validation photos (default: ../shared/data/val/CBSD68)",
    )
    p.add_argument("--val-images", type=int, default=8, help="how many validation photos to score (default: 8)")
    p.add_argument("--val-crop", type=int, default=256, help="centre crop of each validation photo (default: 256)")
    p.add_argument("--val-case", default="noise25", help="degradation of the validation inputs (default: noise25)")
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "runs" / "edge",
        help="run folder for last.pt (resumable) and model.pt (EMA weights) (default: runs/edge)",
    )
    p.add_argument("--phase1-iters", type=int, default=3000, help="iterations of phase 1, the GT-aware prior")
    p.add_argument("--warmup-iters", type=int, default=500, help="phase 2 iterations training only the sampler")
    p.add_argument("--joint-iters", type=int, default=1500, help="phase 2 iterations training everything jointly")
    p.add_argument("--batch-size", type=int, default=8, help="batch size per process (default: 8)")
    p.add_argument("--crop", type=int, default=64, help="training crop size in pixels (default: 64)")
    p.add_argument("--lr", type=float, default=2e-4, help="peak AdamW learning rate (cosine per phase)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    p.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay of the shipped weights")
    p.add_argument("--val-every", type=int, default=500, help="validate every N iterations")
    p.add_argument("--save-every", type=int, default=250, help="write last.pt every N iterations")
    p.add_argument("--seed", type=int, default=0, help="seed for weights, crops, degradations and noise")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default: 0)")
    p.add_argument("--threads", type=int, help="torch CPU threads per process (default: cores / processes)")
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda (default: cuda when available)",
    )
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA (CPU never uses it)")
    p.add_argument("--resume", type=Path, help="continue from a last.pt (same config; restores optimizer and step)")
    p.add_argument("--init-from", type=Path, help="start from these weights (fine-tuning), with a fresh optimizer")
    p.add_argument(
        "--max-minutes",
        type=float,
        help="stop after this many minutes of training, writing last.pt (resumable) and model.pt",
    )
    p.add_argument("--interim", action="store_true", help="label the checkpoint as interim (not fully trained)")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        world = int(os.environ.get("WORLD_SIZE", 1))
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // world))
        overrides = {} if args.stages is None else {"stages": args.stages}
        config = named_config(args.size, **overrides)
        if args.paired is not None:
            train_set = PairedFolderDataset(args.paired, crop_size=args.crop, seed=args.seed)
        else:
            kernels = load_kernels(args.kernels) if args.kernels.is_dir() else []
            length = max(len(list_images(args.data, recursive=True)), args.batch_size * world * 50)
            train_set = CleanFolderDataset(args.data, args.crop, kernels=kernels, seed=args.seed, length=length)
        val = validation_pairs(args.val, args.val_images, args.val_crop, args.val_case, config.pad_multiple)
        settings = TrainSettings(
            config=config,
            out_dir=args.out,
            phase1_iters=args.phase1_iters,
            warmup_iters=args.warmup_iters,
            joint_iters=args.joint_iters,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            ema_decay=args.ema_decay,
            val_every=args.val_every,
            save_every=args.save_every,
            seed=args.seed,
            workers=args.workers,
            amp=not args.no_amp,
            device=args.device,
            resume=args.resume,
            init_from=args.init_from,
            interim=args.interim,
            max_seconds=None if args.max_minutes is None else args.max_minutes * 60.0,
        )
        final = train(settings, train_set, val)
    except (UnfoldError, ValueError) as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last saved checkpoint is in the run folder (use --resume)", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"wrote {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
