"""Eager evaluation (model/inference.py) and the exported pipeline must restore identically."""

from __future__ import annotations

import numpy as np

from model.inference import restore_array
from runtime.pipeline import Pipeline


def test_eager_restore_matches_the_onnxruntime_pipeline(tiny_export) -> None:  # noqa: ANN001 - conftest fixture
    image = np.random.default_rng(3).random((20, 28, 3), dtype=np.float32)
    with Pipeline.from_manifest(tiny_export.artifacts, backend="onnxruntime", device="cpu", threads=1) as pipeline:
        exported = pipeline.restore(image)
    eager = restore_array(tiny_export.model, image)
    assert np.abs(eager - exported).max() < 1e-4
