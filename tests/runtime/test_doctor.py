"""runtime/doctor.py on this machine: the machine's facts, the ONNX Runtime checks against the
export's reference frame (main thread and a worker thread), every GPU check skipped with its
reason where there is no GPU, exit 0; and a failed check when the reference does not match."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from runtime.manifest import load_manifest, save_manifest, sha256_file

REPO = Path(__file__).resolve().parents[2]
GPU_CHECKS = ("tensorrt.build_fp16", "tensorrt.reference_match", "torch.cuda_reference_match", "cuda.thread_context")


def _doctor(artifacts: Path, report: Path) -> tuple[int, dict, str]:
    done = subprocess.run(
        [sys.executable, str(REPO / "runtime" / "doctor.py"), "--artifacts", str(artifacts), "--out", str(report)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return done.returncode, json.loads(report.read_text()), done.stdout


def test_the_doctor_passes_here_and_says_why_each_gpu_check_is_skipped(export_tiny, tmp_path: Path) -> None:
    status, report, printed = _doctor(export_tiny().artifacts, tmp_path / "report.json")
    checks = {c["name"]: c for c in report["checks"]}
    assert status == 0, printed
    assert all(c["status"] in ("ok", "skipped") for c in checks.values()), printed
    assert all(c["reason"] for c in checks.values() if c["status"] != "ok")
    for name in ("environment.python", "environment.numpy", "artifacts.manifest", "artifacts.reference",
                 "onnxruntime.reference_match", "onnxruntime.thread_match", "openvino.reference_match",
                 "latency.onnxruntime"):  # fmt: skip
        assert checks[name]["status"] == "ok", checks[name]
    match = checks["onnxruntime.thread_match"]["details"]
    assert match["max_abs_diff"] <= 1e-4 and match["nan_or_inf"] == 0 and match["psnr_db"] > 60
    assert match["max_abs_diff_to_main_thread"] == 0.0
    if checks["cuda.device"]["status"] == "skipped":  # no GPU: every GPU check says why
        assert all(checks[n]["status"] == "skipped" and checks[n]["reason"] for n in GPU_CHECKS)
    assert checks["latency.onnxruntime"]["details"]["end_to_end_ms"] > 0
    assert len(printed.strip().splitlines()) == len(checks) + 1  # one line per check, then the summary


def test_a_reference_that_does_not_match_is_a_failed_check_and_exit_1(export_tiny, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    shutil.copytree(export_tiny().artifacts, root)
    manifest = load_manifest(root)
    assert manifest.reference is not None
    output = manifest.file_path(manifest.reference.output)
    np.save(output, np.load(output) * 0.5)  # a device that computes something else
    rehashed = dataclasses.replace(manifest.reference.output, sha256=sha256_file(output))
    reference = dataclasses.replace(manifest.reference, output=rehashed)
    save_manifest(dataclasses.replace(manifest, reference=reference), root)
    status, report, printed = _doctor(root, tmp_path / "report.json")
    checks = {c["name"]: c for c in report["checks"]}
    assert status == 1, printed
    assert checks["onnxruntime.reference_match"]["status"] == "failed"
    assert "differs from the reference" in checks["onnxruntime.reference_match"]["reason"]
