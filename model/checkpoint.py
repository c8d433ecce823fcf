"""Checkpoint I/O: weights + config + phase, loaded with `weights_only=True`.

A checkpoint is a plain dict of tensors, numbers and strings, so `torch.load(weights_only=True)`
can read it without unpickling code. Writes are atomic (temporary file, then rename).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model.config import ModelConfig
from model.unfoldldm import UnfoldLDM
from runtime.atomic_io import atomic_target
from runtime.errors import CheckpointError
from runtime.shipped import check_shipped_checkpoint, is_shipped_path

FORMAT = "unfoldldm-edge/checkpoint"
VERSION = 1
PHASES = ("phase1", "phase2_warmup", "phase2_joint")


@dataclass
class Checkpoint:
    config: ModelConfig
    model: dict[str, torch.Tensor]
    phase: str
    step: int = 0
    ema: dict[str, torch.Tensor] | None = None
    optimizer: dict[str, Any] | None = None
    interim: bool = False
    notes: dict[str, Any] = field(default_factory=dict)

    def inference_weights(self) -> dict[str, torch.Tensor]:
        """The EMA weights when present (what we ship and export), else the raw ones."""
        return self.ema if self.ema is not None else self.model


def save_checkpoint(path: str | os.PathLike[str], ckpt: Checkpoint) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": ckpt.config.to_dict(),
        "phase": ckpt.phase,
        "step": ckpt.step,
        "model": ckpt.model,
        "ema": ckpt.ema,
        "optimizer": ckpt.optimizer,
        "interim": ckpt.interim,
        "notes": ckpt.notes,
    }
    with atomic_target(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and validate a checkpoint; every problem is a CheckpointError naming file and cause."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if is_shipped_path(path):
        check_shipped_checkpoint(path)  # the default must be the very file we measured
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file; report, don't guess
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})".split("\n")[0]
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an UnfoldLDM-Edge checkpoint (missing format tag {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} is not supported (want {VERSION})")
    if payload.get("phase") not in PHASES:
        raise CheckpointError(f"{path}: unknown training phase {payload.get('phase')!r}")
    try:
        config = ModelConfig.from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad model config: {exc}") from exc
    ckpt = Checkpoint(
        config=config,
        model=payload["model"],
        phase=payload["phase"],
        step=int(payload.get("step", 0)),
        ema=payload.get("ema"),
        optimizer=payload.get("optimizer"),
        interim=bool(payload.get("interim", False)),
        notes=dict(payload.get("notes") or {}),
    )
    check_state_dict(path, config, ckpt.model)
    if ckpt.ema is not None:
        check_state_dict(path, config, ckpt.ema)
    return ckpt


def check_state_dict(path: Path, config: ModelConfig, state: dict[str, torch.Tensor]) -> None:
    """The weights must fit the config exactly: same names and shapes."""
    expected = UnfoldLDM(config).state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(f"{path}: weights do not match the {config.name!r} config ({detail})")
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape:
            raise CheckpointError(
                f"{path}: weight {name} has shape {tuple(state[name].shape)}, config expects {tuple(tensor.shape)}"
            )


def load_model(path: str | os.PathLike[str]) -> tuple[UnfoldLDM, Checkpoint]:
    """The inference model (EMA weights), in eval mode, and the checkpoint it came from."""
    ckpt = load_checkpoint(path)
    model = UnfoldLDM(ckpt.config)
    model.load_state_dict(ckpt.inference_weights())
    return model.eval(), ckpt
