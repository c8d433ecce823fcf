"""The TensorRT engine builder: options, precision descriptors, and the build flow over a fake TensorRT.

TensorRT cannot run here. The fake below records what the builder asks of TensorRT so that the
version-dependent logic (flags, FP32 pins, profiles, timing cache, errors, atomic writes) is
tested; that each name the builder uses exists in the real API is `test_trt_api.py`'s job, and
`test_the_fake_only_uses_real_tensorrt_names` keeps the fake itself honest against the stub.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
from pathlib import Path

import pytest

from export import trt_builder
from export.trt_builder import BuildOptions, ShapeRange, build_engine, uses_layer_constraints
from runtime import trt_version
from runtime.errors import EngineBuildError
from runtime.gpu_info import GpuInfo
from runtime.trt_version import capabilities

REPO = Path(__file__).resolve().parents[2]

GPU = GpuInfo("Orin (nvgpu)", (8, 7), "test")
SHAPES = {"x": (1, 3, 64, 96), "noise": (1, 8)}
V86, V103, V110 = capabilities("8.6.2.3"), capabilities("10.3.0.30"), capabilities("11.0.0.114")

# ------------------------------------------------------------------------------ options


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="fp8"), "unknown precision mode"),
        (dict(variant="bf16"), "unknown graph variant"),
        (dict(mode="fp16_weak", variant="fp16"), "builds the fp32 graph"),
        (dict(input_shapes={}), "either input_shapes"),
        (dict(profile={"x": ShapeRange(*((1, 3, 32, 32),) * 3)}), "not both"),
        (dict(input_shapes={"x": (1, 3, 0, 96)}), "positive ints"),
        (dict(input_shapes={"x": (1, 3, 60, 96)}, spatial_multiple=8), "multiples of 8"),
        (dict(workspace_bytes=0), "workspace_bytes"),
        (dict(dla_core=-1, mode="fp16_weak"), "dla_core"),
        (dict(dla_core=0), "DLA runs FP16 or INT8"),
        (dict(fp32_layer_types=("softmax",)), "LayerType"),
        (dict(fp32_layer_patterns=("",)), "empty pattern"),
        (dict(log_severity="LOUD"), "log_severity"),
        (dict(spatial_multiple=0), "spatial_multiple"),
    ],
)
def test_bad_options_are_refused(kwargs: dict, message: str) -> None:
    kwargs = {"input_shapes": SHAPES, **kwargs}
    with pytest.raises(EngineBuildError, match=message):
        BuildOptions(**kwargs)


@pytest.mark.parametrize(
    "rng, message",
    [
        (ShapeRange((1, 3, 64, 64), (1, 3, 32, 64), (1, 3, 128, 128)), "min <= opt <= max"),
        (ShapeRange((1, 3, 64, 64), (1, 3, 64, 64), (1, 3, 64, 32)), "min <= opt <= max"),
        (ShapeRange((1, 3, 64, 64), (1, 3, 64), (1, 3, 64, 64)), "same rank"),
        (ShapeRange((1, 3, 64, 64), (1, 3, 72, 64), (1, 3, 128, 128)), "multiples of 16"),
    ],
)
def test_bad_profiles_are_refused(rng: ShapeRange, message: str) -> None:
    with pytest.raises(EngineBuildError, match=message):
        BuildOptions(profile={"x": rng}, spatial_multiple=16)


def test_good_options() -> None:
    static = BuildOptions(input_shapes={"x": [1, 3, 64, 96], "noise": (1, 8)}, spatial_multiple=16)
    assert static.input_shapes["x"] == (1, 3, 64, 96)  # lists become tuples
    assert static.shapes_for_key() == {"x": (1, 3, 64, 96), "noise": (1, 8)}
    rng = ShapeRange((1, 3, 32, 32), (1, 3, 256, 256), (1, 3, 720, 1280))
    dynamic = BuildOptions(profile={"x": rng}, spatial_multiple=16, timing_cache="t.cache")
    assert dynamic.shapes_for_key() == {"x": rng.as_tuple()}
    assert dynamic.timing_cache == Path("t.cache")
    # The noise input (rank 2) is not an image: the spatial multiple does not apply to it.
    assert BuildOptions(input_shapes={"noise": (1, 7)}, spatial_multiple=16).input_shapes["noise"] == (1, 7)


@pytest.mark.parametrize(
    "mode, variant, precision",
    [("fp32", "fp32", "fp32"), ("fp16_weak", "fp32", "fp16"), ("strongly_typed", "fp16", "fp16"),
     ("strongly_typed", "int8", "int8"), ("strongly_typed", "fp32", "fp32")],
)
def test_effective_precision(mode: str, variant: str, precision: str) -> None:
    assert BuildOptions(mode=mode, variant=variant, input_shapes=SHAPES).effective_precision == precision


def test_precision_descriptor_names_what_changes_the_engine() -> None:
    weak = BuildOptions(mode="fp16_weak", input_shapes=SHAPES, fp32_layer_patterns=("/head/*",))
    assert weak.precision_descriptor(V103) == "fp32/fp16_weak/fp32=NORMALIZATION,REDUCE,SOFTMAX,/head/*"
    int8 = BuildOptions(mode="strongly_typed", variant="int8", input_shapes=SHAPES)
    assert int8.precision_descriptor(V103) == "int8/strongly_typed"  # 10.x: precision is in the graph
    assert int8.precision_descriptor(V86).startswith("int8/strongly_typed/fp32=")  # 8.6: pins apply
    dla = BuildOptions(mode="fp16_weak", input_shapes=SHAPES, dla_core=1, allow_tf32=False, fp32_layer_types=())
    assert dla.precision_descriptor(V86) == "fp32/fp16_weak/no-tf32/dla1+gpu"


def test_layer_constraints_apply_where_precision_is_not_in_the_graph() -> None:
    assert uses_layer_constraints(BuildOptions(mode="fp16_weak", input_shapes=SHAPES), V103)
    assert not uses_layer_constraints(BuildOptions(mode="strongly_typed", variant="fp16", input_shapes=SHAPES), V103)
    assert uses_layer_constraints(BuildOptions(mode="strongly_typed", variant="fp16", input_shapes=SHAPES), V86)
    assert not uses_layer_constraints(BuildOptions(mode="strongly_typed", variant="fp32", input_shapes=SHAPES), V86)
    assert not uses_layer_constraints(BuildOptions(input_shapes=SHAPES), V86)


def test_weak_fp16_is_refused_on_tensorrt_11() -> None:
    options = BuildOptions(mode="fp16_weak", input_shapes=SHAPES)
    options.check_supported(V86)
    options.check_supported(V103)
    with pytest.raises(EngineBuildError, match="strongly_typed"):
        options.check_supported(V110)


# ------------------------------------------------------------------------ a fake TensorRT


class _Enum:
    def __init__(self, name: str, value: int) -> None:
        self.name, self.value = name, value

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return self.name


def _enum(*names: str) -> types.SimpleNamespace:
    return types.SimpleNamespace(**{n: _Enum(n, i) for i, n in enumerate(names)})


class _Tensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: _Enum) -> None:
        self.name, self.shape, self.dtype = name, shape, dtype


class _Layer:
    def __init__(self, trt: types.ModuleType, name: str, kind: str, dtype: _Enum) -> None:
        self.name, self.type = name, getattr(trt.LayerType, kind)
        self.precision = None
        self.outputs = [_Tensor(name + ":0", (1,), dtype)]
        self.output_types: dict[int, _Enum] = {}

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_output(self, index: int) -> _Tensor:
        return self.outputs[index]

    def set_output_type(self, index: int, dtype: _Enum) -> None:
        self.output_types[index] = dtype


class _Network:
    def __init__(self, trt: types.ModuleType, flags: int) -> None:
        self.flags = flags
        self.inputs = [_Tensor("x", (1, 3, -1, -1), trt.float32), _Tensor("noise", (1, 8), trt.float32)]
        f32, i32 = trt.float32, trt.int32
        self.layers = [
            _Layer(trt, "/enc/conv", "CONVOLUTION", f32),
            _Layer(trt, "/enc/ln", "NORMALIZATION", f32),
            _Layer(trt, "/attn/softmax", "SOFTMAX", f32),
            _Layer(trt, "/attn/shape", "SHAPE", i32),
            _Layer(trt, "/head/conv_last", "CONVOLUTION", f32),
            _Layer(trt, "/enc/conv_12", "CONVOLUTION", f32),  # a second layer the parser made of /enc/conv
        ]

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, index: int) -> _Tensor:
        return self.inputs[index]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, index: int) -> _Layer:
        return self.layers[index]


class _ParserError:
    def __init__(self, index: int, name: str) -> None:
        self.index, self.name = index, name

    def node(self) -> int:
        return self.index

    def node_name(self) -> str:
        return self.name

    def desc(self) -> str:
        return "Unsupported operator"

    def code(self) -> _Enum:
        return _Enum("UNSUPPORTED_NODE", 8)


class _Parser:
    fail = False

    def __init__(self, network: _Network, logger: object) -> None:
        self.errors: list[_ParserError] = []
        self.network = network

    def parse_from_file(self, path: str) -> bool:
        if _Parser.fail:
            self.errors.append(_ParserError(0, "my_relu"))
        if path.endswith(".onnx") and not self.errors:  # a real graph file: its inputs, dynamic dims as -1
            import onnx
            from google.protobuf.message import DecodeError

            try:
                graph = onnx.load(path, load_external_data=False).graph
            except DecodeError:  # the placeholder file of most tests: keep the fake inputs
                return True
            self.network.inputs = [
                _Tensor(i.name, tuple(d.dim_value or -1 for d in i.type.tensor_type.shape.dim), None)
                for i in graph.input
            ]
        return not self.errors

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> _ParserError:
        return self.errors[index]


class _TimingCache:
    def __init__(self, blob: bytes) -> None:
        self.blob = bytes(blob)

    def serialize(self) -> bytes:
        return self.blob + b"+entry"


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
        self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))


class _Config:
    def __init__(self) -> None:
        self.flags: set[str] = {"TF32"}
        self.pools: dict[str, int] = {}
        self.profiles: list[_Profile] = []
        self.cache: _TimingCache | None = None
        self.default_device_type = None
        self.DLA_core = -1

    def set_flag(self, flag: _Enum) -> None:
        self.flags.add(flag.name)

    def clear_flag(self, flag: _Enum) -> None:
        self.flags.discard(flag.name)

    def set_memory_pool_limit(self, pool: _Enum, size: int) -> None:
        self.pools[pool.name] = size

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, blob: bytes) -> _TimingCache:
        return _TimingCache(blob)

    def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
        if cache.blob.startswith(b"other-gpu"):
            return False
        self.cache = cache
        return True

    def get_timing_cache(self) -> _TimingCache | None:
        return self.cache


class _Builder:
    last: _Builder | None = None
    fail_build = False
    dla_cores = 0

    def __init__(self, logger: object) -> None:
        self.logger = logger
        _Builder.last = self

    @property
    def num_DLA_cores(self) -> int:
        return _Builder.dla_cores

    def create_network(self, flags: int = 0) -> _Network:
        self.network = _Network(sys.modules["tensorrt"], flags)
        return self.network

    def create_builder_config(self) -> _Config:
        self.config = _Config()
        return self.config

    def create_optimization_profile(self) -> _Profile:
        return _Profile()

    def build_serialized_network(self, network: _Network, config: _Config) -> bytes | None:
        if _Builder.fail_build:
            trt = sys.modules["tensorrt"]
            self.logger.log(trt.ILogger.Severity.ERROR, "out of memory building /enc/conv")
            return None
        return b"PLAN:" + ",".join(sorted(config.flags)).encode()


def _fake_tensorrt(version: str) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__file__ = "/fake/tensorrt/__init__.py"
    trt.__version__ = version

    class ILogger:
        Severity = _enum("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")

        def __init__(self) -> None:
            pass

    trt.ILogger = ILogger
    trt.Builder, trt.OnnxParser = _Builder, _Parser
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=_Enum("EXPLICIT_BATCH", 0),
                                                              STRONGLY_TYPED=_Enum("STRONGLY_TYPED", 1))
    trt.BuilderFlag = _enum("FP16", "INT8", "TF32", "OBEY_PRECISION_CONSTRAINTS", "GPU_FALLBACK")
    trt.MemoryPoolType = _enum("WORKSPACE")
    trt.DeviceType = _enum("GPU", "DLA")
    trt.LayerType = _enum("CONVOLUTION", "NORMALIZATION", "SOFTMAX", "REDUCE", "SHAPE")
    trt.float32, trt.float16, trt.int32 = _Enum("FLOAT", 0), _Enum("HALF", 1), _Enum("INT32", 3)
    return trt


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    """`fake(version)` installs a fake tensorrt of that version for the test."""

    def install(version: str) -> types.ModuleType:
        trt = _fake_tensorrt(version)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        trt_version.detect.cache_clear()
        return trt

    monkeypatch.setattr(_Parser, "fail", False)
    monkeypatch.setattr(_Builder, "fail_build", False)
    monkeypatch.setattr(_Builder, "dla_cores", 0)
    yield install
    trt_version.detect.cache_clear()


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "graphs" / "stage1_gd.fp32.onnx"
    path.parent.mkdir()
    path.write_bytes(b"not really onnx")
    return path


def _build(onnx_file: Path, **kwargs) -> tuple[trt_builder.BuildResult, _Builder]:
    options = BuildOptions(input_shapes=SHAPES, **kwargs)
    plan = onnx_file.parent.parent / "engines" / "stage1_gd.plan"
    result = build_engine(onnx_file, plan, options, gpu=GPU)
    assert _Builder.last is not None
    return result, _Builder.last


def _pinned(builder: _Builder) -> list[str]:
    return [layer.name for layer in builder.network.layers if layer.precision is not None]


def test_fp16_weak_on_8_6(fake, onnx_file: Path) -> None:
    fake("8.6.2.3")
    result, builder = _build(onnx_file, mode="fp16_weak", fp32_layer_patterns=("/head/*",), workspace_bytes=1 << 30)
    assert builder.network.flags == 1 << 0  # EXPLICIT_BATCH
    assert builder.config.flags == {"TF32", "FP16", "OBEY_PRECISION_CONSTRAINTS"}
    assert builder.config.pools == {"WORKSPACE": 1 << 30}
    assert _pinned(builder) == ["/enc/ln", "/attn/softmax", "/head/conv_last"]  # the shape layer is left alone
    assert all(layer.output_types == {0: layer.precision} for layer in builder.network.layers if layer.precision)
    # The graph's x is dynamic: a static engine gets a profile with min = opt = max.
    (profile,) = builder.config.profiles
    assert profile.shapes == {"x": (SHAPES["x"],) * 3, "noise": (SHAPES["noise"],) * 3}
    assert result.precision == "fp16" and result.fp32_layers == 3
    assert result.plan_path.read_bytes().startswith(b"PLAN:") and result.size_bytes == result.plan_path.stat().st_size
    assert result.key == result.key_inputs.key and result.key_inputs.tensorrt_version == "8.6.2.3"
    assert result.key_inputs.gpu_name == GPU.name and result.key_inputs.compute_capability == (8, 7)
    assert [p.name for p in result.plan_path.parent.iterdir()] == ["stage1_gd.plan"]  # no temporary left


def test_strongly_typed_int8_on_10_3_and_8_6(fake, onnx_file: Path) -> None:
    fake("10.3.0.30")
    result, builder = _build(onnx_file, mode="strongly_typed", variant="int8")
    assert builder.network.flags == 1 << 1  # STRONGLY_TYPED
    assert builder.config.flags == {"TF32"}  # no precision flags on a strongly typed network
    assert _pinned(builder) == [] and result.precision == "int8"
    key_10 = result.key

    fake("8.6.2.3")  # no strong typing: FP16 + INT8 flags make the Q/DQ graph an INT8 engine
    result, builder = _build(onnx_file, mode="strongly_typed", variant="int8")
    assert builder.network.flags == 1 << 0
    assert builder.config.flags == {"TF32", "FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS"}
    assert _pinned(builder) == ["/enc/ln", "/attn/softmax"]
    assert result.key != key_10


def test_tensorrt_11_is_strongly_typed_only(fake, onnx_file: Path) -> None:
    fake("11.0.0.114")
    result, builder = _build(onnx_file, mode="strongly_typed", variant="fp16")
    assert builder.network.flags == 0 and builder.config.flags == {"TF32"}
    assert result.precision == "fp16"
    result, builder = _build(onnx_file, mode="fp32", allow_tf32=False)
    assert builder.network.flags == 0 and builder.config.flags == set()
    _Builder.last = None
    with pytest.raises(EngineBuildError, match="no weakly typed FP16"):
        _build(onnx_file, mode="fp16_weak")


def test_dynamic_profile(fake, onnx_file: Path) -> None:
    fake("10.13.3.9")
    rng = ShapeRange((1, 3, 32, 32), (1, 3, 64, 96), (1, 3, 128, 128))
    options = BuildOptions(profile={"x": rng})
    result = build_engine(onnx_file, onnx_file.with_suffix(".plan"), options, gpu=GPU)
    (profile,) = _Builder.last.config.profiles
    assert profile.shapes == {"x": rng.as_tuple()}  # noise is static in the graph: no profile entry
    static = build_engine(onnx_file, onnx_file.with_suffix(".plan"), BuildOptions(input_shapes=SHAPES), gpu=GPU)
    assert result.key != static.key


def test_shapes_must_match_the_graph_inputs(fake, onnx_file: Path) -> None:
    fake("10.3.0.30")
    with pytest.raises(EngineBuildError, match=r"missing for \['noise'\]"):
        build_engine(onnx_file, onnx_file.with_suffix(".plan"), BuildOptions(input_shapes={"x": SHAPES["x"]}), gpu=GPU)
    with pytest.raises(EngineBuildError, match="input 'noise' is"):
        build_engine(onnx_file, onnx_file.with_suffix(".plan"),
                     BuildOptions(input_shapes={**SHAPES, "noise": (1, 9)}), gpu=GPU)


def test_timing_cache_is_loaded_and_saved(fake, onnx_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    fake("10.3.0.30")
    cache = onnx_file.parent / "timing.cache"
    _build(onnx_file, timing_cache=cache)
    assert cache.read_bytes() == b"+entry"
    _build(onnx_file, timing_cache=cache)
    assert cache.read_bytes() == b"+entry+entry"  # read, extended, written back
    cache.write_bytes(b"other-gpu")
    with caplog.at_level(logging.WARNING):
        _build(onnx_file, timing_cache=cache)
    assert "starting a new one" in caplog.text
    assert cache.read_bytes() == b"+entry"


@pytest.mark.parametrize("version", ["10.3.0.30", "8.6.2.3"])
def test_parser_errors_name_the_node(fake, tmp_path: Path, version: str) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="my_relu")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph), str(path))
    fake(version)  # 10.x: ParserError.node_name(); 8.6: the name is looked up in the ONNX file
    _Parser.fail = True
    with pytest.raises(EngineBuildError, match=r"node 0 'my_relu': Unsupported operator \(UNSUPPORTED_NODE\)"):
        build_engine(path, tmp_path / "g.plan", BuildOptions(input_shapes=SHAPES), gpu=GPU)
    assert not (tmp_path / "g.plan").exists()


def test_build_failure_reports_tensorrt_errors(fake, onnx_file: Path) -> None:
    fake("10.3.0.30")
    _Builder.fail_build = True
    with pytest.raises(EngineBuildError, match="out of memory building /enc/conv"):
        _build(onnx_file)
    assert not (onnx_file.parent.parent / "engines" / "stage1_gd.plan").exists()


def test_dla(fake, onnx_file: Path) -> None:
    trt = fake("8.6.2.3")
    with pytest.raises(EngineBuildError, match="0 DLA core"):
        _build(onnx_file, mode="fp16_weak", dla_core=0)
    _Builder.dla_cores = 2
    _, builder = _build(onnx_file, mode="fp16_weak", dla_core=1)
    assert builder.config.default_device_type is trt.DeviceType.DLA and builder.config.DLA_core == 1
    assert "GPU_FALLBACK" in builder.config.flags


def test_the_fp16_converters_fp32_nodes_are_pinned_where_tensorrt_is_weakly_typed(fake, onnx_file: Path) -> None:
    fake("8.6.2.3")
    result, builder = _build(onnx_file, mode="strongly_typed", variant="fp16", fp32_nodes=("/enc/conv", "/folded"))
    assert _pinned(builder) == ["/enc/conv", "/enc/ln", "/attn/softmax", "/enc/conv_12"]
    assert "/fp32nodes=2:" in result.key_inputs.precision  # another island set is another engine
    fake("10.3.0.30")  # strongly typed: the graph's own Casts keep the islands, nothing is pinned
    result, builder = _build(onnx_file, mode="strongly_typed", variant="fp16", fp32_nodes=("/enc/conv",))
    assert _pinned(builder) == [] and "fp32nodes" not in result.key_inputs.precision


def test_a_layer_belongs_to_the_node_it_is_named_after() -> None:
    nodes = frozenset({"/enc/conv", "/a/MatMul_1"})
    assert trt_builder.node_of_layer("/enc/conv", nodes) == "/enc/conv"
    assert trt_builder.node_of_layer("/enc/conv_12", nodes) == "/enc/conv"  # the parser's further layers
    assert trt_builder.node_of_layer("/a/MatMul_1", nodes) == "/a/MatMul_1"
    assert trt_builder.node_of_layer("/a/MatMul_1_3", nodes) == "/a/MatMul_1"
    assert trt_builder.node_of_layer("/a/MatMul", nodes) is None
    assert trt_builder.node_of_layer("/enc/conv_x", nodes) is None


def test_dla_engines_are_static() -> None:
    shape = SHAPES["x"]
    grown = (shape[0], shape[1], shape[2] * 2, shape[3] * 2)
    with pytest.raises(EngineBuildError, match="DLA engines are static"):
        BuildOptions(mode="fp16_weak", dla_core=0, profile={"x": ShapeRange(shape, shape, grown)})
    BuildOptions(mode="fp16_weak", dla_core=0, profile={"x": ShapeRange(shape, shape, shape)})  # one size: fine


def test_missing_onnx_file(fake, tmp_path: Path) -> None:
    fake("10.3.0.30")
    with pytest.raises(EngineBuildError, match="no such ONNX file"):
        build_engine(tmp_path / "absent.onnx", tmp_path / "x.plan", BuildOptions(input_shapes=SHAPES), gpu=GPU)


# The fake's names, against the stub: a fake with an invented method would make these tests lie.
FAKE_API = {
    _Builder: "Builder", _Config: "IBuilderConfig", _Network: "INetworkDefinition", _Layer: "ILayer",
    _Tensor: "ITensor", _Parser: "OnnxParser", _ParserError: "ParserError", _TimingCache: "ITimingCache",
    _Profile: "IOptimizationProfile",
}
FAKE_ONLY = {"last", "fail", "fail_build", "dla_cores", "network", "config", "logger", "errors", "index", "outputs",
             "output_types", "inputs", "layers", "flags", "pools", "profiles", "cache", "blob", "shapes"}


def test_the_fake_only_uses_real_tensorrt_names() -> None:
    # tools/ is not a package: the checker runs from its file, as in its own tests.
    spec = importlib.util.spec_from_file_location("trt_api_check", REPO / "tools" / "trt_api_check.py")
    assert spec is not None and spec.loader is not None
    api = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(api)
    try:
        index = api.load_stub_index()
    except api.StubNotFound as exc:
        pytest.skip(str(exc))
    for fake_class, real in FAKE_API.items():
        names = {n for n in vars(fake_class) if not n.startswith("_")} - FAKE_ONLY
        for name in names:
            assert index.lookup(real, name) is not None, f"{real}.{name}"
    trt = _fake_tensorrt("10.3.0.30")
    for name in ("BuilderFlag", "MemoryPoolType", "DeviceType", "LayerType", "NetworkDefinitionCreationFlag"):
        for member in vars(getattr(trt, name)):
            assert index.lookup(name, member) is not None, f"{name}.{member}"
    assert index.lookup("ILogger.Severity", "ERROR") is not None


# ------------------------------------------------- export/engines.py: what a build records


def test_engines_for_artifacts_are_recorded_so_that_the_runtime_accepts_them(
    fake, export_tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The builder's keys and the manifest records are what the TensorRT backend checks: one flow."""
    import shutil

    from export import engines
    from runtime.backends.tensorrt_backend import usable_engines
    from runtime.manifest import load_manifest

    fake("10.3.0.30")
    monkeypatch.setattr(engines, "query_gpu", lambda: GPU)
    root = tmp_path / "artifacts"
    shutil.copytree(export_tiny().artifacts, root)
    graphs = load_manifest(root).graphs_in_use()

    rows = engines.build_engines_for_artifacts(root, sizes=[(64, 64)], workspace_bytes=1 << 28, progress=False)
    manifest = load_manifest(root)  # every recorded plan's sha256 checked
    assert [(r.graph, r.status, r.shapes) for r in rows] == [(g, "built", "64x64") for g in graphs]
    assert sorted(e.graph for e in manifest.engines) == sorted(graphs)
    for record in manifest.engines:
        assert record.plan.path == f"engines/{record.graph}.{record.key}.plan"
        assert (record.precision, record.tensorrt_version, record.device_name) == ("fp32", "10.3.0.30", GPU.name)
        assert record.compute_capability == "8.7"
        assert usable_engines(manifest, record.graph, "fp32", "10.3.0.30", GPU) == [record]
    assert manifest.engines[0].profile["x"].min == (1, 3, 64, 64) == manifest.engines[0].profile["x"].max
    assert (root / "engines" / "timing.cache").is_file()
    assert sorted(p.name for p in (root / "engines").iterdir()) == sorted(
        [f"{e.graph}.{e.key}.plan" for e in manifest.engines] + ["timing.cache"]
    )  # no temporary file left

    again = engines.build_engines_for_artifacts(root, sizes=[(64, 64)], progress=False)
    assert {r.status for r in again} == {"kept"} and load_manifest(root).engines == manifest.engines

    fake("10.13.3.9")  # a TensorRT upgrade: every engine is rebuilt and replaces its old record
    engines.build_engines_for_artifacts(root, sizes=[(64, 64)], progress=False)
    upgraded = load_manifest(root)
    assert len(upgraded.engines) == len(graphs)
    assert not {e.key for e in upgraded.engines} & {e.key for e in manifest.engines}
    with pytest.raises(EngineBuildError, match="tensorrt_version: built for '10.13.3.9', now '10.3.0.30'"):
        usable_engines(upgraded, graphs[0], "fp32", "10.3.0.30", GPU)
