"""The throughput benchmark times the real train.py of the old tree and of this one."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from model.train_throughput import REPO, main


@pytest.mark.slow
def test_baseline_and_current_are_timed_from_their_own_trees(shared_data: Path, tmp_path: Path, capsys) -> None:
    if shutil.which("git") is None or subprocess.run(["git", "-C", str(REPO), "rev-parse"], check=False).returncode:
        pytest.skip("needs the git history of the repository")
    out = tmp_path / "throughput.json"
    args = ["--variants", "baseline,current", "--phases", "phase2_joint", "--size", "tiny", "--steps", "3"]
    args += ["--warmup", "1", "--batch-size", "2", "--crop", "32", "--data", str(shared_data / "val" / "CBSD68")]
    assert main([*args, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["variant"], r["phase"]) for r in rows] == [("baseline", "phase2_joint"), ("current", "phase2_joint")]
    for row in rows:
        assert len(row["step_seconds"]) == 3
        assert row["pixels_per_step"] == 2 * 32 * 32
        assert row["pixels_per_second"] > 0
    assert "phase2_joint  current" in capsys.readouterr().out


def test_unknown_variant_is_refused(capsys) -> None:
    assert main(["--variants", "fastest"]) == 2
    assert "unknown variant" in capsys.readouterr().err
