"""A file that is not a checkpoint of ours says so in our words and never advises turning the
safe loader off (torch's own message for a refused file does)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint
from runtime.errors import CheckpointError

REPO = Path(__file__).resolve().parents[2]


class _RunsCode:
    """Pickles as a call of os.system: what a malicious checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _random_bytes(folder: Path) -> Path:
    path = folder / "random.pt"
    path.write_bytes(os.urandom(4096))
    return path


def _code_bearing(folder: Path) -> Path:
    path = folder / "code.pt"
    torch.save({"format": "unfoldldm-edge/checkpoint", "payload": _RunsCode(folder / "ran")}, path)
    return path


def _whole_module(folder: Path) -> Path:
    path = folder / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    return path


def _empty(folder: Path) -> Path:
    path = folder / "empty.pt"
    path.write_bytes(b"")
    return path


CASES = [
    (_random_bytes, "not a checkpoint of ours"),
    (_empty, "not a checkpoint of ours"),
    (_code_bearing, "refused: it holds Python objects other than tensors"),
    (_whole_module, "refused: it holds Python objects other than tensors"),
]


@pytest.mark.parametrize("make, expected", CASES)
def test_a_bad_checkpoint_says_what_it_is_not(tmp_path: Path, make, expected: str) -> None:
    path = make(tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message
    assert "weights_only" not in message.lower() and "weights only" not in message.lower()
    assert not (tmp_path / "ran").exists()  # the pickled call never ran


@pytest.mark.parametrize("make, expected", CASES[:3])
def test_build_engines_reports_a_bad_checkpoint_in_one_safe_line(tmp_path: Path, make, expected: str) -> None:
    path = make(tmp_path)
    result = subprocess.run(
        [sys.executable, "export/build_engines.py", "--checkpoint", str(path), "--out", str(tmp_path / "art"), "-q"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and expected in line
    assert "weights_only" not in result.stderr.lower() and "trust" not in result.stderr.lower()
    assert not (tmp_path / "ran").exists()
