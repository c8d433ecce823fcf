"""PyTorch backend: runs the `torch.export` programs (`graphs/<graph>.pt2`) the manifest names.

This is the eager reference and the calibration replay path. It loads programs, not the model
code, so `runtime/` never imports `model/`. Tensors are torch tensors on the backend's device,
so stage outputs stay there between graphs. FP32 only: the programs are the FP32 graphs.
`threads` sets torch's global intra-op thread count (torch has no per-module setting).

On CUDA the device side goes through `runtime/backends/cuda_device.py`, shared with the TensorRT
backend: every op runs on the device's own stream, uploads and downloads are ordered on it,
`timer()` measures with CUDA events, `frame_graph` captures a whole frame as one CUDA graph, and
`device_frames()` runs the native frame kernels on the device (`runtime/backends/device_frames.py`).
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from runtime.backends.base import Backend, Fetched
from runtime.backends.cuda_device import CudaDevice, EventTimer, FrameBody, FrameGraph, Staging, TorchCudaDevice
from runtime.backends.device_frames import DeviceFrames, attach_device_frames
from runtime.errors import BackendUnavailable, InferenceError, ManifestError
from runtime.manifest import Manifest


class TorchBackend(Backend):
    name = "torch"

    def __init__(
        self, manifest: Manifest, device: str = "cpu", precision: str = "fp32", threads: int | None = None
    ) -> None:
        super().__init__(manifest, device, precision, threads)
        self._modules: dict[str, Any] = {}
        self._device: CudaDevice | None = None  # CUDA only
        self._staging: Staging | None = None  # CUDA only
        self._frames: DeviceFrames | None = None  # CUDA only, with the native kernels
        self._frame_work = "NumPy on the host"

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
        if self.device == "cuda":
            self._device = TorchCudaDevice()
            self._staging = Staging(self._device)
            self._frames, self._frame_work = attach_device_frames(self._device, self._staging)
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
        if self._device is not None:
            torch.cuda.synchronize()  # the weights were copied on the default stream; ours reads them

    def _close(self) -> None:
        self._modules = {}
        if self._device is not None:
            self._device.synchronize()
            self._device = None
            self._staging = None
            self._frames = None

    def _run(self, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        spec = self.manifest.graph(graph)
        args = [feeds[s.name] for s in spec.inputs]
        try:
            with torch.inference_mode(), self._scope():
                result = self._modules[graph](*args)
        except RuntimeError as exc:  # includes torch.cuda.OutOfMemoryError
            raise InferenceError(f"torch failed running graph {graph!r}: {str(exc).strip().splitlines()[0]}") from exc
        outputs = result if isinstance(result, (tuple, list)) else (result,)
        return dict(zip([s.name for s in spec.outputs], outputs, strict=True))

    def _describe(self, tensor: Any) -> tuple[tuple[int, ...], str]:
        if isinstance(tensor, np.ndarray):
            return tuple(tensor.shape), tensor.dtype.name
        return tuple(tensor.shape), str(tensor.dtype).removeprefix("torch.")

    def _scope(self) -> Any:
        return self._device.scope() if self._device is not None else contextlib.nullcontext()

    def upload(self, array: np.ndarray) -> Any:
        if self._device is not None:
            return self._device.upload(array)
        import torch

        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def download(self, tensor: Any) -> np.ndarray:
        if self._device is not None:
            return self._device.download(tensor)
        return tensor.detach().cpu().numpy()

    def stage_in(self, slot: Hashable, array: np.ndarray) -> Any:
        if self._staging is None:
            return self.upload(array)
        return self._staging.stage_in(slot, array)

    def fetch_later(self, slot: Hashable, tensor: Any) -> Fetched:
        if self._staging is None:
            return Fetched(self.download(tensor))
        return Fetched(self._staging.fetch_later(slot, tensor), reused=True)

    def _synchronize(self) -> None:
        if self._device is not None:
            self._device.synchronize()

    def device_frames(self) -> DeviceFrames | None:
        return self._frames

    @property
    def frame_work(self) -> str:
        return self._frame_work

    # ------------------------------------------------------------------ CUDA only

    def _cuda(self, what: str) -> CudaDevice:
        if self._device is None:
            raise BackendUnavailable(f"{what} needs the torch backend open on CUDA")
        return self._device

    def timer(self) -> EventTimer:
        """CUDA-event timing of the device work queued inside `with backend.timer() as t:` (t.ms)."""
        return self._cuda("CUDA-event timing").timer()

    def frame_graph(self, body: FrameBody, example: dict[str, np.ndarray]) -> FrameGraph:
        """Capture `body` (device inputs -> device outputs, e.g. the stage loop) as one CUDA graph."""
        return FrameGraph(self._cuda("CUDA-graph capture"), body, example)
