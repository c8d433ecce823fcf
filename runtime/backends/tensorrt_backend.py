"""TensorRT backend: not built yet.

Native TensorRT engines (execute_async_v3, device buffers, CUDA graphs) come with engine
building. Until then this backend reports itself unavailable with a clear reason, so that a
fallback order that starts with TensorRT moves on, and an explicit request fails cleanly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from runtime.backends.base import Backend
from runtime.errors import BackendUnavailable

NOT_YET = (
    "the tensorrt backend is not implemented yet (native engines arrive with engine building); "
    "use --backend onnxruntime (CPU or --device cuda) for now"
)


class TensorRTBackend(Backend):
    name = "tensorrt"

    @classmethod
    def check_available(cls, device: str) -> None:
        raise BackendUnavailable(NOT_YET)

    def _open(self, graphs: list[str]) -> None:
        raise BackendUnavailable(NOT_YET)

    def _close(self) -> None:
        pass

    def _run(self, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]:
        raise BackendUnavailable(NOT_YET)

    def _describe(self, tensor: Any) -> tuple[tuple[int, ...], str]:
        raise BackendUnavailable(NOT_YET)

    def upload(self, array: np.ndarray) -> Any:
        raise BackendUnavailable(NOT_YET)

    def download(self, tensor: Any) -> np.ndarray:
        raise BackendUnavailable(NOT_YET)
