"""tools/on_gpu.sh, the one device script, runs end to end on a CPU in its dry-run mode."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "on_gpu.sh"


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.slow
def test_prepare_then_dry_run_trains_and_writes_the_burst(shared_data: Path, tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    env = {**os.environ, "GPU_DATA": str(tmp_path / "gpu_data"), "OUT": str(tmp_path / "out")}
    env["PYTHON"] = sys.executable
    prepared = _run(["--prepare"], env)
    assert prepared.returncode == 0, prepared.stderr
    assert len(list((tmp_path / "gpu_data" / "train").iterdir())) == len(list((shared_data / "train").iterdir()))
    assert len(list((tmp_path / "gpu_data" / "val").iterdir())) == 8
    done = _run(["--dry-run"], env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    burst = tmp_path / "out" / "burst"
    assert (burst / "model.pt").stat().st_size > 1_000_000
    assert (burst / "last.pt").is_file()
    assert "val PSNR" in (tmp_path / "out" / "burst.log").read_text()


def test_missing_data_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "GPU_DATA": str(tmp_path / "absent"), "OUT": str(tmp_path / "out")}
    done = _run([], env)
    assert done.returncode == 2
    assert "--prepare" in done.stderr and len(done.stderr.strip().splitlines()) == 1
