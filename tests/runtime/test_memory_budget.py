"""Memory is bounded: the export records each graph's activation sizes, the runtime estimates a
frame's peak from them before it runs, and `--tile auto` (the default) tiles only frames over
`--max-memory`, the same way every time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from export.activation_sizes import every_tensor_session, feeds_at
from runtime.manifest import load_manifest
from runtime.memory_plan import parse_size, plan_tiles_for_budget, whole_frame_bytes
from runtime.pipeline import AUTO_TILE, Pipeline, pad_nchw, padded_size
from runtime.restore import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _every_tensor(path: Path, height: int, width: int) -> list[int]:
    """Bytes of every intermediate tensor of an ONNX graph run at height x width."""
    _, session, names = every_tensor_session(path, threads=1)
    feeds = feeds_at(session, height, width, np.random.default_rng(0))
    return [np.asarray(v).nbytes for v in session.run(names, feeds)]


def test_the_export_records_activation_sizes_that_bound_the_real_tensors(tiny_export) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    for name, graph in manifest.graphs.items():
        record = graph.activation_bytes
        assert record is not None, name
        for height, width in ((40, 56), (96, 32)):  # sizes the export did not measure at
            sizes = _every_tensor(manifest.graph_file(name), height, width)
            # At least the largest tensor and its output at once; never more than all of them.
            assert max(sizes) <= record.at(height, width) <= sum(sizes), (name, height, width)
        assert record.at(200, 200) > record.at(100, 100) > 0


def test_auto_runs_whole_under_the_budget_and_tiles_over_it_exactly_as_asked_for_tiles(tiny_export) -> None:
    frame = np.random.default_rng(1).random((160, 400, 3), dtype=np.float32)
    manifest = load_manifest(tiny_export.artifacts)
    whole_bytes = whole_frame_bytes(manifest, 1, 160, 400)
    assert whole_bytes is not None
    with Pipeline.from_manifest(tiny_export.artifacts, "onnxruntime", "cpu", threads=1) as whole:
        expected_whole = whole.restore(frame)
        backend = whole.backend
        roomy = Pipeline(manifest, backend, tile=AUTO_TILE, tile_overlap=8, max_memory=whole_bytes)
        assert roomy.tile_plan(160, 400).tile is None
        np.testing.assert_array_equal(roomy.restore(frame), expected_whole)
        tight = Pipeline(manifest, backend, tile=AUTO_TILE, tile_overlap=8, max_memory=whole_bytes - 1)
        plan = tight.tile_plan(160, 400)
        assert plan.automatic and plan.fits and plan.tile is not None and plan.tile < 400
        fixed = Pipeline(manifest, backend, tile=plan.tile, tile_overlap=8)
        tiled = tight.restore(frame)
        np.testing.assert_array_equal(tiled, fixed.restore(frame))
        assert not np.array_equal(tiled, expected_whole)


def test_tiles_cut_from_the_callers_frame_equal_tiles_of_the_padded_copy(tiny_export) -> None:
    """Tiled, restore() pads each tile itself instead of copying the whole frame; same values."""
    frame = np.random.default_rng(2).random((75, 131, 3), dtype=np.float32)  # odd: padding reaches the tiles
    manifest = load_manifest(tiny_export.artifacts)
    with Pipeline.from_manifest(
        tiny_export.artifacts, "onnxruntime", "cpu", threads=1, tile=32, tile_overlap=8
    ) as pipeline:
        height, width = padded_size(75, 131, manifest.pad_multiple, manifest.min_size)
        y = pad_nchw(np.ascontiguousarray(frame.transpose(2, 0, 1))[None], height, width)
        expected = np.clip(pipeline.run(y)[0, :, :75, :131].transpose(1, 2, 0), 0.0, 1.0)
        np.testing.assert_array_equal(pipeline.restore(frame), expected)


def test_the_largest_tile_that_fits_is_chosen(tiny_export) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    budgets = (2**27, 2**29, 2**31)
    plans = [plan_tiles_for_budget(manifest, 1, 3000, 4000, budget, 32) for budget in budgets]
    tiles = [p.tile or 10**9 for p in plans]
    assert tiles == sorted(tiles) and len(set(tiles)) > 1  # a larger budget never gives a smaller tile
    for plan, budget in zip(plans, budgets, strict=True):
        assert plan.tiled_bytes is None or not plan.fits or plan.tiled_bytes <= budget


@pytest.mark.parametrize(
    "text, expected", [("2GiB", 2**31), ("1.5G", 3 * 2**29), ("512MB", 512 * 10**6), ("4096", 4096)]
)
def test_sizes_are_read_as_people_write_them(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def _photo(path: Path, shared_data: Path, width: int, height: int) -> Path:
    source = sorted((shared_data / "val" / "CBSD68").glob("*.png"))[0]
    cv2.imwrite(str(path), cv2.resize(cv2.imread(str(source)), (width, height), interpolation=cv2.INTER_CUBIC))
    return path


def test_the_cli_says_in_one_line_when_it_tiles_and_gives_the_same_output_as_those_tiles(
    tiny_export, tmp_path: Path, capsys, shared_data: Path
) -> None:
    source = _photo(tmp_path / "photo.png", shared_data, 200, 150)
    common = ["--artifacts", str(tiny_export.artifacts), "--backend", "onnxruntime", "--threads", "1"]
    assert main([str(source), "-o", str(tmp_path / "auto.png"), "--max-memory", "4MiB", *common]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    tiling = [line for line in lines if "over --max-memory 4 MiB: restoring it in" in line]
    assert len(tiling) == 1 and tiling[0].startswith("photo.png: 200x150 needs about "), lines
    tile = int(tiling[0].split(" in ")[1].split("x")[0])
    assert main([str(source), "-o", str(tmp_path / "fixed.png"), "--tile", str(tile), "-q", *common]) == 0
    assert main([str(source), "-o", str(tmp_path / "again.png"), "--max-memory", "4MiB", "-q", *common]) == 0
    assert main([str(source), "-o", str(tmp_path / "whole.png"), "--tile", "0", *common]) == 0
    assert not [line for line in capsys.readouterr().err.splitlines() if "max-memory" in line]
    auto = (tmp_path / "auto.png").read_bytes()
    assert auto == (tmp_path / "fixed.png").read_bytes() == (tmp_path / "again.png").read_bytes()
    assert auto != (tmp_path / "whole.png").read_bytes()


def _peak_rss_kib(args: list[str]) -> int:
    """Peak resident memory of a fresh process running restore.py with `args`."""
    code = (
        "import resource, sys; from runtime.restore import main; "
        f"rc = main({args!r}); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


@pytest.mark.slow
def test_a_budget_really_bounds_the_peak(tiny_export, tmp_path: Path, shared_data: Path) -> None:
    """Measured, not estimated: the same 2400x1800 photo whole and under a 96 MiB budget."""
    source = _photo(tmp_path / "big.png", shared_data, 2400, 1800)
    common = ["--artifacts", str(tiny_export.artifacts), "--backend", "onnxruntime", "--threads", "1", "-q"]
    whole = _peak_rss_kib([str(source), "-o", str(tmp_path / "whole.png"), "--tile", "0", *common])
    bounded = _peak_rss_kib([str(source), "-o", str(tmp_path / "tiled.png"), "--max-memory", "96MiB", *common])
    assert bounded < 0.7 * whole, (bounded, whole)
