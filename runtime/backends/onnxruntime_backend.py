"""ONNX Runtime backend: CPU execution provider, CUDA and TensorRT providers with IO binding.

On the CPU, feeds and outputs are numpy arrays and `session.run` is used. On CUDA (needs the
onnxruntime-gpu package), tensors are OrtValues on the GPU and every graph runs through IO
binding, so stage outputs stay on the device from one graph to the next. IO binding can also be
forced on the CPU (`io_binding=True`), which is how the code path is tested without a GPU.

On the CPU every session of the process allocates from one shared arena (ONNX Runtime's
environment allocator). By default each session grows an arena of its own and keeps it, so a
whole frame held the peak of every graph at once (seven arenas for three stages); shared, the
process holds the peak of the largest graph only. Memory patterns are off (see `_open`).
Inside `returning_memory()` (tiled frames) each run ends by shrinking the arena back, so the
whole-frame prior's peak is not kept beside the tiles' (the arena never shrinks otherwise).

ONNX Runtime falls back to the CPU silently when a requested provider fails to load; this
backend checks the providers the session really got and raises BackendUnavailable instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from runtime.backends.base import Backend
from runtime.backends.graph_io import PortInfo, check_graph_io, first_line
from runtime.errors import BackendUnavailable, InferenceError, ManifestError
from runtime.manifest import Manifest

_ONNX_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64"}


def _ort_errors() -> tuple[type[Exception], ...]:
    """ONNX Runtime's own exception types (they derive from Exception directly)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = (
        "Fail",
        "InvalidArgument",
        "NoSuchFile",
        "NoModel",
        "EngineError",
        "RuntimeException",
        "InvalidProtobuf",
        "ModelLoaded",
        "NotImplemented",
        "InvalidGraph",
        "EPFail",
    )
    return tuple(getattr(state, n) for n in names if hasattr(state, n))


_shared_cpu_arena = False


def _share_cpu_arena(ort: Any) -> None:
    """Register the process-wide CPU arena that sessions opt into (once per process)."""
    global _shared_cpu_arena
    if _shared_cpu_arena:
        return
    memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(memory, ort.OrtArenaCfg({"arena_extend_strategy": 0}))  # 0: power of two
    _shared_cpu_arena = True


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self,
        manifest: Manifest,
        device: str = "cpu",
        precision: str = "fp32",
        threads: int | None = None,
        io_binding: bool | None = None,
        tensorrt_provider: bool = False,
        device_id: int = 0,
        disabled_optimizers: Sequence[str] = (),
    ) -> None:
        """`io_binding` defaults to on for CUDA, off for CPU; `tensorrt_provider` puts ONNX
        Runtime's TensorRT execution provider before CUDA (device "cuda" only);
        `disabled_optimizers`: ONNX Runtime graph optimizers left out of every session, by their
        registered names (the accuracy gate's TensorRT-like evaluation, calibration/gate.py)."""
        super().__init__(manifest, device, precision, threads)
        self.io_binding = (device == "cuda") if io_binding is None else io_binding
        self.tensorrt_provider = tensorrt_provider
        self.device_id = device_id
        self.disabled_optimizers = tuple(disabled_optimizers)
        self._sessions: dict[str, Any] = {}
        self._errors: tuple[type[Exception], ...] = ()
        self._run_options: Any = None  # None: ONNX Runtime's defaults

    @classmethod
    def check_available(cls, device: str) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(
                "onnxruntime is not installed (pip install onnxruntime, or onnxruntime-gpu)"
            ) from exc
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailable(
                "this onnxruntime has no CUDA execution provider (install onnxruntime-gpu and the CUDA libraries)"
            )

    def _providers(self) -> list[Any]:
        if self.device == "cpu":
            return ["CPUExecutionProvider"]
        providers: list[Any] = []
        if self.tensorrt_provider:
            providers.append(("TensorrtExecutionProvider", {"device_id": self.device_id}))
        providers.append(("CUDAExecutionProvider", {"device_id": self.device_id}))
        providers.append("CPUExecutionProvider")
        return providers

    def _open(self, graphs: list[str]) -> None:
        import onnxruntime as ort

        self._errors = _ort_errors()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads or 0  # 0: one thread per physical core
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only; warnings about unused initialisers are noise
        if self.device == "cpu":
            _share_cpu_arena(ort)
            options.add_session_config_entry("session.use_env_allocators", "1")
            # A memory pattern, replayed on the second run of a shape, takes one block for every
            # tensor at once: measured on a 6000x4000 prior, 0.57 GB more than the first run.
            options.enable_mem_pattern = False
        wanted = [p if isinstance(p, str) else p[0] for p in self._providers()]
        extra = {"disabled_optimizers": list(self.disabled_optimizers)} if self.disabled_optimizers else {}
        for graph in graphs:
            path = self.manifest.graph_file(graph, self.graph_precision(graph))
            try:
                session = ort.InferenceSession(str(path), options, providers=self._providers(), **extra)
            except self._errors as exc:
                raise ManifestError(f"{path}: ONNX Runtime cannot load this graph ({first_line(exc)})") from exc
            got = session.get_providers()
            missing = [p for p in wanted if p != "CPUExecutionProvider" and p not in got]
            if missing:
                raise BackendUnavailable(
                    f"onnxruntime could not start {', '.join(missing)} for {path.name} (got {got})"
                )
            self._check_io(graph, session, str(path))
            self._sessions[graph] = session

    def _check_io(self, graph: str, session: Any, path: str) -> None:
        """The graph file must have exactly the inputs and outputs the manifest declares."""

        def ports(args: list[Any]) -> list[PortInfo]:
            return [(a.name, _ONNX_TYPES.get(a.type, a.type), a.shape) for a in args]

        check_graph_io(self.manifest, graph, path, ports(session.get_inputs()), ports(session.get_outputs()))

    def _close(self) -> None:
        self._sessions = {}

    @contextlib.contextmanager
    def returning_memory(self) -> Iterator[None]:
        import onnxruntime as ort

        options = ort.RunOptions()
        arena = "cpu:0" if self.device == "cpu" else f"gpu:{self.device_id}"
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", arena)
        previous, self._run_options = self._run_options, options
        try:
            yield
        finally:
            self._run_options = previous

    def _run(self, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]:
        session = self._sessions[graph]
        names = [s.name for s in self.manifest.graph(graph).outputs]
        try:
            if not self.io_binding:
                return dict(zip(names, session.run(names, dict(feeds), self._run_options), strict=True))
            binding = session.io_binding()
            for name, value in feeds.items():
                binding.bind_ortvalue_input(name, value if not isinstance(value, np.ndarray) else self.upload(value))
            for name in names:
                binding.bind_output(name, self.device, self.device_id)
            session.run_with_iobinding(binding, self._run_options)
            return dict(zip(names, binding.get_outputs(), strict=True))
        except self._errors as exc:
            raise InferenceError(f"onnxruntime failed running graph {graph!r}: {first_line(exc)}") from exc

    def _describe(self, tensor: Any) -> tuple[tuple[int, ...], str]:
        if isinstance(tensor, np.ndarray):
            return tuple(tensor.shape), tensor.dtype.name
        return tuple(tensor.shape()), _ONNX_TYPES.get(tensor.data_type(), tensor.data_type())

    def upload(self, array: np.ndarray) -> Any:
        array = np.ascontiguousarray(array)
        if not self.io_binding:
            return array
        import onnxruntime as ort

        return ort.OrtValue.ortvalue_from_numpy(array, self.device, self.device_id)

    def download(self, tensor: Any) -> np.ndarray:
        return tensor if isinstance(tensor, np.ndarray) else tensor.numpy()
