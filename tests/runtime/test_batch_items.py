"""runtime/batch.py without a cluster: which items INPUTS stand for and where they go, the done
list that makes a run resumable, how items are batched, and that Ray stays an extra: the
single-machine path never imports it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.batch import batches
from runtime.batch_items import IMAGE, VIDEO, find_items
from runtime.batch_state import DONE_LIST_NAME, DoneList
from runtime.errors import InputError

REPO = Path(__file__).resolve().parents[2]


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folders_are_searched_recursively_and_keep_their_relative_paths(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    for name in ("a.png", "reel1/b.JPG", "reel1/film.avi", "reel2/old.webm", "notes.txt", ".hidden.png", ".git/c.png"):
        _touch(archive / name)
    items = find_items([archive], tmp_path / "out")
    assert [(i.relative, i.kind) for i in items] == [
        ("a.png", IMAGE),
        ("reel1/b.JPG", IMAGE),
        ("reel1/film.avi", VIDEO),
        ("reel2/old.mkv", VIDEO),  # a container the sinks cannot write becomes lossless .mkv
    ]
    assert items[0].target == (tmp_path / "out" / "a.png").absolute()


def test_a_list_names_paths_relative_to_itself_and_a_missing_one_is_still_an_item(tmp_path: Path) -> None:
    _touch(tmp_path / "scans" / "p1.png")
    _touch(tmp_path / "elsewhere" / "p2.tif")
    listing = _touch(
        tmp_path / "scans" / "list.txt",
        f"# scans\np1.png\n\n{tmp_path / 'elsewhere' / 'p2.tif'}\ngone.png\n".encode(),
    )
    items = find_items([listing], tmp_path / "out")
    assert [i.relative for i in items] == [
        "p1.png",
        (tmp_path / "elsewhere" / "p2.tif").as_posix().lstrip("/"),
        "gone.png",
    ]
    assert items[2].size == -1  # it fails on its own, with its reason, in the report


def test_outputs_written_twice_or_no_items_are_refused_before_the_work(tmp_path: Path) -> None:
    _touch(tmp_path / "one" / "x.png")
    _touch(tmp_path / "two" / "x.png")
    with pytest.raises(InputError, match="would both be written to"):
        find_items([tmp_path / "one", tmp_path / "two"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image or video"):
        find_items([tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(InputError, match="not an image or a video"):
        find_items([_touch(tmp_path / "l.txt", b"doc.pdf\n")], tmp_path / "out")


def test_the_done_list_skips_only_unchanged_items_with_their_output(tmp_path: Path) -> None:
    source = _touch(tmp_path / "in" / "a.png", b"photo")
    out = tmp_path / "out"
    (item,) = find_items([tmp_path / "in"], out)
    _touch(item.target, b"restored")
    DoneList(out).add([(item, len(b"restored"))], "settings-1")
    with open(out / DONE_LIST_NAME, "a") as handle:
        handle.write('{"output": "b.png", "si')  # a line cut short by a kill is ignored
    done = DoneList(out)
    assert done.is_done(item, "settings-1")
    assert not done.is_done(item, "settings-2")  # other settings: other pixels
    item.target.write_bytes(b"half")  # an output that is not the one recorded
    assert not done.is_done(item, "settings-1")
    item.target.write_bytes(b"restored")
    source.write_bytes(b"a new scan")  # the source changed
    (changed,) = find_items([tmp_path / "in"], out)
    assert not done.is_done(changed, "settings-1")


def test_images_go_in_batches_and_each_video_alone(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.avi", "d.png", "e.png", "f.png"):
        _touch(tmp_path / "in" / name)
    grouped = batches(find_items([tmp_path / "in"], tmp_path / "out"), 2)
    assert [[i.relative for i in b] for b in grouped] == [["a.png", "b.png"], ["c.avi"], ["d.png", "e.png"], ["f.png"]]


def test_the_ray_extra_is_in_dev_so_ci_tests_it() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (ray,) = extras["ray"]
    assert ray.startswith("ray[data]") and ray in extras["dev"]


def test_the_single_machine_path_never_imports_ray(tiny_export, tmp_path: Path) -> None:
    """restore.py restores an image, and batch.py answers --help, with Ray never imported."""
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), np.full((24, 32, 3), 128, np.uint8))
    script = (
        "import sys\n"
        "from runtime.restore import main\n"
        f"code = main([{str(image)!r}, '-o', {str(tmp_path / 'out.png')!r}, '--artifacts', "
        f"{str(tiny_export.artifacts)!r}, '--backend', 'onnxruntime', '--threads', '1', '-q'])\n"
        "from runtime.batch import build_parser\n"
        "build_parser().format_help()\n"
        "assert code == 0, code\n"
        "loaded = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out.png").is_file()
