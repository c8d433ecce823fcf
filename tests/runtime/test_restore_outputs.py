"""runtime/restore.py never loses an output silently: existing files are refused unless
--overwrite, every output is checked before anything is restored, and a folder that cannot be
written gets one clear line, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from runtime.restore import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _image(path: Path, height: int = 24, width: int = 30, channels: int = 3, dtype: type = np.uint8) -> Path:
    top = np.iinfo(dtype).max
    shape = (height, width) if channels == 1 else (height, width, channels)
    pixels = np.random.default_rng(len(path.name)).integers(0, top + 1, size=shape).astype(dtype)
    ok, buffer = cv2.imencode(path.suffix, pixels)
    assert ok
    path.write_bytes(buffer.tobytes())
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, list[str]]:
    code = main([*map(str, args), "-q", "--threads", "1", "--backend", "onnxruntime"])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# --------------------------------------------------------------------------- existing outputs


def test_an_existing_output_image_is_refused_by_name_and_kept(tiny_export, tmp_path: Path, capsys) -> None:
    source = _image(tmp_path / "in.png")
    target = tmp_path / "out.png"
    target.write_bytes(b"the user's earlier result")
    code, lines = _run(capsys, source, "-o", target, "--artifacts", tiny_export.artifacts)
    assert code == 1 and lines == [f"error: {target}: already exists; pass --overwrite to replace"]
    assert target.read_bytes() == b"the user's earlier result"
    code, lines = _run(capsys, source, "-o", target, "--artifacts", tiny_export.artifacts, "--overwrite")
    assert (code, lines) == (0, [])
    assert cv2.imdecode(np.fromfile(target, np.uint8), cv2.IMREAD_UNCHANGED).shape == (24, 30, 3)


def test_a_folder_run_refuses_before_restoring_any_image(tiny_export, tmp_path: Path, capsys) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        _image(inputs / name)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"kept")
    (out / "c.png").write_bytes(b"kept too")
    code, lines = _run(capsys, inputs, "-o", out, "--artifacts", tiny_export.artifacts)
    assert code == 1
    assert lines == [f"error: {out / 'b.png'}: already exists (and 1 more of the outputs); pass --overwrite to replace"]
    assert sorted(p.name for p in out.iterdir()) == ["b.png", "c.png"]  # not even a.png was written
    assert (out / "b.png").read_bytes() == b"kept"


def _clip(path: Path, encode_clip) -> Path:
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 32, 48, 3)).astype(np.uint8)
    return encode_clip(path, frames, "FFV1", 24.0)


def test_an_existing_video_or_frame_folder_is_refused_unless_overwrite(
    tiny_export, tmp_path: Path, capsys, encode_clip
) -> None:
    clip = _clip(tmp_path / "clip.mkv", encode_clip)
    video = tmp_path / "restored.avi"
    video.write_bytes(b"an earlier video")
    code, lines = _run(capsys, clip, "-o", video, "--artifacts", tiny_export.artifacts)
    assert code == 1 and lines == [f"error: {video}: already exists; pass --overwrite to replace it"]
    assert video.read_bytes() == b"an earlier video"
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "000002.png").write_bytes(b"an earlier frame")
    code, lines = _run(capsys, clip, "-o", frames, "--artifacts", tiny_export.artifacts)
    assert code == 1 and lines == [f"error: {frames / '000002.png'}: already exists; pass --overwrite to replace"]
    assert sorted(p.name for p in frames.iterdir()) == ["000002.png"]
    code, _ = _run(capsys, clip, "-o", video, "--artifacts", tiny_export.artifacts, "--overwrite")
    assert code == 0 and video.read_bytes() != b"an earlier video"


# --------------------------------------------------------------------------- checks before the work


@pytest.fixture
def graph_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The graphs ONNX Runtime ran in this test (a record of the real calls, which still run)."""
    runs: list[str] = []
    real = OnnxRuntimeBackend._run

    def recorded(self, graph, feeds):
        runs.append(graph)
        return real(self, graph, feeds)

    monkeypatch.setattr(OnnxRuntimeBackend, "_run", recorded)
    return runs


@pytest.mark.parametrize(
    "channels, dtype, output, expected",
    [
        (4, np.uint8, "out.jpg", ".jpg cannot store an alpha channel"),
        (3, np.uint16, "out.jpg", ".jpg cannot store 16-bit samples"),
        (3, np.uint16, "out.webp", ".webp cannot store 16-bit samples"),
        (3, np.uint8, "out.gif", "unsupported extension '.gif'"),
        (3, np.uint8, "missing/out.png", "missing does not exist"),
    ],
)
def test_an_output_that_cannot_hold_the_result_is_refused_before_any_graph_runs(
    tiny_export, tmp_path: Path, capsys, graph_runs: list[str], channels: int, dtype: type, output: str, expected: str
) -> None:
    source = _image(tmp_path / "in.png", channels=channels, dtype=dtype)
    code, lines = _run(capsys, source, "-o", tmp_path / output, "--artifacts", tiny_export.artifacts)
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ")
    assert expected in lines[0], lines
    assert graph_runs == []  # refused before the restoration, not after it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


# --------------------------------------------------------------------------- read-only outputs

_UNSHARE = shutil.which("unshare")


def _in_read_only_mount(folder: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` (shell) where `folder` is a read-only mount, in a private mount namespace."""
    inner = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && {script}"
    return subprocess.run(
        [_UNSHARE, "--user", "--map-root-user", "--mount", "sh", "-c", inner],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def _read_only_mounts_work(tmp_path: Path) -> bool:
    if _UNSHARE is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    result = _in_read_only_mount(probe, f"touch {probe}/x")
    return "Read-only file system" in result.stderr


def test_writing_into_a_read_only_file_system_is_one_line_per_image(tiny_export, tmp_path: Path) -> None:
    if not _read_only_mounts_work(tmp_path):
        pytest.skip("needs unshare with user and mount namespaces to make a read-only mount")
    out = tmp_path / "ro"
    out.mkdir()
    code = (
        "from pathlib import Path; import numpy as np; "
        "from runtime.errors import InputError; from runtime.image_io import Image, write_image\n"
        "image = Image(rgb=np.zeros((4, 4, 3), np.float32), alpha=None, bit_depth=8, grey=False)\n"
        f"try:\n    write_image(Path({str(out)!r}) / 'a.png', image)\n"
        "except InputError as exc:\n    print('InputError:', exc)\n"
    )
    result = _in_read_only_mount(out, f'{sys.executable} -c "{code}"')
    assert result.stdout.strip() == f"InputError: {out / 'a.png'}: cannot be written (Read-only file system)"
    assert "Traceback" not in result.stderr

    inputs = tmp_path / "in"
    inputs.mkdir()
    _image(inputs / "a.png")
    _image(inputs / "b.png")
    restore = (
        f"{sys.executable} runtime/restore.py {inputs} -o {out} --artifacts {tiny_export.artifacts} "
        "--backend onnxruntime --threads 1"
    )
    result = _in_read_only_mount(out, restore)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {out}: cannot write in the output folder (Read-only file system)"
    ]
