"""runtime/benchmark.py and runtime/bench/: statistics, skip reasons, memory, JSON and plot.

Timings here are not checked against any speed (the machine is shared); what is checked is that
every figure is there, is consistent with the raw samples, and means what its name says.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.bench.measure import Settings, graph_precisions, run_grid
from runtime.bench.stats import summarize
from runtime.benchmark import RESULT_FORMAT, main
from runtime.errors import InputError
from runtime.manifest import FileRef, Manifest, Variant, load_manifest

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- statistics


def test_summary_matches_numpy_percentiles_in_milliseconds() -> None:
    seconds = np.random.default_rng(3).lognormal(-3.0, 0.6, size=37)
    summary = summarize(seconds.tolist())
    ms = seconds * 1e3
    assert summary["count"] == 37
    assert summary["mean_ms"] == pytest.approx(ms.mean())
    for q in (50, 90, 99):
        assert summary[f"p{q}_ms"] == pytest.approx(np.percentile(ms, q))
    assert summary["min_ms"] == pytest.approx(ms.min()) and summary["max_ms"] == pytest.approx(ms.max())
    assert summary["std_ms"] == pytest.approx(ms.std())
    assert summary["throughput_per_s"] == pytest.approx(1.0 / seconds.mean())


def test_summary_of_a_known_sample() -> None:
    summary = summarize([0.004, 0.001, 0.003, 0.002])  # order does not matter
    assert summary["p50_ms"] == pytest.approx(2.5)
    assert summary["p90_ms"] == pytest.approx(3.7)  # linear between the 3rd and 4th order statistic
    assert summary["p99_ms"] == pytest.approx(3.97)
    assert summary["throughput_per_s"] == pytest.approx(400.0)


@pytest.mark.parametrize("bad", [[], [0.1, -0.01], [float("nan")]])
def test_summary_refuses_what_is_not_a_timing(bad: list[float]) -> None:
    with pytest.raises(InputError):
        summarize(bad)


# --------------------------------------------------------------------------- memory


_PROBE_SCRIPT = """
import json
import numpy as np
from runtime.bench.memory import MemoryProbe
out = []
for _ in range(2):  # the second cell must see its own peak, not the first cell's
    probe = MemoryProbe(cuda_torch=False)
    probe.start()
    block = np.ones(64 * 1024 * 1024, dtype=np.uint8)  # touched, so resident
    del block
    out.append(probe.stop())
print(json.dumps(out))
"""


def test_memory_probe_sees_an_allocation_inside_the_cell() -> None:
    # A fresh process: in a long test session the allocator may hand out memory that is already
    # resident (freed by earlier tests), and then no new peak appears; the full suite saw that.
    result = subprocess.run(
        [sys.executable, "-c", _PROBE_SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    size = 64 * 1024 * 1024
    for memory in json.loads(result.stdout):
        if memory["host_peak_rss_bytes"] is None:
            pytest.skip("no /proc/self/status on this system")
        assert memory["host_peak_scope"] in ("cell", "process")
        if memory["host_peak_scope"] == "cell":
            assert memory["host_peak_rss_delta_bytes"] >= 0.9 * size
        assert memory["cuda_peak_allocated_bytes"] is None


# --------------------------------------------------------------------------- skip reasons


def _with_variant(manifest: Manifest, precision: str, graphs: list[str]) -> Manifest:
    """The manifest as if `graphs` had a `precision` variant (pointing at the FP32 file)."""
    changed = dict(manifest.graphs)
    for name in graphs:
        fp32 = manifest.graphs[name].variants["fp32"]
        ref = FileRef(fp32.onnx.path, fp32.onnx.sha256)
        variants = {**manifest.graphs[name].variants, precision: Variant(precision, ref, fp32.onnx.sha256)}
        changed[name] = dataclasses.replace(manifest.graphs[name], variants=variants)
    return dataclasses.replace(manifest, graphs=changed)


def test_precision_plans_and_the_reasons_a_cell_is_skipped(tiny_export) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    graphs = manifest.graphs_in_use()
    assert graph_precisions(manifest, "onnxruntime", "cpu", "fp32") == dict.fromkeys(graphs, "fp32")
    assert "no fp16 graphs" in graph_precisions(manifest, "onnxruntime", "cpu", "fp16")
    assert "no int8 graphs" in graph_precisions(manifest, "onnxruntime", "cpu", "int8")
    assert graph_precisions(manifest, "tensorrt", "cpu", "fp32") == "TensorRT runs on CUDA only"

    partial = _with_variant(manifest, "fp16", ["prior"])
    reason = graph_precisions(partial, "onnxruntime", "cpu", "fp16")
    assert isinstance(reason, str) and "no fp16 variant of stage1_gd" in reason and "prior" not in reason
    # An explicit INT8 is every graph or a reason, never FP32 in its place (auto is what mixes them).
    reason = graph_precisions(_with_variant(manifest, "int8", ["stage1_prox"]), "onnxruntime", "cpu", "int8")
    assert reason == "the artifacts have no int8 variant of stage1_gd, prior, stage2_gd, stage2_prox"


def test_grid_lists_every_skipped_cell_with_its_reason(tiny_export) -> None:
    manifest = _with_variant(load_manifest(tiny_export.artifacts), "fp16", load_manifest(tiny_export.artifacts).graphs)
    settings = Settings(
        backends=("torch", "tensorrt"),
        devices=("cpu",),
        precisions=("auto", "fp32", "fp16", "int8"),
        sizes=((32, 48), (64, 64)),
        warmup=0,
        iters=1,
        threads=1,
    )
    results, skipped = run_grid(manifest, settings, progress=False)
    assert [(r["backend"], r["precision"], r["width"], r["height"]) for r in results] == [
        ("torch", "auto", 48, 32),
        ("torch", "auto", 64, 64),
    ]
    reasons = {(s["backend"], s["precision"]): s["reason"] for s in skipped}
    assert len(skipped) == 2 * 7  # every other (backend, precision) at both sizes
    assert reasons[("torch", "fp32")].startswith("runs the same graph variants as auto (fp32 for every graph)")
    assert "fp32 programs only" in reasons[("torch", "fp16")]
    assert "no int8 graphs" in reasons[("torch", "int8")]
    assert all(reasons[("tensorrt", p)] == "TensorRT runs on CUDA only" for p in settings.precisions)


# --------------------------------------------------------------------------- the CLI, JSON and plot


@pytest.mark.slow
def test_benchmark_cli_writes_json_and_plot_with_every_figure(tiny_export, tmp_path: Path, capsys) -> None:
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    iters = 4
    argv = [
        "--artifacts", str(tiny_export.artifacts), "--backends", "onnxruntime,torch",
        "--precisions", "auto,fp32,fp16,int8", "--sizes", "64x64,96x48", "--warmup", "1", "--iters", str(iters),
        "--threads", "1", "--json", str(out), "--plot", str(plot), "-q",
    ]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out

    result = json.loads(out.read_text())
    assert result["format"] == RESULT_FORMAT and result["schema_version"] == 1
    assert result["model"] == "tiny" and result["command"].startswith("python runtime/benchmark.py --artifacts")
    assert result["settings"] == {
        "backends": ["onnxruntime", "torch"],
        "devices": ["cpu"],
        "precisions": ["auto", "fp32", "fp16", "int8"],
        "sizes": ["64x64", "96x48"],
        "warmup": 1,
        "iters": iters,
        "threads": 1,
        "tile": None,
    }
    env = result["environment"]
    for package in ("numpy", "onnxruntime", "torch"):
        assert env[package] == importlib.metadata.version(package)
    assert env["python"] and env["cpu"] and env["cpu_cores"] >= 1 and env["threads"] == 1
    assert env["gpu"] is None  # no CUDA device was asked for

    manifest = load_manifest(tiny_export.artifacts)
    cells = result["results"]
    assert [(c["backend"], c["width"], c["height"]) for c in cells] == [
        ("onnxruntime", 64, 64),
        ("onnxruntime", 96, 48),
        ("torch", 64, 64),
        ("torch", 96, 48),
    ]
    for cell in cells:
        e2e = cell["end_to_end"]
        samples = np.asarray(e2e["samples_ms"])
        assert samples.size == e2e["count"] == iters and np.all(samples > 0)
        for q in (50, 90, 99):
            assert e2e[f"p{q}_ms"] == pytest.approx(np.percentile(samples, q))
        assert cell["throughput_fps"] == pytest.approx(1e3 / samples.mean())
        assert cell["graph_precisions"] == dict.fromkeys(manifest.graphs_in_use(), "fp32")
        assert list(cell["graphs"]) == manifest.graphs_in_use()
        assert cell["graphs"]["prior"]["calls_per_frame"] == len(manifest.stages)  # one prior per stage
        assert cell["graphs"]["stage1_gd"]["per_call"]["count"] == iters
        graph_ms = sum(g["per_frame_ms"] for g in cell["graphs"].values())
        assert 0 < graph_ms < e2e["mean_ms"]  # the graphs run inside the timed frame
        assert cell["unattributed_ms"] == pytest.approx(e2e["mean_ms"] - graph_ms)
        assert cell["padded_height"] % manifest.pad_multiple == 0
        assert cell["device_time"] is None and cell["host_overhead_ms"] is None  # CPU: wall time is device time
        assert cell["memory"]["host_peak_rss_bytes"] > 0 and cell["memory"]["host_peak_rss_delta_bytes"] >= 0
        assert cell["load_average_1min"] >= 0

    skipped = {(s["backend"], s["precision"], s["width"]) for s in result["skipped"]}
    assert len(result["skipped"]) == 2 * 3 * 2  # fp32 (same as auto), fp16, int8 per backend and size
    assert ("torch", "fp16", 96) in skipped and ("onnxruntime", "fp32", 64) in skipped

    assert "onnxruntime/cpu auto 96x48" in text and "prior x2" in text
    assert "skipped onnxruntime/cpu fp16 (64x64, 96x48): the artifacts have no fp16 graphs" in text
    data = plot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000


def test_benchmark_fails_in_one_line_when_nothing_can_run(tiny_export, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    argv = ["--artifacts", str(tiny_export.artifacts), "--precisions", "fp16", "--sizes", "64x64", "-q"]
    assert main([*argv, "--json", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: every cell was skipped (reasons above): nothing was measured"]
    assert json.loads(out.read_text())["skipped"][0]["reason"].startswith("the artifacts have no fp16 graphs")


def test_benchmark_rejects_a_bad_size_list(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--sizes", "256x256,wide"])
    assert exit_info.value.code == 2
    assert "expected WIDTHxHEIGHT" in capsys.readouterr().err


# --------------------------------------------------------------------------- CUDA (not run without a GPU)


@pytest.mark.gpu
def test_cuda_cells_report_device_time_apart_from_host_overhead(tiny_export) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    settings = Settings(("torch",), ("cuda",), ("fp32",), ((64, 64),), warmup=2, iters=5)
    results, skipped = run_grid(manifest, settings, progress=False)
    assert not skipped
    (cell,) = results
    device, e2e = cell["device_time"], cell["end_to_end"]
    assert device["count"] == 5 and 0 < device["mean_ms"] <= e2e["mean_ms"]
    assert cell["host_overhead_ms"] == pytest.approx(e2e["mean_ms"] - device["mean_ms"], rel=1e-6, abs=1e-6)
    assert cell["graphs"]["stage1_gd"]["per_call"]["count"] == 5  # the separate per-graph pass
    assert cell["memory"]["cuda_peak_allocated_bytes"] > 0
