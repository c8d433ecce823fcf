"""The `edge` model end to end: ONNX Runtime against PyTorch at 1280x720, and what tiling costs
on real photographs (CBSD68 with Gaussian noise of sigma 25).

Uses the shipped checkpoint when it exists (random weights otherwise: the fixture says which).
Threads follow torch.get_num_threads(), so OMP_NUM_THREADS=1 keeps these tests to one core.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from model.degradations import apply_case
from runtime.image_io import list_images, read_rgb8
from runtime.manifest import load_manifest
from runtime.metrics import psnr
from runtime.pipeline import Pipeline, sampler_noise

pytestmark = pytest.mark.slow

TILE, OVERLAP = 256, 32


def _photo(shared_data, index: int) -> np.ndarray:
    path = list_images(shared_data / "val" / "CBSD68")[index]
    return read_rgb8(path).astype(np.float32) / 255.0


def test_onnxruntime_pipeline_at_720p_matches_pytorch_above_80_db(edge_export, shared_data, record_property) -> None:
    clean = cv2.resize(_photo(shared_data, 0), (1280, 720), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    noisy = apply_case(clean, "noise25", seed=0)
    threads = torch.get_num_threads()
    with Pipeline.from_manifest(edge_export.artifacts, backend="onnxruntime", device="cpu", threads=threads) as p:
        got = p.restore(noisy)
    manifest = load_manifest(edge_export.artifacts, verify=False)
    y = torch.from_numpy(np.ascontiguousarray(noisy.transpose(2, 0, 1)))[None]
    with torch.no_grad():
        expected = edge_export.model(y, torch.from_numpy(sampler_noise(manifest))).clamp(0, 1)[0].permute(1, 2, 0)
    db = psnr(got, expected.numpy())
    record_property("psnr_onnxruntime_vs_pytorch_720p_db", db)
    print(
        f"\n720p ONNX Runtime vs PyTorch: {db:.1f} dB (max abs {np.abs(got - expected.numpy()).max():.2e}), "
        f"{'shipped' if edge_export.shipped else 'random'} weights"
    )
    assert db >= 80.0


def test_tiling_costs_at_most_a_tenth_of_a_db_on_real_photographs(edge_export, shared_data, record_property) -> None:
    threads = torch.get_num_threads()
    rows = []
    with (
        Pipeline.from_manifest(edge_export.artifacts, backend="onnxruntime", device="cpu", threads=threads) as whole,
        Pipeline.from_manifest(
            edge_export.artifacts, backend="onnxruntime", device="cpu", threads=threads, tile=TILE, tile_overlap=OVERLAP
        ) as tiled,
    ):
        for i in range(3):
            clean = _photo(shared_data, i)
            noisy = apply_case(clean, "noise25", seed=i)
            a, b = whole.restore(noisy), tiled.restore(noisy)
            rows.append((psnr(noisy, clean), psnr(a, clean), psnr(b, clean), psnr(b, a)))
    print(f"\ntiling {TILE}/{OVERLAP} on CBSD68 noise25 ({'shipped' if edge_export.shipped else 'random'} weights)")
    print("  input dB  whole dB  tiled dB  tiled-vs-whole dB")
    for row in rows:
        print("  " + "  ".join(f"{v:8.2f}" for v in row))
    record_property("tiling_rows", rows)
    for _, whole_db, tiled_db, _ in rows:
        assert tiled_db >= whole_db - 0.1
