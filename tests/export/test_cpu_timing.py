"""export/cpu_timing.py and the default CPU order it sets (runtime/backends/select.py)."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from export.cpu_timing import time_cpu_backends
from runtime.backends.select import DEFAULT_ORDER, candidate_order
from runtime.manifest import CpuTiming, load_manifest, save_manifest
from runtime.pipeline import Pipeline


def test_the_fastest_cpu_backend_leads_the_default_order_only() -> None:
    assert candidate_order(None, None, "onnxruntime") == list(DEFAULT_ORDER)
    assert candidate_order(None, "cpu", "openvino") == [("openvino", "cpu"), ("onnxruntime", "cpu"), ("torch", "cpu")]
    gpu_first = candidate_order(None, None, "openvino")
    assert gpu_first[:3] == [("tensorrt", "cuda"), ("onnxruntime", "cuda"), ("torch", "cuda")]
    assert gpu_first[3] == ("openvino", "cpu")
    # An explicit choice is the user's: the timing does not reorder it.
    explicit = candidate_order(["onnxruntime", "openvino"], "cpu", "openvino")
    assert explicit == [("onnxruntime", "cpu"), ("openvino", "cpu")]


def test_timing_measures_every_cpu_backend_that_opens(tiny_export) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    timing = time_cpu_backends(manifest, (32, 48), frames=2, threads=1)
    expected = {"onnxruntime"}
    try:
        import openvino  # noqa: F401

        expected.add("openvino")
    except ImportError:
        pass
    assert set(timing.frame_ms) == expected
    assert all(ms > 0 for ms in timing.frame_ms.values())
    assert (timing.height, timing.width, timing.threads) == (32, 48, 1)
    assert timing.fastest() == min(timing.frame_ms, key=timing.frame_ms.get)


@pytest.mark.parametrize("fastest", ["openvino", "onnxruntime"])
def test_pipeline_opens_the_backend_the_manifest_measured_fastest(tiny_export, tmp_path, fastest) -> None:
    pytest.importorskip("openvino")
    folder = tmp_path / "artifacts"
    shutil.copytree(tiny_export.artifacts, folder)
    other = {"openvino": "onnxruntime", "onnxruntime": "openvino"}[fastest]
    timing = CpuTiming(height=360, width=640, threads=None, frame_ms={fastest: 100.0, other: 200.0})
    save_manifest(dataclasses.replace(load_manifest(folder), cpu_timing=timing), folder)
    assert load_manifest(folder).cpu_timing == timing  # written and read back through the schema
    with Pipeline.from_manifest(folder, device="cpu", precision="fp32") as pipeline:
        assert pipeline.backend.name == fastest
