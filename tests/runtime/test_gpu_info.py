"""GPU name and compute capability: the first binding that answers wins; none -> a clear reason."""

from __future__ import annotations

import pytest

from runtime import gpu_info
from runtime.errors import BackendUnavailable
from runtime.gpu_info import GpuInfo


@pytest.fixture(autouse=True)
def _fresh_cache():
    gpu_info.query_gpu.cache_clear()
    yield
    gpu_info.query_gpu.cache_clear()


def _missing(device: int) -> GpuInfo:
    raise ImportError("no module")


def _broken(device: int) -> GpuInfo:
    raise RuntimeError("cuInit failed: CUDA_ERROR_NO_DEVICE")


def _answers(device: int) -> GpuInfo:
    return GpuInfo("Orin (nvgpu)", (8, 7), "fake")


def test_first_binding_that_answers_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_info, "_SOURCES", (("pycuda", _missing), ("cuda-python", _broken), ("fake", _answers)))
    info = gpu_info.query_gpu(0)
    assert info == GpuInfo("Orin (nvgpu)", (8, 7), "fake")
    assert info.compute_capability_str == "8.7"


def test_no_binding_gives_every_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_info, "_SOURCES", (("pycuda", _missing), ("cuda-python", _broken)))
    with pytest.raises(BackendUnavailable, match=r"pycuda not installed; cuda-python: cuInit failed"):
        gpu_info.query_gpu(0)


def test_negative_device_is_refused() -> None:
    with pytest.raises(BackendUnavailable):
        gpu_info.query_gpu(-1)


def test_this_machine_answers_or_says_why() -> None:
    try:
        info = gpu_info.query_gpu(0)
    except BackendUnavailable as exc:
        assert "cannot query CUDA device 0" in str(exc)
    else:
        assert info.name and info.compute_capability[0] >= 5
