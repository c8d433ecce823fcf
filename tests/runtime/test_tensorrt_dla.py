"""DLA engines at run time: deserialised on the DLA core they were built for, and never captured
in a CUDA graph (the fakes of `tests/runtime/fake_*.py` stand in for pycuda and TensorRT only)."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

from runtime.backends.tensorrt_backend import dla_core_of
from runtime.errors import BackendUnavailable
from runtime.manifest import load_manifest
from runtime.pipeline import Pipeline


def test_a_dla_engine_runs_on_its_core_and_its_frames_are_not_captured(tensorrt_fakes, clean: np.ndarray) -> None:
    _, root = tensorrt_fakes("10.3.0.30", dla_core=1)
    records = load_manifest(root).engines
    assert records and all(r.dla_core == 1 and dla_core_of(r) == 1 for r in records)  # the manifest field
    frame = clean[0].astype(np.float32) / 255.0
    with Pipeline.from_manifest(root, backend="tensorrt", device="cuda", precision="fp32") as pipeline:
        assert sys.modules["tensorrt"].deserialised_on_dla == [1] * len(records)
        pipeline.restore(frame)
        assert "CUDA graphs are off with DLA engines (DLA core 1)" in pipeline.launches
        with pytest.raises(BackendUnavailable, match="DLA"):
            pipeline.backend.frame_graph(lambda inputs: inputs, {"y": np.zeros((1, 3, 8, 8), np.float32)})


def test_a_manifest_written_before_the_dla_field_still_names_the_core(tensorrt_fakes) -> None:
    _, root = tensorrt_fakes("10.3.0.30", dla_core=1)
    older = [dataclasses.replace(r, dla_core=None) for r in load_manifest(root).engines]
    assert older and all(dla_core_of(r) == 1 for r in older)  # from the key's precision descriptor


def test_gpu_engines_leave_the_runtime_off_the_dla(tensorrt_fakes) -> None:
    _, root = tensorrt_fakes("8.6.2.3")
    assert all(dla_core_of(r) is None for r in load_manifest(root).engines)
    with Pipeline.from_manifest(root, backend="tensorrt", device="cuda", precision="fp32"):
        assert set(sys.modules["tensorrt"].deserialised_on_dla) == {None}
