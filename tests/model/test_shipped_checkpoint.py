"""The shipped default checkpoint is pinned by sha256, and every load of it checks the pin."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model.checkpoint import load_checkpoint
from runtime import shipped
from runtime.errors import CheckpointError
from runtime.manifest import sha256_file


def test_the_shipped_file_matches_its_pin() -> None:
    assert shipped.SHIPPED_CHECKPOINT.is_file(), "model/weights/edge.pt is missing"
    assert sha256_file(shipped.SHIPPED_CHECKPOINT) == shipped.SHIPPED_SHA256
    assert shipped.SHIPPED_CHECKPOINT.stat().st_size <= 20 * 2**20  # the size limit


def test_loading_the_default_path_checks_its_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "edge.pt"
    shutil.copyfile(shipped.SHIPPED_CHECKPOINT, copy)
    monkeypatch.setattr(shipped, "SHIPPED_CHECKPOINT", copy)
    assert load_checkpoint(copy).config.name == "edge"  # intact: loads
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the weights: torch would still read it
    copy.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 .* is not the shipped model's"):
        load_checkpoint(copy)
    copy.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        shipped.check_shipped_checkpoint(copy)


def test_other_paths_are_not_pinned(tmp_path: Path) -> None:
    """Any other checkpoint (a user's own training run) loads without the pin."""
    copy = tmp_path / "mine.pt"
    shutil.copyfile(shipped.SHIPPED_CHECKPOINT, copy)
    assert not shipped.is_shipped_path(copy)
    assert shipped.is_shipped_path(shipped.SHIPPED_CHECKPOINT.parent / ".." / "weights" / "edge.pt")
