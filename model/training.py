"""Two-phase training loop, single process or DDP under torchrun: the library; model/train.py is the command.

Phase 1 trains MGDA, OCFormer and the GT-aware prior encoder end to end. Phase 2 first trains
only the condition encoder and the denoiser to reproduce the (frozen) GT-aware prior (warm-up),
then fine-tunes everything but the teacher with the sampled prior, as at inference (joint).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from model.config import ModelConfig
from model.inference import prior_noise
from model.losses import LossWeights, prior_loss, restoration_loss
from model.training_clock import TrainingClock
from model.unfoldldm import StageOutputs, UnfoldLDM
from runtime.metrics import psnr


@dataclass(frozen=True)
class TrainSettings:
    config: ModelConfig
    out_dir: Path
    phase1_iters: int
    warmup_iters: int
    joint_iters: int
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 1e-4
    ema_decay: float = 0.999
    grad_clip: float = 0.5
    val_every: int = 500
    save_every: int = 500
    seed: int = 0
    workers: int = 0
    amp: bool = False
    device: str = "cpu"
    resume: Path | None = None
    init_from: Path | None = None
    interim: bool = False
    # Stop (with last.pt and model.pt written) after this many seconds of this run, e.g. a GPU
    # burst in a fixed time slot; resuming continues the same schedule.
    max_seconds: float | None = None
    loss_weights: LossWeights = field(default_factory=LossWeights)

    def __post_init__(self) -> None:
        if not self.config.use_prior and self.warmup_iters:
            # The warm-up trains only the prior's sampler: without a prior it would have no loss.
            raise ValueError("a model without the prior has no warm-up phase; set the warm-up iterations to 0")

    @property
    def total_iters(self) -> int:
        return self.phase1_iters + self.warmup_iters + self.joint_iters

    def phase_at(self, step: int) -> str:
        if step < self.phase1_iters:
            return "phase1"
        if step < self.phase1_iters + self.warmup_iters:
            return "phase2_warmup"
        return "phase2_joint"


PRIOR_MODE = {"phase1": "target", "phase2_warmup": "sampled_teacher", "phase2_joint": "sampled"}


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the torchrun process group when launched by torchrun; NCCL on CUDA, gloo on CPU."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if device.startswith("cuda"):
        torch.cuda.set_device(info.local_rank)
    return info


def set_trainable(model: UnfoldLDM, phase: str) -> None:
    """Which parameters each phase trains; the GT-aware encoder is the frozen teacher in phase 2."""
    prior = model.prior
    for p in model.parameters():
        p.requires_grad_(phase != "phase2_warmup")
    if prior is None:
        return
    sampler = [prior.condition_encoder, prior.denoiser]
    for module in sampler:
        for p in module.parameters():
            p.requires_grad_(phase != "phase1")
    for p in prior.gt_encoder.parameters():
        p.requires_grad_(phase == "phase1")


class EMA:
    """Exponential moving average of every float tensor in the state dict (weights we ship)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        # Short warm-up of the decay so early checkpoints are not dominated by the random init.
        decay = min(self.decay, (1 + step) / (10 + step))
        floats, shadows = [], []
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                floats.append(v.detach())
                shadows.append(self.shadow[k])
            else:
                self.shadow[k].copy_(v)
        # One multi-tensor update instead of two kernels per tensor (hundreds of small tensors).
        torch._foreach_mul_(shadows, decay)
        torch._foreach_add_(shadows, floats, alpha=1 - decay)


def _batches(
    loader: DataLoader, sampler: DistributedSampler | None, dataset: Dataset, start_epoch: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    epoch = start_epoch
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        yield from loader
        epoch += 1


def _hwc(batch: torch.Tensor) -> np.ndarray:
    """First image of a batch as HxWx3 float32 numpy, clipped to the valid range."""
    return batch[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy()


@torch.no_grad()
def validate(model: UnfoldLDM, pairs: list[tuple[torch.Tensor, torch.Tensor]], phase: str) -> tuple[float, float]:
    """Mean PSNR (restored, input) over fixed validation pairs.

    Phase 1 has no trained sampler yet, so it validates with the GT-aware prior (an oracle figure);
    phase 2 validates exactly as inference runs, with the sampled prior from fixed noise.
    """
    model.eval()
    restored_psnr, input_psnr = [], []
    for lq, gt in pairs:
        noise = prior_noise(model.config).to(lq.device)
        if phase == "phase1":
            out = model.training_stages(lq, gt, noise, "target").restored[-1]
        else:
            out = model(lq, noise)
        restored_psnr.append(psnr(_hwc(out), _hwc(gt)))
        input_psnr.append(psnr(_hwc(lq), _hwc(gt)))
    model.train()
    return float(np.mean(restored_psnr)), float(np.mean(input_psnr))


def _make_optimizer(model: UnfoldLDM, settings: TrainSettings) -> torch.optim.Optimizer:
    # All parameters are in the optimizer; frozen ones have no grad and AdamW skips them. The
    # fused kernel updates every tensor in one pass (on the CPU too), the same algorithm.
    return torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, betas=(0.9, 0.99), fused=True
    )


def _lr_at(step: int, settings: TrainSettings) -> float:
    """Cosine decay inside each phase, so phase 2 restarts from a useful learning rate."""
    starts = [0, settings.phase1_iters, settings.phase1_iters + settings.warmup_iters, settings.total_iters]
    for begin, end in zip(starts, starts[1:], strict=False):
        if begin <= step < end:
            progress = (step - begin) / max(1, end - begin)
            return settings.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
    return settings.lr * 0.05


def train(settings: TrainSettings, train_set: Dataset, val_pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> Path:
    """Run (or resume) training; returns the path of the final checkpoint (written by rank 0)."""
    info = init_distributed(settings.device)
    device = torch.device(f"cuda:{info.local_rank}" if settings.device.startswith("cuda") else settings.device)
    torch.manual_seed(settings.seed)  # identical initial weights on every rank
    model = UnfoldLDM(settings.config).to(device)
    ema = EMA(model, settings.ema_decay)
    optimizer = _make_optimizer(model, settings)
    step = 0
    seconds_before = 0.0  # training time of earlier runs of this schedule, so resumed runs report the total
    # Earlier rounds this run fine-tunes (--init-from), so the training record spans all of them.
    rounds: list[dict[str, object]] = []
    if settings.resume is not None:
        ckpt = load_checkpoint(settings.resume)
        if ckpt.config != settings.config:
            raise ValueError(f"{settings.resume}: its config differs from this run's; resume needs the same config")
        model.load_state_dict(ckpt.model)
        ema.shadow = {k: v.to(device) for k, v in (ckpt.ema or ckpt.model).items()}
        if ckpt.optimizer is not None:
            optimizer.load_state_dict(ckpt.optimizer)
        step = ckpt.step
        seconds_before = float(ckpt.notes.get("seconds", 0.0))
        rounds = list(ckpt.notes.get("earlier_rounds", []))
    elif settings.init_from is not None:
        ckpt = load_checkpoint(settings.init_from)
        if ckpt.config != settings.config:
            raise ValueError(
                f"{settings.init_from}: its config differs from --size/--stages; fine-tuning needs the same model"
            )
        model.load_state_dict(ckpt.inference_weights())
        ema = EMA(model, settings.ema_decay)
        rounds = training_rounds(ckpt)
    val_pairs = [(lq.to(device), gt.to(device)) for lq, gt in val_pairs]

    sampler = (
        DistributedSampler(train_set, info.world_size, info.rank, seed=settings.seed) if info.world_size > 1 else None
    )
    loader = DataLoader(
        train_set,
        batch_size=settings.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=True,
        num_workers=settings.workers,
        generator=torch.Generator().manual_seed(settings.seed),
    )
    steps_per_epoch = max(1, len(loader))
    batches = _batches(loader, sampler, train_set, start_epoch=step // steps_per_epoch)
    use_amp = settings.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    noise_gen = torch.Generator().manual_seed(settings.seed * 1000 + info.rank + step)

    phase: str | None = None
    wrapped: nn.Module = model
    progress = tqdm(
        total=settings.total_iters, initial=step, disable=not info.is_main, dynamic_ncols=True, desc="train"
    )
    out_dir = Path(settings.out_dir)
    last_log: dict[str, float] = {}
    clock = TrainingClock(seconds_before)
    while step < settings.total_iters:
        if settings.max_seconds is not None and _out_of_time(clock, settings.max_seconds, info, device):
            progress.write(f"time budget of {settings.max_seconds:.0f} s reached at step {step}: stopping")
            _save(out_dir / "last.pt", settings, model, ema, optimizer, phase, step, last_log, clock, rounds)
            break
        if settings.phase_at(step) != phase:
            phase = settings.phase_at(step)
            set_trainable(model, phase)
            # DDP records which parameters need gradients when it is built, so rebuild per phase.
            wrapped = TrainingPass(model)
            if info.world_size > 1:
                wrapped = DistributedDataParallel(wrapped)
        lq, gt = next(batches)
        lq, gt = lq.to(device, non_blocking=True), gt.to(device, non_blocking=True)
        noise = torch.randn(lq.shape[0], settings.config.prior_dim, generator=noise_gen).to(device)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, settings)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            out = wrapped(lq, gt, noise, PRIOR_MODE[phase])
            terms: dict[str, torch.Tensor] = {}
            if phase != "phase2_warmup":
                terms.update(restoration_loss(out, gt, settings.loss_weights))
            if phase != "phase1" and out.sampled_priors:
                terms["prior"] = prior_loss(out, settings.loss_weights)
            loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], settings.grad_clip, foreach=True
        )
        scaler.step(optimizer)
        scaler.update()
        ema.update(model, step)
        step += 1
        last_log = {k: float(v.detach()) for k, v in terms.items()}
        if info.is_main:
            progress.update(1)
            progress.set_postfix(phase=phase, loss=f"{float(loss.detach()):.4f}")
        if info.is_main and val_pairs and (step % settings.val_every == 0 or step == settings.total_iters):
            ema_model = _ema_model(settings.config, ema, device)
            restored, baseline = validate(ema_model, val_pairs, phase)
            progress.write(f"step {step} {phase}: val PSNR {restored:.2f} dB (input {baseline:.2f} dB)")
            last_log.update(val_psnr=restored, val_input_psnr=baseline)
            seconds = clock.seconds()
            log = {**last_log, "hours_total": round((seconds + earlier_seconds(rounds)) / 3600.0, 4)}
            append_history(out_dir / HISTORY_NAME, step, phase, seconds, log)
        if info.is_main and (step % settings.save_every == 0 or step == settings.total_iters):
            _save(out_dir / "last.pt", settings, model, ema, optimizer, phase, step, last_log, clock, rounds)
        if info.world_size > 1 and step % settings.save_every == 0:
            dist.barrier()
    progress.close()
    clock.close()
    if info.world_size > 1:
        # DDP must keep the replicas bit-identical; measure it rather than assume it.
        last_log["replica_max_abs_diff"] = replica_max_abs_diff(model)
    final = out_dir / "model.pt"
    if info.is_main:
        _save(
            final,
            settings,
            model,
            ema,
            None,
            phase or settings.phase_at(step - 1),
            step,
            last_log,
            clock,
            rounds,
            weights_only_ema=True,
        )
    if info.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return final


def _out_of_time(clock: TrainingClock, max_seconds: float, info: DistInfo, device: torch.device) -> bool:
    """Whether the time budget is spent; under DDP every rank takes rank 0's answer, so all stop together."""
    flag = torch.tensor([float(clock.run_seconds() >= max_seconds)], device=device)
    if info.world_size > 1:
        dist.broadcast(flag, src=0)
    return bool(flag.item())


@torch.no_grad()
def replica_max_abs_diff(model: nn.Module) -> float:
    """Largest |w_rank - w_rank0| over all weights and ranks (0.0 when DDP kept them in sync)."""
    flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    diff = (flat - reference).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)


class TrainingPass(nn.Module):
    """Puts `training_stages` behind a forward, because DDP only syncs gradients through forward.

    This keeps UnfoldLDM.forward inference-only.
    """

    def __init__(self, model: UnfoldLDM) -> None:
        super().__init__()
        self.model = model

    def forward(self, lq: torch.Tensor, gt: torch.Tensor, noise: torch.Tensor, mode: str) -> StageOutputs:
        return self.model.training_stages(lq, gt, noise, mode)


HISTORY_NAME = "history.jsonl"


def training_rounds(ckpt: Checkpoint) -> list[dict[str, object]]:
    """The checkpoint's own training run appended to the rounds it was itself fine-tuned from."""
    notes = ckpt.notes
    own = {
        "step": ckpt.step,
        "seconds": float(notes.get("seconds", 0.0)),
        "iters": notes.get("iters"),
        "batch_size": notes.get("batch_size"),
        "lr": notes.get("lr"),
    }
    return [*notes.get("earlier_rounds", []), own]


def earlier_seconds(rounds: list[dict[str, object]]) -> float:
    return sum(float(r.get("seconds") or 0.0) for r in rounds)


def append_history(path: Path, step: int, phase: str, seconds: float, log: dict[str, float]) -> None:
    """One JSON line per validation: the validation-PSNR-against-hours curve of the training record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"step": step, "phase": phase, "hours": round(seconds / 3600.0, 4), **log}
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _ema_model(config: ModelConfig, ema: EMA, device: torch.device) -> UnfoldLDM:
    model = UnfoldLDM(config).to(device)
    model.load_state_dict(ema.shadow)
    return model


def _save(
    path: Path,
    settings: TrainSettings,
    model: UnfoldLDM,
    ema: EMA,
    optimizer: torch.optim.Optimizer | None,
    phase: str,
    step: int,
    log: dict[str, float],
    clock: TrainingClock,
    rounds: list[dict[str, object]],
    weights_only_ema: bool = False,
) -> None:
    notes = {
        "log": log,
        "seconds": round(clock.seconds(), 1),
        "seed": settings.seed,
        "iters": [settings.phase1_iters, settings.warmup_iters, settings.joint_iters],
        "batch_size": settings.batch_size,
        "lr": settings.lr,
        "earlier_rounds": rounds,
    }
    cpu_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ema_state = {k: v.detach().cpu() for k, v in ema.shadow.items()}
    save_checkpoint(
        path,
        Checkpoint(
            config=settings.config,
            model=ema_state if weights_only_ema else cpu_state,
            phase=phase,
            step=step,
            ema=None if weights_only_ema else ema_state,
            optimizer=None if optimizer is None else optimizer.state_dict(),
            interim=settings.interim,
            notes=notes,
        ),
    )
