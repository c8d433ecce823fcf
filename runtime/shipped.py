"""The shipped default model: where its checkpoint lies and the sha256 it must have.

Every tool that falls back to the default (`export/build_engines.py`, `model/evaluate.py`,
`export/benchmark_cpu.py`, and through the default artifacts folder `runtime/restore.py`)
checks the file against this pin, so a damaged or swapped checkpoint is an error, not a
silently different model. Replacing the weights means updating SHIPPED_SHA256 in the same
commit (a test checks the pair). No torch here: the runtime imports this module too.
"""

from __future__ import annotations

import os
from pathlib import Path

from runtime.cli import REPO
from runtime.errors import CheckpointError
from runtime.manifest import sha256_file

SHIPPED_CHECKPOINT = REPO / "model" / "weights" / "edge.pt"
SHIPPED_SHA256 = "bb389295fa33287b16cb9ee708ac3d525384666bfa37450815ea97612e2024a5"


def is_shipped_path(path: str | os.PathLike[str]) -> bool:
    """True when `path` names the shipped checkpoint (however it is spelled)."""
    return Path(path).resolve() == SHIPPED_CHECKPOINT.resolve()


def check_shipped_checkpoint(path: str | os.PathLike[str] = SHIPPED_CHECKPOINT) -> Path:
    """The shipped checkpoint's path once its sha256 matches the pin; CheckpointError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: the shipped checkpoint is missing (restore it with git or pass --checkpoint)")
    actual = sha256_file(path)
    if actual != SHIPPED_SHA256:
        raise CheckpointError(
            f"{path}: sha256 {actual[:12]}... is not the shipped model's {SHIPPED_SHA256[:12]}...; "
            "the file is damaged or was replaced (restore it with `git checkout -- model/weights`)"
        )
    return path
