"""The `auto` plan per backend: FP16 is planned whether or not INT8 runs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from calibration.auto_plan import auto_plans, earlier_int8_plans
from export.build_engines import main as build_engines
from runtime.manifest import load_manifest


def test_without_int8_auto_is_fp16_on_tensorrt_and_onnxruntime_cuda(export_tiny, tmp_path: Path, capsys) -> None:
    out = tmp_path / "art"
    argv = ["--checkpoint", str(export_tiny().checkpoint), "--out", str(out), "--no-int8", "--no-torch-programs"]
    assert build_engines([*argv, "--threads", "1", "-q"]) == 0
    manifest = load_manifest(out)
    fp16 = {g for g, entry in manifest.graphs.items() if "fp16" in entry.variants}
    assert fp16, capsys.readouterr().out  # the tiny model's graphs pass the FP16 gate
    for target in ("tensorrt/cuda", "onnxruntime/cuda"):
        assert manifest.auto_precision.get(target) == {g: "fp16" for g in fp16}, target
        assert all(manifest.precision_for(g, "auto", target) == "fp16" for g in fp16)
    # No INT8 was calibrated, and FP16 is never planned on the CPU: it keeps FP32.
    assert "onnxruntime/cpu" not in manifest.auto_precision
    assert manifest.calibration is None


def _graphs(**variants: str) -> SimpleNamespace:
    """A stand-in manifest: graph name -> its precision variants, comma-separated."""
    graphs = {g: SimpleNamespace(variants=dict.fromkeys(v.split(","))) for g, v in variants.items()}
    return SimpleNamespace(graphs=graphs)


def test_int8_where_it_passed_else_fp16_and_the_cpu_int8_only_where_calibration_chose_it() -> None:
    manifest = _graphs(a="fp32,fp16", b="fp32,fp16,int8", c="fp32", d="fp32,int8,int8-cpu")
    plans = auto_plans(manifest, {"b": "int8", "d": "int8"}, {"d": "int8-cpu"})  # type: ignore[arg-type]
    assert plans == {
        "tensorrt/cuda": {"a": "fp16", "b": "int8", "d": "int8"},
        "onnxruntime/cuda": {"a": "fp16", "b": "fp16"},
        "onnxruntime/cpu": {"d": "int8-cpu"},
    }
    assert auto_plans(_graphs(c="fp32"), {}, {}) == {}  # type: ignore[arg-type]


def test_an_earlier_calibration_is_kept_when_int8_does_not_run_again() -> None:
    manifest = SimpleNamespace(
        auto_precision={"tensorrt/cuda": {"a": "fp16", "b": "int8"}, "onnxruntime/cpu": {"b": "int8-cpu"}}
    )
    assert earlier_int8_plans(manifest) == ({"b": "int8"}, {"b": "int8-cpu"})  # type: ignore[arg-type]
