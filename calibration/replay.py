"""Pipeline replay: run the FP32 pipeline over calibration frames and record every graph's inputs.

Stage k's graphs are then calibrated on what the FP32 graphs before them really produce
(docs/PRECISION.md), not on synthetic tensors. The recording sits between the pipeline and a
real ONNX Runtime CPU backend: each `run` call is passed through unchanged and its feeds copied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from runtime.manifest import Manifest
from runtime.pipeline import Pipeline

GraphFeeds = dict[str, np.ndarray]


class RecordingBackend(OnnxRuntimeBackend):
    """ONNX Runtime on the CPU at FP32 that keeps a copy of the feeds of every graph it runs."""

    def __init__(self, manifest: Manifest, threads: int | None = None) -> None:
        super().__init__(manifest, "cpu", "fp32", threads)
        self.records: dict[str, list[GraphFeeds]] = {}

    def _run(self, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]:
        outputs = super()._run(graph, feeds)
        self.records.setdefault(graph, []).append({k: np.array(v, copy=True) for k, v in feeds.items()})
        return outputs


def replay(
    manifest: Manifest, frames: Sequence[np.ndarray], threads: int | None = None, progress: bool = True
) -> tuple[dict[str, list[GraphFeeds]], list[np.ndarray]]:
    """Every graph's inputs over `frames` (HxWx3 float32, one size), and the FP32 outputs."""
    backend = RecordingBackend(manifest, threads).open()
    restored = []
    with Pipeline(manifest, backend) as pipeline:
        for frame in tqdm(frames, desc="replay", unit="frame", disable=not progress):
            restored.append(pipeline.restore(frame))
    return backend.records, restored
