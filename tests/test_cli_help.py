"""Every command-line tool answers --help when run as a file from the repository root.

Run as files, the tools have their own folder first on sys.path, so this also catches a module
named after a dependency. The tools are found, not listed: every module
of the four packages with an `if __name__ == "__main__":` block. For the export and runtime
tools listed in FLAGS, the help must show each flag, and every flag must carry a help text.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "export", "runtime", "calibration")
# Tools that must exist, and the flags their --help must show.
FLAGS = {
    "export/build_engines.py": [
        "--checkpoint", "--name", "--out", "--opset", "--no-torch-programs", "--plain-graphs", "--cpu-timing-size",
        "--no-cpu-timing", "--check-size",
        "--tolerance", "--threads", "--from-artifacts", "--no-fp16", "--no-int8", "--source", "--heldout",
        "--frames", "--heldout-frames", "--calibration-size", "--degrade", "--method", "--gate-db",
        "--graph-screen-db", "--max-gt-loss-db", "--no-cpu-flavour", "--precision", "--sizes", "--profile",
        "--timing-cache", "--workspace-mb", "--dla-core", "--no-gpu-fallback", "--weak-fp16", "--force",
        "--allow-non-empty",
    ],
    "calibration/calibrate.py": [
        "--artifacts", "--source", "--heldout", "--frames", "--heldout-frames", "--calibration-size", "--degrade",
        "--method", "--gate-db", "--graph-screen-db", "--max-gt-loss-db", "--no-cpu-flavour", "--threads",
    ],
    "runtime/restore.py": [
        "INPUT", "--output", "--artifacts", "--backend", "--device", "--tile", "--tile-overlap", "--threads",
        "--precision", "--realtime", "--queue-size", "--side-by-side", "--preview", "--fps", "--adaptive-depth",
        "--budget-ms", "--prior-reuse", "--scene-threshold", "--simulate-slowdown-ms", "--max-memory", "--overwrite",
    ],
    "runtime/batch.py": [
        "INPUTS", "--output", "--address", "--actors", "--cpus-per-actor", "--gpus-per-actor", "--batch-size",
        "--retries", "--report", "--artifacts", "--backend", "--device", "--tile", "--tile-overlap", "--max-memory",
        "--precision", "--threads", "--backend-option",
    ],
    "runtime/bench/batch_scaling.py": ["--images", "--count", "--size", "--artifacts", "--backend", "--json"],
    "runtime/video_throughput.py": [
        "--artifacts", "--clip", "--size", "--frames", "--container", "--backend", "--precision", "--threads",
        "--warmup", "--rounds", "--json",
    ],
    "export/benchmark_cpu.py": [
        "--artifacts", "--checkpoint", "--threads", "--repeats", "--frames", "--size", "--sgemm-size",
    ],
    "runtime/benchmark.py": [
        "--artifacts", "--backends", "--device", "--precisions", "--sizes", "--warmup", "--iters", "--threads",
        "--tile", "--json", "--plot",
    ],
    "runtime/frame_kernels_bench.py": ["--size", "--multiple", "--dtype", "--repeats", "--warmup"],
    "runtime/tradeoffs.py": [
        "--artifacts", "--backend", "--precision", "--threads", "--images", "--image-count", "--clip", "--frames",
        "--size", "--sigma", "--reuse", "--scene-threshold", "--json",
    ],
    "runtime/doctor.py": ["--artifacts", "--out", "--keep"],
    "runtime/bench/graph_speedup.py": [
        "--artifacts", "--backend", "--precision", "--size", "--warmup", "--iters", "--json",
    ],
    "export/op_profile.py": ["--artifacts", "--size", "--backends", "--repeats", "--top", "--json", "--threads"],
    "export/cpu_plans_bench.py": [
        "--baseline", "--artifacts", "--size", "--rounds", "--sgemm-size", "--json", "--threads",
    ],
    "export/graph_forms_bench.py": ["--checkpoint", "--size", "--repeats", "--tolerance", "--cpu-time", "--json"],
    "model/train.py": [],
    "model/evaluate.py": [],
}  # fmt: skip


def _tools() -> list[str]:
    found = {
        path.relative_to(REPO).as_posix()
        for package in PACKAGES
        for path in (REPO / package).rglob("*.py")
        if 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")
    }
    return sorted(found | set(FLAGS))


@pytest.mark.parametrize("path", _tools())
def test_help_runs_as_a_file_from_the_repository_root(path: str) -> None:
    assert (REPO / path).is_file(), f"{path} is missing"
    result = subprocess.run([sys.executable, path, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
    for flag in FLAGS.get(path, []):
        assert flag in result.stdout, flag


@pytest.mark.parametrize(
    "module",
    [
        "export.build_engines",
        "calibration.calibrate",
        "runtime.restore",
        "runtime.batch",
        "runtime.bench.batch_scaling",
        "export.benchmark_cpu",
        "export.op_profile",
        "export.graph_forms_bench",
        "export.cpu_plans_bench",
        "runtime.benchmark",
        "runtime.video_throughput",
        "runtime.tradeoffs",
        "runtime.frame_kernels_bench",
        "runtime.doctor",
        "runtime.bench.graph_speedup",
        "model.train",
        "model.evaluate",
        "model.ablation",
        "model.training_record",
    ],
)
def test_every_flag_has_a_help_text(module: str) -> None:
    parser: argparse.ArgumentParser = importlib.import_module(module).build_parser()
    for action in parser._actions:
        assert action.help and action.help.strip(), f"{module}: {action.option_strings or action.dest} has no help"
