"""model/training_record.py: reading history.jsonl, clear errors, and the curve it draws."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from model.training_record import main, read_history
from runtime.errors import InputError


def _history(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_history_is_plotted_against_total_hours(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = _history(tmp_path / "h.jsonl", [
        {"step": 500, "phase": "phase1", "hours": 0.1, "hours_total": 0.9, "val_psnr": 27.5, "val_input_psnr": 20.5},
        {"step": 1000, "phase": "phase2_joint", "hours": 0.2, "hours_total": 1.0, "val_psnr": 28.0},
    ])
    assert main([str(history), "--plot", str(tmp_path / "curve.png")]) == 0
    out = capsys.readouterr().out
    assert "0.90 h  step    500  phase1" in out and "1.00 h  step   1000  phase2_joint" in out
    image = cv2.imread(str(tmp_path / "curve.png"))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 400


def test_bad_history_files_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match="no such history file"):
        read_history(tmp_path / "missing.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"step": 1, "phase": "phase1", "hours": 0.1, "val_psnr": 20}\n{oops\n', encoding="utf-8")
    with pytest.raises(InputError, match="broken.jsonl:2: not JSON"):
        read_history(broken)
    partial = _history(tmp_path / "partial.jsonl", [{"step": 1, "phase": "phase1"}])
    assert main([str(partial)]) == 2
    assert "partial.jsonl:1: a validation record needs" in capsys.readouterr().err
