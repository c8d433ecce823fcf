"""runtime/restore.py: formats, folders, and every kind of bad input, each with one clear line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from runtime.manifest import MANIFEST_NAME
from runtime.restore import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _write(path: Path, pixels: np.ndarray) -> Path:
    ok, buffer = cv2.imencode(path.suffix, pixels)
    assert ok
    path.write_bytes(buffer.tobytes())
    return path


def _pixels(height: int, width: int, channels: int, dtype: type, seed: int = 0) -> np.ndarray:
    top = np.iinfo(dtype).max
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, top + 1, size=shape).astype(dtype)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main([*map(str, args), "-q", "--threads", "1"])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith("."))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_formats_are_kept_and_alpha_passes_through(
    tiny_export, tmp_path: Path, capsys, dtype: type, channels: int
) -> None:
    source = _write(tmp_path / "in.png", _pixels(29, 35, channels, dtype))
    target = tmp_path / "out.png"
    code, lines = _run(capsys, source, "-o", target, "--artifacts", tiny_export.artifacts, "--backend", "onnxruntime")
    assert (code, lines) == (0, [])
    original = cv2.imdecode(np.fromfile(source, np.uint8), cv2.IMREAD_UNCHANGED)
    restored = cv2.imdecode(np.fromfile(target, np.uint8), cv2.IMREAD_UNCHANGED)
    assert restored.dtype == original.dtype and restored.shape == original.shape
    if channels == 4:
        np.testing.assert_array_equal(restored[:, :, 3], original[:, :, 3])


def test_a_folder_receives_only_the_restored_images_under_the_same_names(tiny_export, tmp_path: Path, capsys) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    _write(inputs / "a.png", _pixels(20, 24, 3, np.uint8))
    _write(inputs / "b.jpg", _pixels(33, 18, 3, np.uint8, 1))
    _write(inputs / "c.tif", _pixels(16, 16, 1, np.uint16, 2))
    (inputs / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code, lines = _run(capsys, inputs, "-o", out, "--artifacts", tiny_export.artifacts)
    assert (code, lines) == (0, [])
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg", "c.tif"]


def test_a_mixed_folder_restores_the_good_and_lists_the_bad(tiny_export, tmp_path: Path, capsys) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = _write(inputs / "good.png", _pixels(24, 30, 3, np.uint8))
    _write(inputs / "good2.png", _pixels(18, 20, 4, np.uint8))
    (inputs / "truncated.png").write_bytes(good.read_bytes()[:-40])
    (inputs / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg \xff\xd9")
    (inputs / "empty.png").write_bytes(b"")
    _write(inputs / "tiny.png", _pixels(1, 9, 3, np.uint8))
    out = tmp_path / "out"
    code, lines = _run(capsys, inputs, "-o", out, "--artifacts", tiny_export.artifacts)
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["good.png", "good2.png"]
    assert _leftovers(out) == []
    assert lines == [
        f"error: {inputs / 'corrupt.jpg'}: not a readable image (corrupt or unsupported format)",
        f"error: {inputs / 'empty.png'}: file is empty",
        f"error: {inputs / 'tiny.png'}: frame 9x1 is smaller than the model multiple 2: "
        "the model needs at least 2x2 pixels",
        f"error: {inputs / 'truncated.png'}: truncated PNG (no IEND chunk at the end)",
        "error: 4 of 6 images failed (listed above)",
    ]


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: d / "missing.png", "no such file or folder"),
        (lambda d: (d / "link.png").symlink_to(d / "gone.png") or d / "link.png", "no such file or folder"),
        (lambda d: (d / "t.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30) and d / "t.png", "truncated PNG"),
        (lambda d: (d / "c.png").write_bytes(b"garbage" * 10) and d / "c.png", "not a readable image"),
        (lambda d: _write(d / "small.png", _pixels(1, 1, 3, np.uint8)), "smaller than the model multiple"),
    ],
)
def test_a_bad_single_image_gets_one_line_and_no_output(
    tiny_export, tmp_path: Path, capsys, make, expected: str
) -> None:
    source = make(tmp_path)
    target = tmp_path / "out" / "restored.png"
    target.parent.mkdir()
    code, lines = _run(capsys, source, "-o", target, "--artifacts", tiny_export.artifacts)
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert list(target.parent.iterdir()) == []


def _damaged_artifacts(tiny_export, tmp_path: Path, how: str) -> Path:
    out = tmp_path / "art"
    shutil.copytree(tiny_export.artifacts, out)
    data = json.loads((out / MANIFEST_NAME).read_text())
    if how == "schema":
        data["schema_version"] = 99
    elif how == "model":
        data["format"] = "other-project/artifacts"
    elif how == "edited":
        graph = out / "graphs" / "stage2_gd.fp32.onnx"
        graph.write_bytes(graph.read_bytes()[:-1] + b"\0")
    elif how == "missing":
        (out / MANIFEST_NAME).unlink()
        return out
    (out / MANIFEST_NAME).write_text(json.dumps(data))
    return out


@pytest.mark.parametrize(
    "how, expected",
    [
        ("schema", "field schema_version is 99, this runtime reads version 1"),
        ("model", "not an UnfoldLDM-Edge artifacts manifest"),
        ("edited", "stage2_gd.fp32.onnx: sha256 does not match graphs.stage2_gd.variants.fp32.onnx.sha256"),
        ("missing", "no manifest.json here (run export/build_engines.py"),
    ],
)
def test_bad_artifacts_get_one_line_and_no_output(tiny_export, tmp_path: Path, capsys, how: str, expected: str) -> None:
    artifacts = _damaged_artifacts(tiny_export, tmp_path, how)
    source = _write(tmp_path / "in.png", _pixels(20, 20, 3, np.uint8))
    code, lines = _run(capsys, source, "-o", tmp_path / "out.png", "--artifacts", artifacts)
    assert code == 1 and len(lines) == 1 and expected in lines[0], lines
    assert not (tmp_path / "out.png").exists()


def test_tensorrt_backend_and_bad_arguments_are_clear(tiny_export, tmp_path: Path, capsys) -> None:
    source = _write(tmp_path / "in.png", _pixels(20, 20, 3, np.uint8))
    code, lines = _run(
        capsys, source, "-o", tmp_path / "o.png", "--artifacts", tiny_export.artifacts, "--backend", "tensorrt"
    )
    # One line that names the backend and why it cannot run here (no TensorRT on this machine).
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: tensorrt on cuda: ")
    assert "TensorRT" in lines[0]
    code, lines = _run(capsys, source, "-o", source, "--artifacts", tiny_export.artifacts)
    assert code == 1 and "the output is the input file" in lines[0]
    code, lines = _run(capsys, source, "-o", tmp_path / "o.png", "--artifacts", tiny_export.artifacts, "--tile", "33")
    assert code == 1 and "tile size 33 must be a multiple of 2" in lines[0]
    code, lines = _run(capsys, source, "-o", tmp_path / "o.gif", "--artifacts", tiny_export.artifacts)
    assert code == 1 and "unsupported extension '.gif'" in lines[0]
    assert not list(tmp_path.glob("o.*"))


def test_restore_runs_as_a_file_with_tiles(tiny_export, tmp_path: Path) -> None:
    source = _write(tmp_path / "in.png", _pixels(50, 70, 3, np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "runtime/restore.py",
            str(source),
            "-o",
            str(out),
            "--artifacts",
            str(tiny_export.artifacts),
            "--backend",
            "onnxruntime",
            "--device",
            "cpu",
            "--tile",
            "32",
            "--tile-overlap",
            "8",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert [p.name for p in out.iterdir()] == ["in.png"]  # an existing folder as OUTPUT: same name inside


def test_the_default_artifacts_message_tells_the_user_to_build_first(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runtime.restore as restore

    monkeypatch.setattr(restore, "DEFAULT_ARTIFACTS", tmp_path / "artifacts" / "edge")
    source = _write(tmp_path / "in.png", _pixels(20, 20, 3, np.uint8))
    code = restore.main([str(source), "-o", str(tmp_path / "o.png")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1
    assert "has not been exported yet; run `python export/build_engines.py` first" in lines[0]


def test_default_artifacts_from_other_weights_are_refused(
    tiny_export, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Artifacts exported from older weights (the interim model, say) must not pass as the shipped model."""
    import runtime.restore as restore

    monkeypatch.setattr(restore, "DEFAULT_ARTIFACTS", tiny_export.artifacts)
    source = _write(tmp_path / "in.png", _pixels(20, 20, 3, np.uint8))
    code = restore.main([str(source), "-o", str(tmp_path / "o.png"), "--backend", "onnxruntime"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1
    assert "not from the shipped model; run `python export/build_engines.py`" in lines[0]
    assert not (tmp_path / "o.png").exists()
