"""What runtime/restore.py tells the user: the precision it runs (an explicit one the artifacts
cannot give is an error naming the graphs), progress on long frames, one line on success."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import runtime.restore as restore
from runtime.manifest import MANIFEST_NAME, load_manifest
from runtime.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _image(path: Path, height: int = 40, width: int = 52) -> Path:
    pixels = np.random.default_rng(3).integers(0, 256, size=(height, width, 3)).astype(np.uint8)
    ok, buffer = cv2.imencode(path.suffix, pixels)
    assert ok
    path.write_bytes(buffer.tobytes())
    return path


def _restore(capsys, *args: object) -> tuple[int, list[str]]:
    code = restore.main([*map(str, args), "--backend", "onnxruntime", "--threads", "1"])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# --------------------------------------------------------------------------- precision


def _with_int8_for(artifacts: Path, root: Path, graph: str) -> Path:
    """A copy of `artifacts` where `graph` alone has an int8 variant (its FP32 graph under that name)."""
    copy = root / "partial"
    shutil.copytree(artifacts, copy)
    data = json.loads((copy / MANIFEST_NAME).read_text())
    fp32 = data["graphs"][graph]["variants"]["fp32"]
    shutil.copy(copy / fp32["onnx"]["path"], copy / "graphs" / f"{graph}.int8.onnx")
    data["graphs"][graph]["variants"]["int8"] = {
        "precision": "int8",
        "onnx": {"path": f"graphs/{graph}.int8.onnx", "sha256": fp32["onnx"]["sha256"]},
        "parent_sha256": fp32["onnx"]["sha256"],
    }
    (copy / MANIFEST_NAME).write_text(json.dumps(data))
    return copy


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_an_explicit_precision_the_artifacts_lack_is_an_error_naming_every_graph(
    tiny_export, tmp_path: Path, capsys, precision: str
) -> None:
    source = _image(tmp_path / "in.png")
    code, lines = _restore(
        capsys, source, "-o", tmp_path / "out.png", "--artifacts", tiny_export.artifacts, "--precision", precision
    )
    assert code == 1 and len(lines) == 1, lines
    graphs = ", ".join(load_manifest(tiny_export.artifacts).graphs_in_use())
    assert f"precision {precision} was asked for, but there is no {precision} variant of graphs {graphs}" in lines[0]
    assert not (tmp_path / "out.png").exists()


def test_int8_with_some_graphs_quantised_names_the_others_and_runs_nothing_in_fp32(
    tiny_export, tmp_path: Path, capsys
) -> None:
    artifacts = _with_int8_for(tiny_export.artifacts, tmp_path, "stage1_gd")
    source = _image(tmp_path / "in.png")
    code, lines = _restore(
        capsys, source, "-o", tmp_path / "out.png", "--artifacts", artifacts, "--precision", "int8", "-q"
    )
    assert code == 1 and len(lines) == 1
    assert "no int8 variant of graphs prior, stage1_prox, stage2_gd, stage2_prox (calibrate them" in lines[0]
    assert "stage1_gd" not in lines[0].split("variant of")[1]


def test_auto_says_which_plan_it_chose_under_verbose(tiny_export, tmp_path: Path) -> None:
    source = _image(tmp_path / "in.png")
    result = subprocess.run(
        [sys.executable, "runtime/restore.py", str(source), "-o", str(tmp_path / "out.png"), "--artifacts",
         str(tiny_export.artifacts), "--backend", "onnxruntime", "--threads", "1", "-v"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    plan = [line for line in result.stderr.splitlines() if "precision auto on onnxruntime/cpu runs:" in line]
    assert plan and plan[0].endswith("stage1_gd=fp32, prior=fp32, stage1_prox=fp32, stage2_gd=fp32, stage2_prox=fp32")


# --------------------------------------------------------------------------- progress and result


def test_a_single_image_ends_with_one_line_saying_what_was_written(tiny_export, tmp_path: Path, capsys) -> None:
    source = _image(tmp_path / "in.png")
    target = tmp_path / "out.png"
    code, lines = _restore(capsys, source, "-o", target, "--artifacts", tiny_export.artifacts)
    assert code == 0 and len(lines) == 1
    expected = rf"restored {re.escape(str(source))} -> {re.escape(str(target))} \(whole, \d+\.\d s\)"
    assert re.fullmatch(expected, lines[0]), lines


def test_a_long_frame_shows_per_tile_progress(
    tiny_export, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(restore, "PROGRESS_DELAY_S", 0.0)  # every frame counts as long here
    source = _image(tmp_path / "in.png", 64, 96)
    target = tmp_path / "out.png"
    code = restore.main(
        [str(source), "-o", str(target), "--artifacts", str(tiny_export.artifacts), "--backend", "onnxruntime",
         "--threads", "1", "--tile", "32", "--tile-overlap", "8"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0
    # 2 stages x (2 halves x 12 tiles + the prior): the bar reaches 50 of 50 steps.
    assert re.search(r"in\.png: 100%\|.*\| 50/50 ", err.replace("\r", "\n")), err
    assert err.strip().splitlines()[-1].startswith(f"restored {source} -> {target} (in 32x32 tiles, ")


def test_progress_is_reported_from_work_already_waited_for(tiny_export) -> None:
    frame = np.random.default_rng(0).random((40, 52, 3), dtype=np.float32)
    with Pipeline.from_manifest(tiny_export.artifacts, "onnxruntime", "cpu", threads=1) as pipeline:
        calls: list[tuple[int, int]] = []
        downloads = {"n": 0}
        real = pipeline.backend.download

        def counted(tensor):
            downloads["n"] += 1
            return real(tensor)

        pipeline.backend.download = counted
        quiet = pipeline.restore(frame)
        without = downloads["n"]
        reported = pipeline.restore(frame, progress=lambda done, total: calls.append((done, total)))
        assert downloads["n"] == 2 * without  # progress made no extra transfer (nor the wait one needs)
        np.testing.assert_array_equal(quiet, reported)
    assert calls == [(3, 6), (6, 6)]  # after each stage's three graphs: the CPU runs them synchronously
