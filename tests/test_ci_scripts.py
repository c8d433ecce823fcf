"""The README's test command is what CI runs: one script, .ci/test, with every step in it.

.ci/test itself is run here on a copy of the .ci folder whose tools (set-up, cmake, ruff,
lint-imports, python) are stand-ins that record their calls, so its order of steps and its exit statuses are
checked without installing or building anything.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "the README starts with a bash block of commands"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_test_command_is_the_script_ci_runs() -> None:
    assert _readme_commands()[1] == "bash .ci/test"
    run = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line for line in run.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1] == 'exec bash .ci/test "$@"'
    assert not any("pytest" in line or "cmake" in line for line in commands), "CI steps belong in .ci/test"


def _stand_ins(root: Path, pytest_status: int) -> Path:
    shutil.copytree(REPO / ".ci", root / ".ci")
    log = root / "calls.log"
    (root / ".ci" / "setup").write_text(f"echo setup >> {log}\n")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, status in (("cmake", 0), ("ruff", 0), ("lint-imports", 0), ("python", pytest_status)):
        tool = bin_dir / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\nexit {status}\n')
        tool.chmod(0o755)
    return log


@pytest.mark.parametrize("pytest_status, expected", [(0, 0), (1, 1), (5, 1)])
def test_ci_test_runs_every_step_in_order_and_fails_when_pytest_collects_nothing(
    tmp_path: Path, pytest_status: int, expected: int
) -> None:
    log = _stand_ins(tmp_path, pytest_status)
    env = {**os.environ, "PATH": f"{tmp_path / '.venv' / 'bin'}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", str(tmp_path / ".ci" / "run"), "-k", "x"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == expected, result.stderr
    assert log.read_text().splitlines() == [
        "setup",
        "cmake -S . -B build",
        "cmake --build build -j2",
        "ruff check --quiet .",
        "lint-imports ",
        "python -m pytest -k x",
    ]
    if pytest_status == 5:
        assert "pytest collected no tests; that is a failure here" in result.stdout
