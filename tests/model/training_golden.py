"""A few training steps of the real `edge` model on a fixed batch: the golden record of training.

`tests/model/data/training_golden.json` was written by this module from the training code as it
was before the throughput work (channels-last, fused consistency term, prefetching), so the test
that reads it proves that the faster training computes the same numbers (up to float noise).

Regenerate only on purpose (the numbers are meant to stay fixed):
    python -m tests.model.training_golden tests/model/data/training_golden.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from model.checkpoint import load_checkpoint
from model.config import named_config
from model.training import TrainSettings, train

STEPS = 3
BATCH = 2
CROP = 64
# Parameters whose values after the steps are recorded: one of each building block.
WATCHED = (
    "gradient_steps.0.holistic.adjoint_op.0.weight",
    "gradient_steps.1.decomposed.rows.query.weight",
    "gradient_steps.2.eta",
    "proximal_steps.0.encoders.0.0.attn.qkv.weight",
    "proximal_steps.1.high_freq.body.0.weight",
    "proximal_steps.2.out.weight",
    "prior.denoiser.inp.weight",
    "prior.condition_encoder.body.0.weight",
    "prior.gt_encoder.head.0.weight",
)
# Each schedule trains STEPS iterations of one phase from the same random initial weights.
SCHEDULES = {
    "phase1": (STEPS, 0, 0),
    "phase2_warmup": (0, STEPS, 0),
    "phase2_joint": (0, 0, STEPS),
}


class FixedPairs(Dataset):
    """BATCH fixed (lq, gt) crops: smooth random colour images plus Gaussian noise (sigma 25)."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        coarse = rng.random((BATCH, 3, CROP // 8, CROP // 8), dtype=np.float32)
        gt = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(CROP, CROP), mode="bilinear")
        noise = rng.normal(0.0, 25.0 / 255.0, size=gt.shape).astype(np.float32)
        self.gt = gt.clamp(0, 1)
        self.lq = (self.gt + torch.from_numpy(noise)).clamp(0, 1)

    def __len__(self) -> int:
        return BATCH

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lq[index], self.gt[index]


def _summary(tensor: torch.Tensor) -> dict[str, object]:
    flat = tensor.detach().double().reshape(-1)
    return {"sum": float(flat.sum()), "abs_sum": float(flat.abs().sum()), "first": flat[:4].tolist()}


def golden_record() -> dict[str, object]:
    """Loss terms of the last step and the watched parameters (raw and EMA) after STEPS steps."""
    record: dict[str, object] = {"steps": STEPS, "batch": BATCH, "crop": CROP, "torch": torch.__version__}
    for phase, (p1, warm, joint) in SCHEDULES.items():
        with tempfile.TemporaryDirectory() as tmp:
            settings = TrainSettings(
                config=named_config("edge"),
                out_dir=Path(tmp),
                phase1_iters=p1,
                warmup_iters=warm,
                joint_iters=joint,
                batch_size=BATCH,
                lr=1e-3,
                val_every=10**9,
                save_every=10**9,
                seed=7,
            )
            train(settings, FixedPairs(), [])
            ckpt = load_checkpoint(Path(tmp) / "last.pt")
        record[phase] = {
            "loss": {k: float(v) for k, v in ckpt.notes["log"].items()},
            "weights": {name: _summary(ckpt.model[name]) for name in WATCHED},
            "ema": {name: _summary(ckpt.ema[name]) for name in WATCHED},
        }
    return record


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    out.write_text(json.dumps(golden_record(), indent=1) + "\n")
    print(f"wrote {out}")
