"""export/benchmark_cpu.py runs end to end and reports every figure (a smoke test, not a timing)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from export.benchmark_cpu import main


def test_benchmark_prints_every_figure_and_writes_json(tiny_export, tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "bench.json"
    args = [
        "--artifacts",
        str(tiny_export.artifacts),
        "--checkpoint",
        str(tiny_export.checkpoint),
        "--threads",
        "1",
        "--repeats",
        "1",
        "--frames",
        "2",
        "--size",
        "96x64",
        "--sgemm-size",
        "256",
        "--json",
        str(out),
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    for needle in (
        "FP32 peak (measured, 256^3 sgemm)",
        "96x64: PyTorch eager",
        "-> ",
        "% of the measured peak",
        "96x64 per graph (s): stage1_gd",
        "orchestration overhead",
    ):
        assert needle in text, needle
    result = json.loads(out.read_text())
    assert result["large"]["speedup"] > 0 and result["large"]["gmac"] > 0
    assert 0 <= result["256x256"]["overhead_fraction"] < 1
    assert set(result["large"]["per_graph_s"]) == {"stage1_gd", "prior", "stage1_prox", "stage2_gd", "stage2_prox"}


def test_benchmark_refuses_a_checkpoint_that_did_not_make_the_artifacts(tiny_export, export_tiny, capsys) -> None:
    other = export_tiny(use_prior=False)
    code = main(["--artifacts", str(tiny_export.artifacts), "--checkpoint", str(other.checkpoint)])
    assert code == 1
    assert "exported from another checkpoint" in capsys.readouterr().err
