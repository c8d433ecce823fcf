"""The build never loses a user's file: a folder that is not ours is refused, ours is cleaned of
our own stale files only, and an interrupted build of ours is still recognised."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from export.artifacts_folder import MARKER_NAME
from export.build import ExportOptions, build_artifacts, checkpoint_source
from runtime.errors import ExportError
from runtime.manifest import MANIFEST_NAME

REPO = Path(__file__).resolve().parents[2]
OPTIONS = ExportOptions(torch_programs=False, parity_shapes=((1, 16, 16),), threads=1, progress=False)


def _users_folder(root: Path, with_manifest: bool = True) -> Path:
    """A folder of someone's own files, two of them in graphs/ as in the report that found this."""
    folder = root / "mine"
    (folder / "graphs").mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes\n")
    if with_manifest:
        (folder / MANIFEST_NAME).write_text(json.dumps({"project": "someone else's", "items": [1, 2, 3]}))
    (folder / "graphs" / "data.csv").write_text("x,y\n1,2\n")
    (folder / "graphs" / "plot1.png").write_bytes(os.urandom(2048))
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _build(exported, out: Path, **overrides) -> object:
    source = checkpoint_source(exported.checkpoint, "phase2_joint", 0, False)
    options = dataclasses.replace(OPTIONS, **overrides)
    return build_artifacts(exported.model, source, out, "tiny", options)


def test_the_cli_refuses_a_users_folder_in_one_line_and_touches_nothing(export_tiny, tmp_path: Path) -> None:
    folder = _users_folder(tmp_path)
    before = _snapshot(folder)
    result = subprocess.run(
        [sys.executable, "export/build_engines.py", "--checkpoint", str(export_tiny().checkpoint), "--out",
         str(folder), "--no-fp16", "--no-int8", "--no-torch-programs", "-q"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {folder}: not empty and not an artifacts folder of ours")
    assert "--allow-non-empty" in line
    assert _snapshot(folder) == before  # every file, byte for byte, and nothing added


def test_allow_non_empty_still_replaces_no_file_of_the_user(export_tiny, tmp_path: Path) -> None:
    folder = _users_folder(tmp_path)
    before = _snapshot(folder)
    with pytest.raises(ExportError, match=f"{MANIFEST_NAME}: exists and was not written by this toolkit"):
        _build(export_tiny(), folder, allow_non_empty=True)
    assert _snapshot(folder) == before


def test_allow_non_empty_never_replaces_a_users_file_named_like_the_reference_frame(
    export_tiny, tmp_path: Path
) -> None:
    folder = _users_folder(tmp_path, with_manifest=False)
    (folder / "reference").mkdir()
    (folder / "reference" / "input.npy").write_bytes(b"the user's own array")
    before = _snapshot(folder)
    with pytest.raises(ExportError, match="reference/input.npy: exists and was not written by this toolkit"):
        _build(export_tiny(), folder, allow_non_empty=True)
    assert _snapshot(folder) == before


def test_allowed_into_a_users_folder_the_build_keeps_every_file_there_across_rebuilds(
    export_tiny, tmp_path: Path
) -> None:
    folder = _users_folder(tmp_path, with_manifest=False)
    before = _snapshot(folder)
    manifest = _build(export_tiny(), folder, allow_non_empty=True)
    assert (folder / MARKER_NAME).is_file() and (folder / MANIFEST_NAME).is_file()
    after = _snapshot(folder)
    assert {k: after[k] for k in before} == before
    # Now the folder is ours: a rebuild needs no flag and still keeps the user's files.
    _build(export_tiny(), folder)
    after = _snapshot(folder)
    assert {k: after[k] for k in before} == before
    ours = {f"graphs/{name}.fp32.onnx" for name in manifest.graphs} | {MANIFEST_NAME, MARKER_NAME}
    ours |= {"reference/input.npy", "reference/output_fp32.npy"}  # the manifest's reference frame
    assert set(after) == set(before) | ours


def test_a_rebuild_removes_only_the_stale_files_our_manifest_listed(export_tiny, tmp_path: Path) -> None:
    out = tmp_path / "art"
    first = _build(export_tiny(), out)  # two stages: stage1_* and stage2_*
    (out / "graphs" / "my_plot.png").write_bytes(b"the user's own file")
    (out / "graphs" / "stage9_gd.fp32.onnx").write_bytes(b"named like ours, never listed by us")
    second = _build(export_tiny(share_stage_weights=True), out)  # one shared pair: stage2_* are stale
    assert set(first.graphs) - set(second.graphs) == {"stage2_gd", "stage2_prox"}
    assert sorted(p.name for p in (out / "graphs").iterdir()) == sorted(
        [f"{n}.fp32.onnx" for n in second.graphs] + ["my_plot.png", "stage9_gd.fp32.onnx"]
    )
    assert (out / "graphs" / "my_plot.png").read_bytes() == b"the user's own file"


def test_an_interrupted_build_of_ours_is_recognised_by_its_marker(
    export_tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import export.build as build

    out = tmp_path / "art"
    first = _build(export_tiny(), out)
    real = build.parity_check

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "parity_check", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _build(export_tiny(share_stage_weights=True), out)
    assert not (out / MANIFEST_NAME).exists() and (out / MARKER_NAME).is_file()
    monkeypatch.setattr(build, "parity_check", real)
    second = _build(export_tiny(share_stage_weights=True), out)  # no flag needed, and the stale files go
    assert sorted(p.name for p in (out / "graphs").iterdir()) == sorted(f"{n}.fp32.onnx" for n in second.graphs)
    assert set(first.graphs) > set(second.graphs)


def test_a_folder_built_before_the_marker_existed_is_ours_by_its_manifest(export_tiny, tmp_path: Path) -> None:
    out = tmp_path / "art"
    _build(export_tiny(), out)
    (out / MARKER_NAME).unlink()
    _build(export_tiny(), out)  # not refused: its manifest.json is one of ours
    assert (out / MARKER_NAME).is_file()
