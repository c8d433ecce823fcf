"""The layer contracts of pyproject.toml [tool.importlinter] hold (CI runs lint-imports too)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_lint_imports_keeps_every_contract() -> None:
    tool = Path(sys.executable).with_name("lint-imports")
    if not tool.is_file():
        found = shutil.which("lint-imports")
        if found is None:
            pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
        tool = Path(found)
    result = subprocess.run([str(tool), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
