"""runtime/backends/cuda_device.py: the device machinery the torch backend (CUDA) and TensorRT share.

The `gpu` tests run everything but TensorRT's own calls on a CUDA GPU through the torch backend:
buffers, the stream, stage outputs chained on the device, CUDA-event timing and whole-frame
CUDA-graph capture. They skip here (no GPU); the CPU tests cover the pool, the NaN/Inf check
and what happens on a machine without CUDA.
"""

from __future__ import annotations

import numpy as np
import pytest

from runtime.backends.cuda_device import BufferPool, check_finite, open_cuda_device
from runtime.errors import BackendUnavailable, InferenceError, ShapeError
from runtime.pipeline import Pipeline, sampler_noise


def test_the_pool_keeps_one_buffer_per_slot_shape_and_dtype() -> None:
    pool = BufferPool(lambda shape, dtype: np.empty(shape, dtype))
    a = pool.get(("stage1_gd", "v"), (1, 3, 8, 8), "float32")
    assert pool.get(("stage1_gd", "v"), [1, 3, 8, 8], "float32") is a  # the same memory every frame
    assert pool.get(("stage2_gd", "v"), (1, 3, 8, 8), "float32") is not a  # another graph's output
    assert pool.get(("stage1_gd", "v"), (1, 3, 8, 16), "float32").shape == (1, 3, 8, 16)
    assert pool.get(("stage1_gd", "v"), (1, 3, 8, 8), "float16").dtype == np.float16
    assert pool.allocations == len(pool) == 4
    pool.clear()
    assert len(pool) == 0 and pool.get(("stage1_gd", "v"), (1, 3, 8, 8), "float32") is not a


def test_nan_or_inf_in_a_downloaded_output_is_an_inference_error() -> None:
    good = np.zeros((1, 3, 4, 4), np.float32)
    assert check_finite(good, "x") is good
    for bad in (np.nan, np.inf, -np.inf):
        array = good.copy()
        array[0, 1, 2, 3] = bad
        with pytest.raises(InferenceError, match=r"TensorRT \(fp16 engines\): 1 of 48 output values are NaN or Inf"):
            check_finite(array, "TensorRT (fp16 engines)")
    assert check_finite(np.array([3], np.int64), "x")[0] == 3  # integers cannot be NaN


def test_without_cuda_no_device_opens_and_the_reason_is_given() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BackendUnavailable, match="no CUDA library for device buffers") as info:
        open_cuda_device("auto")
    assert "pycuda" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(BackendUnavailable, match="torch sees no CUDA device"):
        open_cuda_device("torch")
    with pytest.raises(BackendUnavailable, match="unknown CUDA library"):
        open_cuda_device("cupy")


# ------------------------------------------------------------------ on a CUDA GPU


def _frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 3, 32, 48), dtype=np.float32)


@pytest.mark.gpu
def test_torch_device_round_trip_pool_and_timer() -> None:
    device = open_cuda_device("torch")
    host = _frame()
    array = device.upload(host)
    assert device.describe(array) == ((1, 3, 32, 48), "float32") and device.pointer(array) != 0
    np.testing.assert_array_equal(device.download(array), host)
    pool = BufferPool(device.empty)
    buffer = pool.get("out", (1, 3, 32, 48), "float32")
    assert device.pointer(pool.get("out", (1, 3, 32, 48), "float32")) == device.pointer(buffer)
    device.copy_from_host(buffer, host)
    np.testing.assert_array_equal(device.download(buffer), host)
    with device.timer() as timer, device.scope():
        (array @ array.transpose(2, 3)).sum()
    assert timer.ms is not None and timer.ms > 0


@pytest.mark.gpu
def test_pycuda_device_round_trip_when_installed() -> None:
    pytest.importorskip("pycuda")
    device = open_cuda_device("pycuda")
    host = _frame()
    array = device.upload(host)
    np.testing.assert_array_equal(device.download(array), host)
    with device.timer() as timer:
        device.copy_from_host(array, host)
    assert timer.ms is not None and timer.ms >= 0


@pytest.fixture(scope="module")
def cuda_pipeline(tiny_export):
    with Pipeline.from_manifest(tiny_export.artifacts, backend="torch", device="cuda") as pipeline:
        yield pipeline


@pytest.mark.gpu
def test_torch_backend_on_cuda_matches_the_cpu_and_chains_stages_on_the_device(tiny_export, cuda_pipeline) -> None:
    y = _frame()
    with Pipeline.from_manifest(tiny_export.artifacts, backend="torch", device="cpu") as cpu:
        expected = cpu.run(y)
    assert np.abs(cuda_pipeline.run(y) - expected).max() < 1e-4
    backend = cuda_pipeline.backend
    device_y = backend.upload(y)
    v = backend.run("stage1_gd", {"x": device_y, "y": device_y})["v"]
    assert v.is_cuda  # the output stays on the device for the next graph
    with backend.timer() as timer:
        backend.run("stage1_gd", {"x": v, "y": device_y})
    assert timer.ms > 0


@pytest.mark.gpu
def test_a_whole_frame_cuda_graph_replays_the_stage_loop(cuda_pipeline) -> None:
    backend, manifest = cuda_pipeline.backend, cuda_pipeline.manifest
    noise = backend.upload(sampler_noise(manifest))
    index = {s.stage: backend.upload(np.array([s.prior_stage_index], np.int64)) for s in manifest.stages}

    def frame(inputs):  # the pipeline's stage loop: device work only
        x = y = inputs["y"]
        for stage in manifest.stages:
            v = backend.run(stage.gradient, {"x": x, "y": y})["v"]
            z = backend.run(stage.prior, {"v": v, "noise": noise, "stage": index[stage.stage]})["z"]
            x = backend.run(stage.proximal, {"v": v, "z": z})["x"]
        return {"x": x}

    graph = backend.frame_graph(frame, {"y": _frame(0)})
    for seed in (1, 2, 0):  # new data in the same static buffers, replayed
        y = _frame(seed)
        assert np.abs(graph({"y": y})["x"] - cuda_pipeline.run(y)).max() < 1e-5
    with pytest.raises(ShapeError, match="captured for"):
        graph({"y": np.zeros((1, 3, 32, 32), np.float32)})


@pytest.mark.gpu
def test_the_pipeline_replays_whole_frames_as_cuda_graphs_and_says_so(tiny_export) -> None:
    frames = [np.ascontiguousarray(_frame(seed)[0].transpose(1, 2, 0)) for seed in (1, 2, 3)]
    with Pipeline.from_manifest(tiny_export.artifacts, backend="torch", device="cuda", cuda_graphs=False) as plain:
        expected = [plain.restore(f) for f in frames]
        assert plain.launches == "plain launches (CUDA graphs off)"
    with Pipeline.from_manifest(tiny_export.artifacts, backend="torch", device="cuda") as graphs:
        for frame, want in zip(frames, expected, strict=True):
            assert np.abs(graphs.restore(frame) - want).max() < 1e-5
            assert graphs.launches == "cuda graph"

