"""OpenVINO backend: the manifest's ONNX graphs compiled by OpenVINO for the CPU.

Feeds and outputs are numpy arrays, as on ONNX Runtime's CPU provider. The graph files are read
once at open (and their inputs and outputs checked against the manifest); each graph is then
compiled for the input shapes it is called with, on the first call of those shapes, and kept
for the next frames. Compiled for fixed shapes, the largest graph ran 1.7x faster than when
compiled once with dynamic batch, height and width, and compiling plus the first run took less
time too, so even a single image gains (docs/BENCHMARKS.md, "OpenVINO against ONNX Runtime").
A stream repeats one shape, tiles add one more; `_SHAPES_PER_GRAPH` bounds what a folder of
differently sized images keeps compiled.

Precision: OpenVINO's CPU plugin runs FP32 graphs in bf16 or f16 on CPUs that have them unless
told otherwise, so every graph is compiled with INFERENCE_PRECISION_HINT f32: an fp32 graph
runs at FP32, an fp16 variant file runs its FP16 weights at FP32, and an INT8 (Q/DQ) file runs
its quantized operators in INT8 and the rest at FP32. Which variant runs is the manifest's
choice for the `openvino/cpu` target (Manifest.precision_for), as on every backend: `int8`
without a plan runs a graph's `int8-cpu` flavour (uint8 activations) where it has one, as on
every CPU target. That matters more here: on OpenVINO's x86 CPU plugin the symmetric `int8`
flavour came out about 10x further from FP32 than on ONNX Runtime, `int8-cpu` as close
(docs/BENCHMARKS.md).

Threads: `threads` sets INFERENCE_NUM_THREADS; left unset, OpenVINO uses one thread per
physical core, like ONNX Runtime's intra-op default here. One stream and the latency hint keep
every thread on the one request at a time the pipeline makes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from runtime.backends.base import Backend
from runtime.backends.graph_io import PortInfo, check_graph_io, first_line
from runtime.errors import BackendUnavailable, InferenceError, ManifestError
from runtime.manifest import Manifest

# Compiled shapes kept per graph (least recently used dropped first): a stream's frame, its
# tiles and the whole-frame prior beside them fit.
_SHAPES_PER_GRAPH = 4
# OpenVINO's messages start with the source location of the check that failed; skipped.
_LOCATION_LINES = ("Exception from ", "Check '")

ShapeKey = tuple[tuple[int, ...], ...]


def _ov_errors() -> tuple[type[Exception], ...]:
    """What OpenVINO raises: RuntimeError for its C++ exceptions (reading, compiling, inferring)
    and the frontends' own failure types (they derive from Exception directly)."""
    from openvino import _pyopenvino as ov_native

    names = ("GeneralFailure", "InitializationFailure", "NotImplementedFailure", "OpConversionFailure",
             "OpValidationFailure")  # fmt: skip
    return (RuntimeError, *(getattr(ov_native, n) for n in names if hasattr(ov_native, n)))


def _port(port: Any) -> PortInfo:
    """(name, numpy dtype name, shape with None for dynamic dimensions) of a model input or output."""
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return port.get_any_name(), port.get_element_type().to_dtype().name, shape


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(
        self, manifest: Manifest, device: str = "cpu", precision: str = "fp32", threads: int | None = None
    ) -> None:
        super().__init__(manifest, device, precision, threads)
        self._core: Any = None
        self._models: dict[str, Any] = {}  # graph -> openvino.Model as read from its file
        self._compiled: dict[str, OrderedDict[ShapeKey, Any]] = {}  # graph -> shapes -> infer request
        self._errors: tuple[type[Exception], ...] = ()

    @classmethod
    def check_available(cls, device: str) -> None:
        if device != "cpu":
            raise BackendUnavailable("the openvino backend runs on the CPU only (use --device cpu)")
        try:
            import openvino  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable("openvino is not installed (pip install openvino)") from exc

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.threads
        return config

    def _open(self, graphs: list[str]) -> None:
        import openvino as ov

        self._errors = _ov_errors()
        self._core = ov.Core()
        for graph in graphs:
            path = self.manifest.graph_file(graph, self.graph_precision(graph))
            try:
                model = self._core.read_model(str(path))
            except self._errors as exc:
                reason = first_line(exc, _LOCATION_LINES)
                raise ManifestError(f"{path}: OpenVINO cannot read this graph ({reason})") from exc
            inputs: list[PortInfo] = [_port(p) for p in model.inputs]
            outputs: list[PortInfo] = [_port(p) for p in model.outputs]
            check_graph_io(self.manifest, graph, str(path), inputs, outputs)
            self._models[graph] = model
            self._compiled[graph] = OrderedDict()

    def _close(self) -> None:
        self._models, self._compiled, self._core = {}, {}, None

    def compiled_shapes(self, graph: str) -> list[ShapeKey]:
        """The input shapes `graph` is compiled for now, oldest first."""
        return list(self._compiled[graph])

    def _request(self, graph: str, feeds: Mapping[str, np.ndarray]) -> Any:
        """The infer request of `graph` compiled for these feeds' shapes (compiled on first use)."""
        names = [s.name for s in self.manifest.graph(graph).inputs]
        key: ShapeKey = tuple(tuple(feeds[n].shape) for n in names)
        cache = self._compiled[graph]
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        model = self._models[graph].clone()
        model.reshape(dict(zip(names, key, strict=True)))
        compiled = self._core.compile_model(model, "CPU", self._config())
        cache[key] = compiled.create_infer_request()
        if len(cache) > _SHAPES_PER_GRAPH:
            cache.popitem(last=False)
        return cache[key]

    def inference_threads(self, graph: str) -> int:
        """INFERENCE_NUM_THREADS of `graph`'s most recently compiled shape, as OpenVINO resolved it."""
        request = next(reversed(self._compiled[graph].values()))
        return int(request.get_compiled_model().get_property("INFERENCE_NUM_THREADS"))

    def _run(self, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]:
        names = [s.name for s in self.manifest.graph(graph).outputs]
        try:
            request = self._request(graph, feeds)
            results = request.infer(dict(feeds))  # outputs are copied out of the request's buffers
            return {name: results[name] for name in names}
        except self._errors as exc:
            reason = first_line(exc, _LOCATION_LINES)
            raise InferenceError(f"openvino failed running graph {graph!r}: {reason}") from exc

    def _describe(self, tensor: Any) -> tuple[tuple[int, ...], str]:
        return tuple(tensor.shape), tensor.dtype.name

    def upload(self, array: np.ndarray) -> Any:
        return np.ascontiguousarray(array)

    def download(self, tensor: Any) -> np.ndarray:
        return tensor
