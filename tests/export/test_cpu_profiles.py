"""export/op_profile.py and export/graph_forms_bench.py measure real graphs (figures not checked)."""

from __future__ import annotations

import json

import pytest

from export import graph_forms_bench, op_profile
from model.export_forms import FORMS
from runtime.manifest import load_manifest


def test_op_profile_attributes_kernel_time_to_operator_types(tiny_export, tmp_path, capsys) -> None:
    pytest.importorskip("openvino")
    out = tmp_path / "profile.json"
    args = ["--artifacts", str(tiny_export.artifacts), "--size", "48x32", "--repeats", "1", "--threads", "1", "-q"]
    assert op_profile.main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    graphs = set(load_manifest(tiny_export.artifacts).graphs_in_use())
    for backend in ("onnxruntime", "openvino"):
        profile = result["backends"][backend]
        assert set(profile["graph_ms"]) == graphs
        assert all(ms >= 0 for ms in profile["op_ms"].values())
        assert sum(profile["op_ms"].values()) > 0
    assert result["backends"]["onnxruntime"]["op_ms"]["Conv"] > 0
    assert result["node_counts"]["Conv"] > 0
    assert "kernel time by operator type, one 48x32 frame" in capsys.readouterr().out


def test_graph_forms_bench_times_every_form_against_the_plain_graph(tiny_export, tmp_path) -> None:
    out = tmp_path / "forms.json"
    args = ["--checkpoint", str(tiny_export.checkpoint), "--size", "64x32", "--repeats", "1", "--threads", "1"]
    assert graph_forms_bench.main([*args, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    ort_variants = {row["variant"] for row in rows if row["backend"] == "onnxruntime"}
    assert ort_variants == {"plain", "all", *FORMS}
    assert all(row["ms"] > 0 for row in rows)
    assert next(r for r in rows if r["variant"] == "plain" and r["backend"] == "onnxruntime")["speedup"] == 1.0


def test_graph_forms_bench_rejects_a_missing_checkpoint(tmp_path, capsys) -> None:
    assert graph_forms_bench.main(["--checkpoint", str(tmp_path / "none.pt")]) == 1
    assert "none.pt" in capsys.readouterr().err


def test_cpu_plans_bench_times_every_plan_in_one_run(tiny_export, tmp_path) -> None:
    from export import cpu_plans_bench

    out = tmp_path / "plans.json"
    folder = str(tiny_export.artifacts)
    args = ["--baseline", folder, "--artifacts", folder, "--size", "48x32", "--rounds", "1", "--sgemm-size", "64"]
    assert cpu_plans_bench.main([*args, "--threads", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    plans = [(r["graphs"], r["backend"], r["precision"]) for r in result["rows"]]
    assert plans[:2] == [("baseline", "onnxruntime", "fp32"), ("artifacts", "onnxruntime", "fp32")]
    assert result["rows"][0]["speedup"] == 1.0
    graphs = set(load_manifest(tiny_export.artifacts).graphs_in_use())
    for row in result["rows"]:
        assert row["frame_ms"] > 0 and row["gflops"] > 0 and set(row["graph_ms"]) == graphs
    assert result["peak"]["peak_gflops"] > 0 and result["gmac"] > 0
