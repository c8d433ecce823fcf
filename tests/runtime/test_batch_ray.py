"""runtime/batch.py on a real local Ray cluster (2 CPUs, one per module) with real data: crops of
CBSD68 photographs and a short clip of Vid4 'walk' frames, restored by the tiny exported model
on ONNX Runtime, one thread per actor.

Every output must be the bytes runtime/restore.py writes for the same input with the same
flags; a corrupt input is reported and the rest are done; a second run skips everything; an
actor killed mid-job (the crash hook of runtime/batch_worker.py) is restarted by Ray and its
batch re-run, so nothing is lost or written twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime import batch, restore
from runtime.batch_worker import CRASH_HOOK_VARIABLE
from tests.runtime.video_files import decoded_frames

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a local cluster and its actors start in about ten seconds

REPO = Path(__file__).resolve().parents[2]
FLAGS = ["--backend", "onnxruntime", "--device", "cpu", "--threads", "1", "--precision", "fp32"]


@pytest.fixture(scope="module", autouse=True)
def local_cluster() -> Iterator[None]:
    """One local cluster for the module: batch.main uses a Ray already started in its process.
    The actors import this checkout's code: PYTHONPATH points them at it, whichever install the
    interpreter has."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def archive(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small archive: four real photo crops (two in a subfolder, one grey) and a 4-frame clip."""
    root = tmp_path_factory.mktemp("archive")
    (root / "roll2").mkdir()
    photos = sorted((shared_data / "val" / "CBSD68").glob("*.png"))[:4]
    for i, photo in enumerate(photos):
        crop = cv2.imread(str(photo))[40:88, 60:124]
        if i == 3:
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        cv2.imwrite(str(root / ("roll2" if i % 2 else "") / f"photo{i}.png"), crop)
    frames = sorted((shared_data / "video" / "vid4_walk").glob("*.png"))[:4]
    writer = cv2.VideoWriter(str(root / "walk.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 24.0, (96, 64))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.resize(cv2.imread(str(frame)), (96, 64), interpolation=cv2.INTER_AREA))
    writer.release()
    return root


@pytest.fixture(scope="module")
def expected(archive: Path, tiny_export, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """What runtime/restore.py writes for each item of the archive, by relative path."""
    out = tmp_path_factory.mktemp("restore_py")
    results = {}
    for source in sorted(p for p in archive.rglob("*") if p.is_file()):
        relative = source.relative_to(archive).as_posix()
        target = out / relative.replace("/", "_")
        code = restore.main([str(source), "-o", str(target), "--artifacts", str(tiny_export.artifacts), "-q", *FLAGS])
        assert code == 0
        results[relative] = target.read_bytes()
    return results


def _batch(*args: object) -> int:
    return batch.main([*map(str, args), "--actors", "2", "--cpus-per-actor", "0.5", "--batch-size", "2", "-q", *FLAGS])


def _report(out: Path) -> dict:
    return json.loads((out / "batch_report.json").read_text())


def _check_outputs(out: Path, expected: dict[str, bytes]) -> None:
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted([*expected, ".batch_done.jsonl", "batch_report.json"])  # no temporary file left
    for relative, data in expected.items():
        if relative.endswith(".avi"):
            # The clip: the same frames in the same order (and, with this OpenCV, the same bytes).
            mine, theirs = decoded_frames(out / relative), _frames_from_bytes(data, out.parent / "expected.avi")
            assert len(mine) == len(theirs) == 4
            assert all(np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True))
        assert (out / relative).read_bytes() == data, relative


def _frames_from_bytes(data: bytes, scratch: Path) -> list[np.ndarray]:
    scratch.write_bytes(data)
    return decoded_frames(scratch)


def test_every_output_is_what_restore_writes_and_a_corrupt_input_is_reported(
    archive: Path, expected: dict[str, bytes], tiny_export, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    whole = (archive / "photo0.png").read_bytes()
    (inputs / "cut.png").write_bytes(whole[: len(whole) // 2])  # a real photo, cut off mid-file
    out = tmp_path / "out"
    code = _batch(archive, inputs, "-o", out, "--artifacts", tiny_export.artifacts)
    assert code == 1
    _check_outputs(out, expected)
    report = _report(out)
    assert report["summary"] | {"startup_s": 0, "wall_s": 0, "items_per_s": 0, "frames_per_s": 0} == {
        "items": 6, "done": 5, "skipped": 0, "failed": 1, "not_run": 0, "frames": 4 + 4, "interrupted": False,
        "startup_s": 0, "wall_s": 0, "items_per_s": 0, "frames_per_s": 0,
    }  # fmt: skip
    failed = [item for item in report["items"] if item["status"] == "failed"]
    assert [(f["output"], "truncated PNG" in f["reason"]) for f in failed] == [("cut.png", True)]
    assert {w["worker"] for w in report["workers"]} == {"actor-0", "actor-1"}
    assert all(w["items_per_s"] > 0 for w in report["workers"])


def test_a_second_run_skips_everything_and_a_changed_input_is_done_again(
    archive: Path, expected: dict[str, bytes], tiny_export, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert _batch(archive, "-o", out, "--artifacts", tiny_export.artifacts) == 0
    written = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert _batch(archive, "-o", out, "--artifacts", tiny_export.artifacts) == 0
    summary = _report(out)["summary"]
    assert (summary["done"], summary["skipped"], summary["failed"]) == (0, 5, 0)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == written  # not one file rewritten
    # A different output (here: tiles) is other settings: everything runs again.
    assert _batch(archive, "-o", out, "--artifacts", tiny_export.artifacts, "--tile", "32", "--tile-overlap", "8") == 0
    assert _report(out)["summary"]["done"] == 5


def test_a_killed_actor_is_restarted_and_nothing_is_lost_or_written_twice(
    archive: Path, expected: dict[str, bytes], tiny_export, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_HOOK_VARIABLE, f"2:{marker}")  # the first actor to start its 2nd item dies
    out = tmp_path / "out"
    code = _batch(archive, "-o", out, "--artifacts", tiny_export.artifacts)
    assert marker.exists(), "the crash hook never fired"
    assert code == 0
    _check_outputs(out, expected)
    items = _report(out)["items"]
    assert sorted(i["output"] for i in items) == sorted(expected)  # each item once
    assert {i["status"] for i in items} == {"done"}
    done = [json.loads(line)["output"] for line in (out / ".batch_done.jsonl").read_text().splitlines()]
    assert sorted(done) == sorted(expected)
