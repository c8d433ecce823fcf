"""A stand-in for the `tensorrt` module (the GPU library only) over the fake pycuda's memory.

An "engine" here is a JSON plan naming an ONNX graph and its static input and output shapes
and dtypes; executing it runs the graph with ONNX Runtime on the CPU, reading the inputs from
and writing the outputs to the fake device memory at the addresses the backend bound, as a
real engine does. It offers exactly the calls `runtime/backends/tensorrt_backend.py` and
`runtime/trt_version.py` make, in the 8.6 or the 10.x spelling according to `__version__`,
and fails loudly on anything else. Its numbers are ONNX Runtime's: the tests that use it check
how the backend and the pipeline move data (allocations, copies, waits), never TensorRT's maths.

`write_fake_engines` adds engine records and plans for one frame size to an artifacts folder,
keyed exactly as `export/engines.py` keys real ones, so that the backend's own discovery,
key checks and profile checks accept them.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from runtime.gpu_info import GpuInfo
from runtime.manifest import FileRef, load_manifest, save_manifest, sha256_file
from tests.runtime.engine_records import at_size, engine_record
from tests.runtime.fake_pycuda import FakeCuda

_NUMPY = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64}
_TRT_NAME = {"float32": "FLOAT", "float16": "HALF", "int32": "INT32", "int64": "INT64"}


def write_fake_engines(
    artifacts: Path,
    size: tuple[int, int],
    version: str,
    gpu: GpuInfo,
    dla_core: int | None = None,
    extra_sizes: tuple[tuple[int, int], ...] = (),
) -> None:
    """Static fp32 engine records and plans at `size` (H, W), batch 1, for every graph in use
    (`dla_core`: recorded as built for that DLA core); more engines at each of `extra_sizes`
    (the tiles of a tiled run), as `export/build_engines.py --sizes` builds one per size.

    TensorRT 8.6 makes int64 graph inputs int32 engine tensors: so do these plans on 8.x."""
    manifest = load_manifest(artifacts, verify=False)
    records = []
    for graph, at in ((g, s) for s in (size, *extra_sizes) for g in manifest.graphs_in_use()):
        spec = manifest.graph(graph)

        def shape_of(tensor: Any, at: tuple[int, int] = at) -> list[int]:
            return list(at_size(tensor, at))

        def dtype_of(tensor: Any, is_input: bool) -> str:
            narrowed = is_input and tensor.dtype == "int64" and version.startswith("8.")
            return "INT32" if narrowed else _TRT_NAME[tensor.dtype]

        plan = {
            "onnx": str(manifest.graph_file(graph)),
            "inputs": {t.name: [shape_of(t), dtype_of(t, True)] for t in spec.inputs},
            "outputs": {t.name: [shape_of(t), dtype_of(t, False)] for t in spec.outputs},
        }
        record = engine_record(manifest, graph, version=version, gpu=gpu, size=at, dla_core=dla_core)
        path = artifacts / record.plan.path
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(plan))
        records.append(dataclasses.replace(record, plan=FileRef(record.plan.path, sha256_file(path))))
    save_manifest(dataclasses.replace(manifest, engines=tuple(records)), artifacts)


def install_fake_tensorrt(monkeypatch: Any, cuda: FakeCuda, version: str) -> types.ModuleType:
    """Put a fake `tensorrt` of `version` in sys.modules, executing engines over `cuda`'s memory."""
    import onnxruntime as ort

    modern = not version.startswith("8.")

    module = types.ModuleType("tensorrt")
    module.deserialised_on_dla = []  # the runtime's DLA core at each deserialisation (None: GPU)
    # A test's engine that goes wrong (e.g. an FP16 overflow): (output name, values) -> what the
    # engine writes; None writes ONNX Runtime's values.
    module.output_filter = None

    class TensorIOMode(Enum):
        INPUT = 1
        OUTPUT = 2

    class DataType(Enum):
        FLOAT = 0
        HALF = 1
        INT32 = 3
        INT64 = 8

    class ILogger:
        class Severity(Enum):
            INTERNAL_ERROR = 0
            ERROR = 1
            WARNING = 2
            INFO = 3
            VERBOSE = 4

        def __init__(self) -> None:
            pass

    class ExecutionContextAllocationStrategy(Enum):
        STATIC = 0
        ON_PROFILE_CHANGE = 1
        USER_MANAGED = 2

    class Context:
        def __init__(self, engine: Engine_) -> None:
            self.engine = engine
            self.addresses: dict[str, int] = {}
            self.device_memory: int | None = None  # 8.6 / 10.0 spelling (assigned)

        def set_device_memory(self, address: int, size: int) -> None:
            if not modern:
                raise AttributeError("set_device_memory is TensorRT 10.1+")
            self.device_memory = address

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            return list(shape) == self.engine.io[name][0]

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = int(address)
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(self.engine.io[name][0])

        def execute_async_v3(self, stream_handle: int) -> bool:
            cuda.require_context("execute_async_v3")
            if self.device_memory is None:
                raise RuntimeError("execute_async_v3: the context has no scratch memory")
            feeds = {}
            for name in self.engine.inputs:
                array = cuda.at(self.addresses[name])
                if array.dtype != _NUMPY[self.engine.io[name][1]]:
                    raise RuntimeError(f"execute_async_v3: {name} bound to {array.dtype} memory")
                feeds[name] = array.astype(np.int64) if array.dtype == np.int32 else array
            values = self.engine.session.run(self.engine.outputs, feeds)
            for name, value in zip(self.engine.outputs, values, strict=True):
                written = value if module.output_filter is None else module.output_filter(name, value)
                cuda.at(self.addresses[name])[...] = written
            return True

    class Engine_:
        def __init__(self, plan: dict[str, Any]) -> None:
            self.session = ort.InferenceSession(plan["onnx"], providers=["CPUExecutionProvider"])
            self.inputs, self.outputs = list(plan["inputs"]), list(plan["outputs"])
            self.io = {**plan["inputs"], **plan["outputs"]}
            self.num_io_tensors = len(self.io)
            self.device_memory_size = self.device_memory_size_v2 = 1 << 20

        def get_tensor_name(self, index: int) -> str:
            return [*self.inputs, *self.outputs][index]

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> DataType:
            return DataType[self.io[name][1]]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(self.io[name][0])

        def create_execution_context(self, strategy: Any) -> Context:
            if not modern or strategy is not ExecutionContextAllocationStrategy.USER_MANAGED:
                raise RuntimeError("create_execution_context(USER_MANAGED) is the TensorRT 10 call")
            return Context(self)

        def create_execution_context_without_device_memory(self) -> Context:
            if modern:
                raise RuntimeError("the 8.6 call on a TensorRT 10 engine")
            return Context(self)

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.logger = logger
            self.DLA_core = -1  # what the engines deserialised next will run on

        def deserialize_cuda_engine(self, data: bytes) -> Engine_ | None:
            cuda.require_context("deserialize_cuda_engine")
            module.deserialised_on_dla.append(self.DLA_core if self.DLA_core >= 0 else None)
            try:
                return Engine_(json.loads(data))
            except (ValueError, KeyError) as exc:
                self.logger.log(ILogger.Severity.ERROR, f"not a plan: {exc}")
                return None

    class Builder:
        def __init__(self, logger: Any) -> None:
            raise RuntimeError("the fake TensorRT builds nothing (write_fake_engines writes the plans)")

    module.__dict__.update(
        __version__=version,
        __file__=__file__,
        TensorIOMode=TensorIOMode,
        DataType=DataType,
        ILogger=ILogger,
        ExecutionContextAllocationStrategy=ExecutionContextAllocationStrategy,
        Runtime=Runtime,
        Builder=Builder,
    )
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module
