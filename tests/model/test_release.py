"""model/release.py: a release keeps the EMA weights and drops what only resuming needs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from model.config import tiny_config
from model.release import main
from model.unfoldldm import UnfoldLDM


def _training_checkpoint(path: Path) -> Checkpoint:
    torch.manual_seed(0)
    model = UnfoldLDM(tiny_config())
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    ema = {k: v + 1.0 if v.is_floating_point() else v.clone() for k, v in raw.items()}
    optimizer = torch.optim.Adam(model.parameters())
    ckpt = Checkpoint(
        config=tiny_config(),
        model=raw,
        phase="phase2_joint",
        step=2300,
        ema=ema,
        optimizer=optimizer.state_dict(),
        notes={"seconds": 11241.0, "earlier_rounds": [{"step": 5000}]},
    )
    save_checkpoint(path, ckpt)
    return ckpt


def test_release_keeps_the_ema_weights_and_notes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _training_checkpoint(tmp_path / "last.pt")
    assert main([str(tmp_path / "last.pt"), str(tmp_path / "release.pt")]) == 0
    assert "step 2300, sha256 " in capsys.readouterr().out
    release = load_checkpoint(tmp_path / "release.pt")
    assert release.ema is None and release.optimizer is None
    assert release.step == 2300 and release.phase == "phase2_joint"
    assert release.notes == source.notes
    assert source.ema is not None
    for name, tensor in source.ema.items():
        assert torch.equal(release.model[name], tensor), name
    assert not torch.equal(release.model[next(iter(source.ema))], source.model[next(iter(source.ema))])


def test_release_refuses_to_overwrite_its_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _training_checkpoint(tmp_path / "last.pt")
    before = (tmp_path / "last.pt").read_bytes()
    assert main([str(tmp_path / "last.pt"), str(tmp_path / "last.pt")]) == 2
    assert "must not overwrite" in capsys.readouterr().err
    assert (tmp_path / "last.pt").read_bytes() == before


def test_release_of_a_foreign_file_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main([str(tmp_path / "junk.pt"), str(tmp_path / "out.pt")]) == 2
    assert "not a checkpoint of ours" in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists()
