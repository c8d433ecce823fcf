"""Checkpoint I/O: weights + config + phase, loaded with `weights_only=True`.

A checkpoint is a plain dict of tensors, numbers and strings, so `torch.load(weights_only=True)`
can read it without unpickling code. Writes are atomic (temporary file, then rename).

A file that is not one says what it is not, in our words: torch's own message for a file its
safe loader refuses advises turning the safe loader off, which must never reach a user who was
handed a file that holds code.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
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
    payload = _load_payload(path)
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


# What torch.load raises for a damaged or foreign archive (besides the safe loader's refusal).
_DAMAGED = (RuntimeError, EOFError, KeyError, IndexError, ValueError, TypeError, AttributeError, OSError)


def _load_payload(path: Path) -> Any:
    """torch.load(weights_only=True), with every failure a CheckpointError that says what the
    file is not; torch's own text is never shown (see the module docstring)."""
    if not zipfile.is_zipfile(path):  # torch.save always writes a zip archive
        raise CheckpointError(f"{path}: not a checkpoint of ours (not a PyTorch checkpoint file at all)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": noise for a refused file
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused: it holds Python objects other than tensors, numbers and strings (classes or "
            "code that loading would run), so it is not a checkpoint of ours; checkpoints are only ever "
            "read with the safe loader"
        ) from exc
    except (*_DAMAGED, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: not a checkpoint of ours (a damaged or foreign PyTorch file)") from exc


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


def release_copy(ckpt: Checkpoint) -> Checkpoint:
    """What is shipped from a training checkpoint: its EMA weights as the model, nothing to resume
    with (no optimizer state, no raw weights), the config, step and notes kept (docs/MODEL_CARD.md)."""
    return Checkpoint(
        config=ckpt.config,
        model=ckpt.inference_weights(),
        phase=ckpt.phase,
        step=ckpt.step,
        interim=ckpt.interim,
        notes=dict(ckpt.notes),
    )


def load_model(path: str | os.PathLike[str]) -> tuple[UnfoldLDM, Checkpoint]:
    """The inference model (EMA weights), in eval mode, and the checkpoint it came from."""
    ckpt = load_checkpoint(path)
    model = UnfoldLDM(ckpt.config)
    model.load_state_dict(ckpt.inference_weights())
    return model.eval(), ckpt
