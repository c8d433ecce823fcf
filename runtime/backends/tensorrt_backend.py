"""TensorRT backend: runs the engines (`engines/<graph>.<key>.plan`) that manifest.engines names.

Opening, for every graph the stage plan uses, at the precision `graph_precision` picks:

1. **Discovery.** The manifest's engine records for (graph, precision). None: BackendUnavailable
   (engines were never built here; a fallback order moves on), with the build command.
2. **Keys.** Each record's key inputs (ONNX sha256, precision, shapes, TensorRT version, GPU
   name, compute capability) are recomputed for this machine with `runtime/engine_key.py`. A
   record built elsewhere is skipped; when no record of a graph fits this machine, opening
   fails with EngineBuildError listing what changed and the exact command that rebuilds them
   (the runtime may not import `export/`, so it never rebuilds by itself). A stale engine is
   never loaded.
3. **Deserialisation.** `Runtime.deserialize_cuda_engine`; a corrupt plan, or one TensorRT
   refuses, is an EngineBuildError with TensorRT's own message and the rebuild command. The
   engine's inputs and outputs must be the manifest's (names, dtypes; int64 inputs may be int32
   engine tensors, as TensorRT 8.6 makes them: `upload` then narrows them on the host).
4. **Contexts.** One execution context per engine, all sharing one scratch buffer (stages run
   one after another on one stream), through the version helpers of `runtime/trt_version.py`.

Running a graph picks the engine whose optimization profile covers the input shapes (a static
engine: exactly its shapes) and raises ShapeError before anything runs when none does. Inputs
and outputs are bound with `set_input_shape` / `set_tensor_address`, the graph is queued with
`execute_async_v3` on the device's stream, and each output goes to a buffer kept per (graph,
output, shape) (`cuda_device.BufferPool`): stage outputs stay on the device, chained from graph
to graph, and stay valid until the same graph runs again.

**NaN/Inf check.** FP16 (and INT8) engines can overflow. Checking every intermediate tensor
would cost a device reduction and a synchronisation per graph, so the check is made where the
data reaches the host anyway: `download` raises InferenceError when a float array holds NaN or
Inf (one pass over the final frame in the whole-frame pipeline; a NaN or Inf inside the
pipeline propagates into it). `check_finite=False` turns it off.

Device buffers and the stream come from `runtime/backends/cuda_device.py`: pycuda in the
primary context when pycuda is installed, else PyTorch CUDA tensors (`cuda_library` forces
one). Whole-frame CUDA-graph capture (`frame_graph`) needs the torch path. With the native frame
kernels built with CUDA, `device_frames()` converts, tiles and blends frames on the device
(`runtime/backends/device_frames.py`); 8-bit frames come back as bytes, so there the kernel
that makes those bytes counts the NaN/Inf samples it converts and the count comes back with
them, in the frame's one wait: the same check, the same InferenceError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.backends.base import Backend, Fetched
from runtime.backends.cuda_device import (
    BufferPool,
    CudaDevice,
    EventTimer,
    FrameBody,
    FrameGraph,
    Staging,
    check_finite,
    open_cuda_device,
)
from runtime.backends.device_frames import DeviceFrames, attach_device_frames
from runtime.engine_key import EngineKeyInputs
from runtime.errors import BackendUnavailable, EngineBuildError, InferenceError, ManifestError, ShapeError
from runtime.gpu_info import GpuInfo, query_gpu
from runtime.manifest import Engine, Manifest
from runtime.trt_logger import shared_logger
from runtime.trt_version import (
    TrtCapabilities,
    context_memory_size,
    create_context_without_memory,
    detect,
    import_tensorrt,
    set_context_memory,
)

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

Shape = tuple[int, ...]
# A profile per input: (min, max) shapes; a static engine has min == max.
ShapeBounds = dict[str, tuple[Shape, Shape]]
# TensorRT DataType member names -> the manifest's dtype names (by name: INT64 is not in 8.6).
_TRT_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64", "INT8": "int8",
               "UINT8": "uint8", "BOOL": "bool"}  # fmt: skip

# ------------------------------------------------------------------ pure logic (no TensorRT)


def rebuild_command(manifest: Manifest, precision: str = "auto") -> str:
    """The command that builds this machine's engines for these artifacts."""
    command = f"python export/build_engines.py --from-artifacts {manifest.root}"
    return command if precision == "auto" else f"{command} --precision {precision}"


def engines_for(manifest: Manifest, graph: str, precision: str) -> list[Engine]:
    """The manifest's engine records for `graph` at `precision`, in manifest order."""
    return [e for e in manifest.engines if e.graph == graph and e.precision == precision]


def key_mismatches(manifest: Manifest, engine: Engine, tensorrt_version: str, gpu: GpuInfo) -> list[str]:
    """Why `engine` cannot run here, in words; [] when its key is this machine's key.

    The recorded key inputs are checked against the recorded key, then the ONNX graph's current
    sha256 (from the manifest), this TensorRT version and this GPU replace theirs: any difference
    changes the key.
    """
    if engine.key_inputs is None:
        return ["the manifest records no key inputs for it (built by an older build_engines.py)"]
    recorded = EngineKeyInputs.from_dict(engine.key_inputs)  # validated when the manifest was read
    variant = recorded.precision.split("/", 1)[0]
    variants = manifest.graph(engine.graph).variants
    if variant not in variants:
        return [f"it was built from the {variant} graph, which these artifacts no longer have"]
    here = dataclasses.replace(
        recorded,
        onnx_sha256=variants[variant].onnx.sha256,
        tensorrt_version=tensorrt_version,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
    )
    return recorded.mismatches(here)


def usable_engines(
    manifest: Manifest, graph: str, precision: str, tensorrt_version: str, gpu: GpuInfo, requested: str = "auto"
) -> list[Engine]:
    """The records of `graph` at `precision` whose key fits this machine.

    BackendUnavailable when there is none at all; EngineBuildError (what changed, and the
    rebuild command) when every record was built for something else.
    """
    records = engines_for(manifest, graph, precision)
    command = rebuild_command(manifest, requested)
    if not records:
        raise BackendUnavailable(f"no {precision} TensorRT engine for graph {graph!r} in {manifest.root}: {command}")
    usable, reasons = [], []
    for record in records:
        problems = key_mismatches(manifest, record, tensorrt_version, gpu)
        if problems:
            log.debug("engine %s does not fit this machine: %s", record.plan.path, "; ".join(problems))
            reasons.append(f"{record.plan.path}: {'; '.join(problems)}")
        else:
            usable.append(record)
    if not usable:
        raise EngineBuildError(
            f"the {precision} TensorRT engine(s) of graph {graph!r} were built for another machine or graph "
            f"({' | '.join(reasons)}); rebuild them here: {command}"
        )
    return usable


def describe_bounds(bounds: ShapeBounds) -> str:
    parts = []
    for name, (lo, hi) in sorted(bounds.items()):
        parts.append(f"{name} {list(lo)}" if lo == hi else f"{name} {list(lo)}..{list(hi)}")
    return ", ".join(parts)


def covers(bounds: ShapeBounds, shapes: Mapping[str, Shape]) -> bool:
    """Whether every input shape lies inside its profile bounds (same rank, min <= dim <= max)."""
    if set(bounds) != set(shapes):
        return False
    for name, shape in shapes.items():
        lo, hi = bounds[name]
        if len(shape) != len(lo) or not all(a <= d <= b for a, d, b in zip(lo, shape, hi, strict=True)):
            return False
    return True


def select_profile(graph: str, profiles: Sequence[ShapeBounds], shapes: Mapping[str, Shape], hint: str = "") -> int:
    """Index of the first profile that covers `shapes`; ShapeError naming what exists otherwise."""
    for i, bounds in enumerate(profiles):
        if covers(bounds, shapes):
            return i
    have = "; ".join(describe_bounds(b) for b in profiles) or "none"
    got = ", ".join(f"{n} {list(s)}" for n, s in sorted(shapes.items()))
    raise ShapeError(
        f"graph {graph!r}: no TensorRT engine takes {got} (engines here take: {have}); build one for this size{hint}"
    )


def record_bounds(engine: Engine) -> ShapeBounds:
    """The profile bounds a manifest engine record declares."""
    return {name: (tuple(r.min), tuple(r.max)) for name, r in engine.profile.items()}


# ------------------------------------------------------------------------------ TensorRT


@dataclass
class _Loaded:
    """One deserialised engine and its execution context."""

    record: Engine
    engine: Any  # trt.ICudaEngine
    context: Any  # trt.IExecutionContext
    bounds: ShapeBounds
    inputs: dict[str, str]  # name -> dtype the engine takes
    outputs: dict[str, str]  # name -> dtype the engine gives
    dla_core: int | None = None  # the DLA core it was built for; None: GPU only


_DLA = re.compile(r"^dla(\d+)(\+gpu)?$")


def dla_core_of(record: Engine) -> int | None:
    """The DLA core an engine was built for: the record's `dla_core`, else (manifests written
    before that field) its key's precision descriptor ("…/dla0+gpu")."""
    if record.dla_core is not None:
        return record.dla_core
    descriptor = str((record.key_inputs or {}).get("precision", ""))
    for part in descriptor.split("/"):
        match = _DLA.match(part)
        if match:
            return int(match.group(1))
    return None


def host_array_for_engines(array: np.ndarray, int64_as_int32: bool) -> np.ndarray:
    """`array` as the engines take it: int64 narrowed to int32 where they take int32 (TensorRT 8.6)."""
    if not (int64_as_int32 and array.dtype == np.int64):
        return array
    info = np.iinfo(np.int32)
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise ShapeError("int64 values outside the int32 range cannot go to these engines (int32 inputs)")
    return array.astype(np.int32)


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(
        self,
        manifest: Manifest,
        device: str = "cuda",
        precision: str = "auto",
        threads: int | None = None,
        cuda_library: str = "auto",
        check_finite: bool = True,
    ) -> None:
        """`cuda_library`: "pycuda", "torch" or "auto" (pycuda when installed); `check_finite`:
        InferenceError when a downloaded output holds NaN or Inf (see the module docstring)."""
        super().__init__(manifest, device, precision, threads)
        self.cuda_library = cuda_library
        self.check_finite = check_finite
        self._device: CudaDevice | None = None
        self._pool: BufferPool | None = None
        self._staging: Staging | None = None
        self._runtime: Any = None
        self._logger: Any = None
        self._engines: dict[str, list[_Loaded]] = {}
        self._scratch: Any = None
        self._int64_as_int32 = False  # TensorRT 8.6 engines take int64 graph inputs as int32
        self._caps: TrtCapabilities | None = None
        self._frames: DeviceFrames | None = None
        self._frame_work = "NumPy on the host (not open)"

    @classmethod
    def check_available(cls, device: str) -> None:
        if device != "cuda":
            raise BackendUnavailable("TensorRT runs on NVIDIA GPUs only (use --device cuda)")
        detect()
        query_gpu()

    # ------------------------------------------------------------------ opening

    def _open(self, graphs: list[str]) -> None:
        caps, gpu = detect(), query_gpu()
        plan: dict[str, list[Engine]] = {}
        for graph in graphs:
            precision = self.graph_precision(graph)
            plan[graph] = usable_engines(self.manifest, graph, precision, caps.version, gpu, self.precision)
        self._caps = caps
        self._device = open_cuda_device(self.cuda_library)
        self._pool = BufferPool(self._device.empty)
        self._staging = Staging(self._device)
        checked_as = self._output_name(graphs) if self.check_finite else None
        self._frames, self._frame_work = attach_device_frames(self._device, self._staging, checked_as)
        trt_module = import_tensorrt()  # BackendUnavailable when only the stub is installed
        self._logger = shared_logger()
        runtime: trt.Runtime = trt_module.Runtime(self._logger)
        self._runtime = runtime
        with self._device.scope():  # loads and allocates in this device's context, from any thread
            for graph, records in plan.items():
                self._engines[graph] = [self._load(graph, record, caps) for record in records]
            self._share_scratch_memory(caps)
        self._int64_as_int32 = any(
            item.inputs[t.name] == "int32"
            for graph, items in self._engines.items()
            for item in items
            for t in self.manifest.graph(graph).inputs
            if t.dtype == "int64"
        )

    def _load(self, graph: str, record: Engine, caps: TrtCapabilities) -> _Loaded:
        import tensorrt as trt

        path = self.manifest.file_path(record.plan)
        command = rebuild_command(self.manifest, self.precision)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ManifestError(f"{path}: cannot read the engine named by manifest.engines ({exc})") from exc
        runtime: trt.Runtime = self._runtime
        engine: trt.ICudaEngine | None = None
        dla_core = dla_core_of(record)
        if dla_core is not None:
            # A DLA engine runs on the core the runtime names when it deserialises it.
            runtime.DLA_core = dla_core
        with self._logger.collect_errors() as errors:
            try:
                engine = runtime.deserialize_cuda_engine(data)
            except (RuntimeError, TypeError, ValueError) as exc:  # some releases raise instead of returning None
                errors.append(str(exc))
        if engine is None:
            said = (errors or ["no message"])[-1]
            raise EngineBuildError(
                f"{path}: TensorRT {caps.version} cannot load this engine (corrupt, or built by another "
                f"TensorRT; TensorRT says: {said}); rebuild it: {command}"
            )
        spec = self.manifest.graph(graph)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        want_in, want_out = [s.name for s in spec.inputs], [s.name for s in spec.outputs]
        if sorted(inputs) != sorted(want_in) or sorted(outputs) != sorted(want_out):
            raise EngineBuildError(
                f"{path}: engine inputs {inputs} / outputs {outputs} are not graph {graph!r}'s "
                f"{want_in} / {want_out}; rebuild it: {command}"
            )
        dtypes = {n: _TRT_DTYPES.get(str(engine.get_tensor_dtype(n).name), str(engine.get_tensor_dtype(n).name))
                  for n in names}  # fmt: skip
        for tensor in (*spec.inputs, *spec.outputs):
            got = dtypes[tensor.name]
            if got != tensor.dtype and not (tensor.dtype == "int64" and got == "int32" and tensor in spec.inputs):
                raise EngineBuildError(
                    f"{path}: {tensor.name!r} is {got} in the engine but {tensor.dtype} in the manifest; "
                    f"rebuild it: {command}"
                )
        bounds: ShapeBounds = {}
        for name in inputs:
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            if all(d >= 0 for d in shape):
                bounds[name] = (shape, shape)
            else:
                low, _, high = engine.get_tensor_profile_shape(name, 0)
                bounds[name] = (tuple(int(d) for d in low), tuple(int(d) for d in high))
        if record.profile and bounds != record_bounds(record):
            raise EngineBuildError(
                f"{path}: the engine takes {describe_bounds(bounds)}, its manifest record says "
                f"{describe_bounds(record_bounds(record))}; rebuild it: {command}"
            )
        with self._logger.collect_errors() as errors:
            context = create_context_without_memory(engine, caps)
        if context is None:
            raise EngineBuildError(f"{path}: TensorRT could not create an execution context: {errors}")
        return _Loaded(
            record, engine, context, bounds, {n: dtypes[n] for n in inputs}, {n: dtypes[n] for n in outputs}, dla_core
        )

    def _share_scratch_memory(self, caps: TrtCapabilities) -> None:
        """One scratch buffer for every context: the graphs run one at a time on one stream."""
        assert self._device is not None
        loaded = [item for items in self._engines.values() for item in items]
        size = max((context_memory_size(item.engine, caps) for item in loaded), default=0)
        self._scratch = self._device.empty((max(size, 1),), "uint8")
        address = self._device.pointer(self._scratch)
        for item in loaded:
            set_context_memory(item.context, address, size, caps)

    def _close(self) -> None:
        device = self._device
        # Freed in the device's context (pycuda frees in the current one), whichever thread closes.
        with device.scope() if device is not None else contextlib.nullcontext():
            if device is not None:
                device.synchronize()  # nothing queued may outlive the memory it uses
            # Contexts before engines before the runtime, then the memory they used.
            for items in self._engines.values():
                for item in items:
                    item.context = None
            self._engines = {}
            self._runtime = None
            if self._pool is not None:
                self._pool.clear()
            if self._staging is not None:
                self._staging.clear()
            self._frames = None
            self._scratch = None
        if device is not None:
            device.close()
        self._device = None

    # ------------------------------------------------------------------ running

    def _run(self, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]:
        assert self._device is not None and self._pool is not None
        device = self._device
        feeds = {n: self.upload(t) if isinstance(t, np.ndarray) else t for n, t in feeds.items()}
        shapes = {name: device.describe(tensor)[0] for name, tensor in feeds.items()}
        candidates = self._engines[graph]
        hint = f": {rebuild_command(self.manifest, self.precision)} --sizes WxH (or a dynamic profile)"
        loaded = candidates[select_profile(graph, [c.bounds for c in candidates], shapes, hint)]
        context: trt.IExecutionContext = loaded.context
        for name, dtype in loaded.inputs.items():
            tensor = feeds[name]
            if device.describe(tensor)[1] != dtype:  # never cast on the device (see upload)
                raise ShapeError(
                    f"graph {graph!r}: {name!r} is {device.describe(tensor)[1]} on the device but the engine "
                    f"takes {dtype}; hand it over as a host array or through this backend's upload()"
                )
            if not context.set_input_shape(name, shapes[name]):
                raise ShapeError(f"graph {graph!r}: TensorRT refuses shape {list(shapes[name])} for {name!r}")
            context.set_tensor_address(name, device.pointer(tensor))
        outputs = {}
        for name, dtype in loaded.outputs.items():
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise ShapeError(f"graph {graph!r}: output {name!r} has unresolved shape {list(shape)}")
            buffer = self._pool.get((graph, name), shape, dtype)
            context.set_tensor_address(name, device.pointer(buffer))
            outputs[name] = buffer
        with device.scope(), self._logger.collect_errors() as errors:
            ok = context.execute_async_v3(device.stream_handle)
        if not ok:
            said = (errors or ["no message"])[-1]
            raise InferenceError(f"TensorRT failed running graph {graph!r}: {said}")
        return outputs

    def _device_dtype(self, dtype: str) -> str:
        return "int32" if dtype == "int64" and self._int64_as_int32 else dtype

    def _describe(self, tensor: Any) -> tuple[tuple[int, ...], str]:
        if isinstance(tensor, np.ndarray):
            return tuple(tensor.shape), tensor.dtype.name
        if self._device is None:
            raise BackendUnavailable("the tensorrt backend is not open")
        return self._device.describe(tensor)

    def upload(self, array: np.ndarray) -> Any:
        """`array` on the device, in the dtype the engines take.

        TensorRT 8.6 engines take the graphs' int64 inputs (stage indices) as int32. The values
        are narrowed here, on the host, once per upload (the pipeline uploads its constants once
        per frame size): a device-side cast would build a kernel at run time on pycuda, which
        needs nvcc and allocates on every call.
        """
        if self._device is None:
            raise BackendUnavailable("the tensorrt backend is not open (call open() first)")
        return self._device.upload(host_array_for_engines(array, self._int64_as_int32))

    def download(self, tensor: Any) -> np.ndarray:
        if self._device is None:
            raise BackendUnavailable("the tensorrt backend is not open (call open() first)")
        return self._checked(self._device.download(tensor))

    def stage_in(self, slot: Hashable, array: np.ndarray) -> Any:
        """`array` in the slot's persistent device buffer, copied from page-locked memory on the stream."""
        if self._staging is None:
            raise BackendUnavailable("the tensorrt backend is not open (call open() first)")
        return self._staging.stage_in(slot, host_array_for_engines(array, self._int64_as_int32))

    def fetch_later(self, slot: Hashable, tensor: Any) -> Fetched:
        """A copy into the slot's page-locked buffer, queued on the stream; NaN/Inf-checked at `get`."""
        if self._staging is None:
            raise BackendUnavailable("the tensorrt backend is not open (call open() first)")
        return Fetched(self._staging.fetch_later(slot, tensor), reused=True, check=self._checked)

    def device_frames(self) -> DeviceFrames | None:
        return self._frames

    @property
    def frame_work(self) -> str:
        return self._frame_work

    def _checked(self, array: np.ndarray) -> np.ndarray:
        if self.check_finite:
            check_finite(array, self._output_name(self._engines))
        return array

    def _output_name(self, graphs: Iterable[str]) -> str:
        """What the NaN/Inf errors call the outputs of these graphs' engines."""
        used = sorted({self.graph_precision(g) for g in graphs})
        return f"TensorRT ({', '.join(used)} engines)"

    def _synchronize(self) -> None:
        if self._device is not None:
            self._device.synchronize()

    def describe(self) -> str:
        library = f", buffers via {self._device.library}" if self._device is not None else ""
        version = f" {self._caps.version}" if self._caps is not None else ""
        return f"{super().describe()}, TensorRT{version}{library}"

    # ------------------------------------------------------------------ device extras

    def timer(self) -> EventTimer:
        """CUDA-event timing of the device work queued inside `with backend.timer() as t:` (t.ms)."""
        if self._device is None:
            raise BackendUnavailable("the tensorrt backend is not open (call open() first)")
        return self._device.timer()

    def frame_graph(self, body: FrameBody, example: dict[str, np.ndarray]) -> FrameGraph:
        """Capture `body` (device inputs -> device outputs, e.g. the stage loop) as one CUDA graph.

        Static shapes: every engine's bindings are set during capture and replayed as they were.
        The outputs are downloaded by the FrameGraph, without the NaN/Inf check: call
        `runtime.backends.cuda_device.check_finite` on them where it matters.
        """
        if self._device is None:
            raise BackendUnavailable("the tensorrt backend is not open (call open() first)")
        on_dla = sorted({item.dla_core for items in self._engines.values() for item in items} - {None})
        if on_dla:
            # DLA work cannot be captured in a CUDA graph; trtexec turns graphs off with DLA too.
            raise BackendUnavailable(f"CUDA graphs are off with DLA engines (DLA core {on_dla[0]})")
        return FrameGraph(self._device, body, example)
