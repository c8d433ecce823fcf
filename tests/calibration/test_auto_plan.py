"""The `auto` plan per backend: FP16 is planned whether or not INT8 runs."""

from __future__ import annotations

from pathlib import Path

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
