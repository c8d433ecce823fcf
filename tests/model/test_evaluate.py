"""evaluate.py end to end: table, CSV and grid from real images; the shipped model on CBSD68."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch

from model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from model.config import tiny_config
from model.unfoldldm import UnfoldLDM

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "model" / "weights" / "edge_interim.pt"


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(REPO / "model" / "evaluate.py"), "--threads", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open() as f:
        return {(r["case"], r["method"]): r for r in csv.DictReader(f)}


def test_evaluate_writes_table_csv_and_grid(shared_data: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, Checkpoint(config=tiny_config(), model=UnfoldLDM(tiny_config()).state_dict(), phase="phase1"))
    result = _run(["--checkpoint", str(ckpt), "--data", str(shared_data / "val" / "CBSD68"), "--limit", "2",
                   "--crop", "64", "--cases", "noise25", "jpeg20", "--nlm-strengths", "5", "15",
                   "--nlm-tuning-images", "2", "--out", str(tmp_path / "eval")])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "noise25" in result.stdout and "jpeg20" in result.stdout
    rows = _rows(tmp_path / "eval" / "results.csv")
    assert set(rows) == {(c, m) for c in ("noise25", "jpeg20") for m in ("input", "nlm", "unfoldldm")}
    # Sigma-25 Gaussian noise on 8-bit images is about 20 dB; tuned NLM must improve on it.
    assert 19.0 < float(rows[("noise25", "input")]["psnr_db"]) < 22.0
    assert float(rows[("noise25", "nlm")]["psnr_db"]) > float(rows[("noise25", "input")]["psnr_db"])
    grid = cv2.imread(str(tmp_path / "eval" / "grid.png"))
    assert grid is not None and grid.shape[0] > 2 * 64 and grid.shape[1] > 4 * 64


def test_evaluate_reports_a_bad_checkpoint_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    result = _run(["--checkpoint", str(bad), "--out", str(tmp_path / "eval")])
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and "bad.pt" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "eval").exists()


@pytest.mark.slow
def test_shipped_checkpoint_beats_the_noisy_input_on_cbsd68(shared_data: Path, tmp_path: Path) -> None:
    if not SHIPPED.is_file():
        pytest.fail(f"the shipped checkpoint {SHIPPED} is missing")
    assert load_checkpoint(SHIPPED).interim
    result = _run(["--data", str(shared_data / "val" / "CBSD68"), "--limit", "8", "--crop", "128",
                   "--cases", "noise25", "--nlm-strengths", "--out", str(tmp_path / "eval")])
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _rows(tmp_path / "eval" / "results.csv")
    gain = float(rows[("noise25", "unfoldldm")]["psnr_db"]) - float(rows[("noise25", "input")]["psnr_db"])
    assert gain > 3.0, f"only {gain:.2f} dB over the noisy input"
