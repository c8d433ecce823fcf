"""PyTorch backend: runs the `torch.export` programs (`graphs/<graph>.pt2`) the manifest names.

This is the eager reference and the calibration replay path. It loads programs, not the model
code, so `runtime/` never imports `model/`. Tensors are torch tensors on the backend's device,
so stage outputs stay there between graphs. FP32 only: the programs are the FP32 graphs.
`threads` sets torch's global intra-op thread count (torch has no per-module setting).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from runtime.backends.base import Backend
from runtime.errors import BackendUnavailable, InferenceError, ManifestError
from runtime.manifest import Manifest


class TorchBackend(Backend):
    name = "torch"

    def __init__(
        self, manifest: Manifest, device: str = "cpu", precision: str = "fp32", threads: int | None = None
    ) -> None:
        super().__init__(manifest, device, precision, threads)
        self._modules: dict[str, Any] = {}

    @classmethod
    def check_available(cls, device: str) -> None:
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailable("torch is not installed (the torch backend needs PyTorch >= 2.3)") from exc
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("torch sees no CUDA device")

    def _open(self, graphs: list[str]) -> None:
        import torch

        wanted = sorted({self.graph_precision(g) for g in graphs} - {"fp32"})
        if wanted:
            raise BackendUnavailable(f"the torch backend runs fp32 programs only, not {', '.join(wanted)}")
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        for graph in graphs:
            path = self.manifest.program_file(graph)
            try:
                program = torch.export.load(str(path))
            except (RuntimeError, OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                raise ManifestError(
                    f"{path}: torch cannot load this program ({str(exc).strip().splitlines()[0]})"
                ) from exc
            spec = self.manifest.graph(graph)
            inputs = [s.name for s in spec.inputs]
            got = list(program.graph_signature.user_inputs)
            if got != inputs or len(program.graph_signature.user_outputs) != len(spec.outputs):
                raise ManifestError(
                    f"{path}: program inputs {got} / {len(program.graph_signature.user_outputs)} outputs do not match "
                    f"manifest graphs.{graph} ({inputs} / {len(spec.outputs)} outputs)"
                )
            self._modules[graph] = program.module().to(self.device)

    def _close(self) -> None:
        self._modules = {}

    def _run(self, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        spec = self.manifest.graph(graph)
        args = [feeds[s.name] for s in spec.inputs]
        try:
            with torch.inference_mode():
                result = self._modules[graph](*args)
        except RuntimeError as exc:  # includes torch.cuda.OutOfMemoryError
            raise InferenceError(f"torch failed running graph {graph!r}: {str(exc).strip().splitlines()[0]}") from exc
        outputs = result if isinstance(result, (tuple, list)) else (result,)
        return dict(zip([s.name for s in spec.outputs], outputs, strict=True))

    def _describe(self, tensor: Any) -> tuple[tuple[int, ...], str]:
        if isinstance(tensor, np.ndarray):
            return tuple(tensor.shape), tensor.dtype.name
        return tuple(tensor.shape), str(tensor.dtype).removeprefix("torch.")

    def upload(self, array: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def download(self, tensor: Any) -> np.ndarray:
        return tensor.detach().cpu().numpy()

    def _synchronize(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
