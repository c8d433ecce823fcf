"""Build one TensorRT engine (a serialized plan) from one ONNX graph: the TensorRT calls.

export/engines.py decides which engines an artifacts folder gets and calls this for each.

    result = build_engine("graphs/stage1_gd.fp32.onnx", "engines/stage1_gd.<key>.plan",
                          BuildOptions(mode="fp16_weak", input_shapes={"x": (1, 3, 256, 256), ...}))

Precision modes (docs/ARCHITECTURE.md; what each TensorRT version supports is decided in
`runtime/trt_version.py`):

- ``"fp32"``: the FP32 graph, no reduced-precision flag (TF32 allowed unless `allow_tf32=False`).
- ``"fp16_weak"``: the FP32 graph with the FP16 builder flag; layers that match
  `fp32_layer_types` / `fp32_layer_patterns` are pinned to FP32 (layer precision, output
  types and OBEY_PRECISION_CONSTRAINTS). TensorRT 8.6 and 10.x; not 11.x.
- ``"strongly_typed"``: precision comes from the graph itself: the FP16 graph (FP32 islands
  kept by the converter) or the Q/DQ INT8 graph (`variant` says which; it is the FP16 graph
  with Q/DQ pairs in front of the quantized convolutions, so the layers between them are FP16
  too: calibration/qdq_fp16.py). TensorRT 10.x uses a STRONGLY_TYPED network, 11.x every
  network. TensorRT 8.6 has no strong typing: there the graph is built weakly typed with the
  FP16 and INT8 flags (INT8 is what turns a Q/DQ graph into an INT8 engine on 8.x) and the same
  FP32 layer constraints as ``fp16_weak``, the FP16 graph's islands (`fp32_nodes`) included.

Engines are static per input shape by default (`input_shapes`, one shape per input at the
target resolution); `profile` asks for a dynamic min/opt/max profile instead. A shared timing
cache file is read before and written after every build. The plan and the cache are written
atomically. Parser failures are reported with the ONNX node (index and name) as
EngineBuildError; TensorRT's own error messages are included when the build fails.

Nothing here imports TensorRT at module import time.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calibration.sensitive_ops import TENSORRT_FP32_LAYER_TYPES
from runtime.atomic_io import atomic_write_bytes
from runtime.engine_key import EngineKeyInputs
from runtime.errors import EngineBuildError
from runtime.gpu_info import GpuInfo, query_gpu
from runtime.manifest import ShapeRange, sha256_file  # a dynamic input's profile: min <= opt <= max
from runtime.trt_logger import shared_logger
from runtime.trt_version import TrtCapabilities, detect, network_creation_flags

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

MODES = ("fp32", "fp16_weak", "strongly_typed")
VARIANTS = ("fp32", "fp16", "int8")  # the manifest's precision variant of the ONNX file
SEVERITIES = ("ERROR", "WARNING", "INFO", "VERBOSE")
# Layer types kept in FP32 in weak FP16 by default; the rule is calibration/'s, with the ONNX
# one. Names of trt.LayerType members; a test checks them against the TensorRT stub.
DEFAULT_FP32_LAYER_TYPES = TENSORRT_FP32_LAYER_TYPES
# Layer types a precision constraint never applies to (no arithmetic, or integer/shape data).
_NEVER_CONSTRAINED = frozenset({"CONSTANT", "SHAPE", "QUANTIZE", "DEQUANTIZE", "CAST", "ASSERTION", "IDENTITY"})
_LAYER_TYPE_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _check_shape(where: str, shape: tuple[int, ...], multiple: int | None) -> None:
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise EngineBuildError(f"{where}: a shape is a non-empty tuple of positive ints, got {shape!r}")
    if multiple is not None and len(shape) == 4 and (shape[2] % multiple or shape[3] % multiple):
        raise EngineBuildError(
            f"{where}: height and width of {shape} must be multiples of {multiple} (the model's pad multiple)"
        )


@dataclass(frozen=True)
class BuildOptions:
    """How to build one engine. Validated on construction (EngineBuildError)."""

    mode: str = "fp32"
    # The precision variant of the ONNX file being built: "fp32", "fp16" (converted graph with
    # FP32 islands) or "int8" (Q/DQ). `fp32` and `fp16_weak` take the FP32 graph.
    variant: str = "fp32"
    # Static engine: one shape per graph input (the default way to build).
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    # Dynamic engine: a min/opt/max profile per dynamic input, instead of input_shapes.
    profile: Mapping[str, ShapeRange] | None = None
    # Height and width (dims 2 and 3 of rank-4 inputs) must be multiples of this, when given.
    spatial_multiple: int | None = None
    timing_cache: Path | None = None
    workspace_bytes: int | None = None
    dla_core: int | None = None
    gpu_fallback: bool = True  # with a DLA core: layers the DLA cannot run go to the GPU
    # Weak FP16 (and 8.6 "strongly typed"): layers pinned to FP32, by trt.LayerType name and by
    # fnmatch pattern on the layer name. The ONNX parser names layers after their ONNX node and
    # may add a suffix when one node becomes several layers: end patterns with "*".
    fp32_layer_types: tuple[str, ...] = DEFAULT_FP32_LAYER_TYPES
    fp32_layer_patterns: tuple[str, ...] = ()
    # ONNX node names the FP16 converter kept in FP32 (the FP16 variant's `kept_higher`, for the
    # FP16 and the INT8 graph alike): where layer constraints apply (weak typing), every layer
    # made from one of them is pinned too.
    fp32_nodes: tuple[str, ...] = ()
    allow_tf32: bool = True
    log_severity: str = "WARNING"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise EngineBuildError(f"unknown precision mode {self.mode!r} (use one of {', '.join(MODES)})")
        if self.variant not in VARIANTS:
            raise EngineBuildError(f"unknown graph variant {self.variant!r} (use one of {', '.join(VARIANTS)})")
        if self.mode in ("fp32", "fp16_weak") and self.variant != "fp32":
            raise EngineBuildError(f"mode {self.mode!r} builds the fp32 graph, not the {self.variant} one")
        if self.spatial_multiple is not None and self.spatial_multiple < 1:
            raise EngineBuildError(f"spatial_multiple must be >= 1, got {self.spatial_multiple}")
        object.__setattr__(self, "input_shapes", {k: tuple(v) for k, v in self.input_shapes.items()})
        if self.profile is not None:
            object.__setattr__(self, "profile", dict(self.profile))
        if bool(self.input_shapes) == bool(self.profile):
            raise EngineBuildError("give either input_shapes (static engine) or profile (dynamic engine), not both")
        for name, shape in self.input_shapes.items():
            _check_shape(f"input {name!r}", shape, self.spatial_multiple)
        for name, rng in (self.profile or {}).items():
            if not isinstance(rng, ShapeRange):
                raise EngineBuildError(f"profile of {name!r} must be a ShapeRange(min, opt, max), got {rng!r}")
            for label, shape in zip(("min", "opt", "max"), rng.as_tuple(), strict=True):
                _check_shape(f"profile {name!r} {label}", shape, self.spatial_multiple)
            lo, opt, hi = rng.as_tuple()
            if not len(lo) == len(opt) == len(hi):
                raise EngineBuildError(f"profile {name!r}: min, opt and max must have the same rank, got {rng}")
            if not all(a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True)):
                raise EngineBuildError(f"profile {name!r}: need min <= opt <= max in every dimension, got {rng}")
        if self.workspace_bytes is not None and self.workspace_bytes <= 0:
            raise EngineBuildError(f"workspace_bytes must be positive, got {self.workspace_bytes}")
        if self.dla_core is not None:
            if self.dla_core < 0:
                raise EngineBuildError(f"dla_core must be >= 0, got {self.dla_core}")
            if self.effective_precision == "fp32":
                raise EngineBuildError("the DLA runs FP16 or INT8 only: use fp16_weak or a fp16/int8 graph")
            if self.profile is not None and any(len(set(r.as_tuple())) > 1 for r in self.profile.values()):
                raise EngineBuildError("DLA engines are static: build one per size (min = opt = max), not a range")
        for name in self.fp32_layer_types:
            if not _LAYER_TYPE_NAME.fullmatch(name):
                raise EngineBuildError(f"fp32_layer_types: {name!r} is not a trt.LayerType member name")
        if any(not p for p in self.fp32_layer_patterns):
            raise EngineBuildError("fp32_layer_patterns: empty pattern")
        if self.log_severity not in SEVERITIES:
            raise EngineBuildError(f"log_severity must be one of {', '.join(SEVERITIES)}, got {self.log_severity!r}")
        if self.timing_cache is not None:
            object.__setattr__(self, "timing_cache", Path(self.timing_cache))

    @property
    def effective_precision(self) -> str:
        """The precision the engine computes in: fp32, fp16 or int8 (what a user asks the runtime for)."""
        if self.mode == "fp32":
            return "fp32"
        if self.mode == "fp16_weak":
            return "fp16"
        return self.variant

    def shapes_for_key(self) -> dict[str, Any]:
        if self.profile:
            return {name: rng.as_tuple() for name, rng in self.profile.items()}
        return dict(self.input_shapes)

    def precision_descriptor(self, caps: TrtCapabilities) -> str:
        """Everything about precision that changes the engine, as text for the engine key.

        `<variant>/<mode>`, then the FP32 layer constraints where this TensorRT applies them, then
        the DLA core: "fp32/fp16_weak/fp32=NORMALIZATION,REDUCE,SOFTMAX", "int8/strongly_typed".
        """
        parts = [self.variant, self.mode]
        if uses_layer_constraints(self, caps) and (self.fp32_layer_types or self.fp32_layer_patterns):
            parts.append("fp32=" + ",".join(sorted(self.fp32_layer_types) + sorted(self.fp32_layer_patterns)))
        if uses_layer_constraints(self, caps) and self.fp32_nodes:
            digest = hashlib.sha256("\n".join(sorted(self.fp32_nodes)).encode()).hexdigest()[:12]
            parts.append(f"fp32nodes={len(self.fp32_nodes)}:{digest}")
        if not self.allow_tf32:
            parts.append("no-tf32")
        if self.dla_core is not None:
            parts.append(f"dla{self.dla_core}" + ("+gpu" if self.gpu_fallback else ""))
        return "/".join(parts)

    def check_supported(self, caps: TrtCapabilities) -> None:
        """EngineBuildError when this TensorRT cannot build this mode."""
        if self.mode == "fp16_weak" and not caps.weakly_typed:
            raise EngineBuildError(
                f"TensorRT {caps.version} has no weakly typed FP16 (no FP16 builder flag): build the fp16 graph "
                "(FP32 islands kept) with mode='strongly_typed'"
            )


def uses_layer_constraints(options: BuildOptions, caps: TrtCapabilities) -> bool:
    """Whether per-layer FP32 constraints are applied: weak FP16, and "strongly typed" on 8.6."""
    if options.mode == "fp16_weak":
        return True
    return options.mode == "strongly_typed" and not caps.strongly_typed and options.variant != "fp32"


@dataclass(frozen=True)
class BuildResult:
    plan_path: Path
    build_seconds: float
    size_bytes: int
    precision: str  # fp32 | fp16 | int8: what the engine computes in
    precision_descriptor: str  # the precision text hashed into the key
    key: str
    key_inputs: EngineKeyInputs  # for the manifest: lets the runtime say what changed
    fp32_layers: int = 0  # layers pinned to FP32 by constraints


def key_inputs_for(
    onnx_path: str | Path, options: BuildOptions, caps: TrtCapabilities, gpu: GpuInfo, onnx_sha256: str | None = None
) -> EngineKeyInputs:
    """The engine key inputs of building `onnx_path` with `options` here (no TensorRT call)."""
    return EngineKeyInputs(
        onnx_sha256=onnx_sha256 or sha256_file(onnx_path),
        precision=options.precision_descriptor(caps),
        shapes=options.shapes_for_key(),
        tensorrt_version=caps.version,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
    )


def engine_key_for(onnx_path: str | Path, options: BuildOptions, onnx_sha256: str | None = None) -> EngineKeyInputs:
    """Key inputs for this machine (detects TensorRT and the GPU): name the plan before building."""
    return key_inputs_for(onnx_path, options, detect(), query_gpu(), onnx_sha256)


# ---------------------------------------------------------------------------------------------


def _onnx_node_names(onnx_path: Path) -> list[str] | None:
    """Node names of the ONNX graph, for TensorRT 8.6 whose parser errors give only an index."""
    try:
        import onnx
    except ImportError:  # a Jetson without onnx: the index is reported alone
        return None
    try:
        return [node.name for node in onnx.load(str(onnx_path), load_external_data=False).graph.node]
    except Exception:  # the parser already failed on this file; its message matters more
        return None


def parser_errors(parser: trt.OnnxParser, caps: TrtCapabilities, onnx_path: Path) -> list[str]:
    """One line per parser error: ONNX node index and name, description, error code."""
    lines = []
    names: list[str] | None = None
    for i in range(parser.num_errors):
        error: trt.ParserError = parser.get_error(i)
        index = int(error.node())
        if caps.parser_error_has_node_name:
            node = str(error.node_name())
        else:
            if names is None:
                names = _onnx_node_names(onnx_path) or []
            node = names[index] if 0 <= index < len(names) else ""
        where = "graph" if index < 0 else f"node {index}" + (f" {node!r}" if node else "")
        code = getattr(error.code(), "name", str(error.code()))
        lines.append(f"{where}: {error.desc()} ({code})")
    return lines


def _network_inputs(network: trt.INetworkDefinition) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shapes[str(tensor.name)] = tuple(int(d) for d in tensor.shape)
    return shapes


def _check_inputs(graph_inputs: Mapping[str, tuple[int, ...]], options: BuildOptions, onnx_path: Path) -> None:
    """The shapes in `options` name exactly the graph's inputs and agree with its fixed dims."""
    given = options.shapes_for_key()
    if options.profile is None:
        expected = set(graph_inputs)
    else:  # a profile must cover every input with a dynamic dim; static inputs need none
        expected = {n for n, s in graph_inputs.items() if any(d < 0 for d in s)}
    unknown = sorted(set(given) - set(graph_inputs))
    missing = sorted(expected - set(given))
    if unknown or missing:
        raise EngineBuildError(
            f"{onnx_path.name}: graph inputs are {sorted(graph_inputs)}; shapes given for unknown inputs {unknown}, "
            f"missing for {missing}"
        )
    for name, value in given.items():
        graph_shape = graph_inputs[name]
        shapes = value if options.profile is not None else (value,)
        for shape in shapes:
            fixed_differ = any(g >= 0 and g != d for g, d in zip(graph_shape, shape, strict=False))
            if len(shape) != len(graph_shape) or fixed_differ:
                raise EngineBuildError(f"{onnx_path.name}: input {name!r} is {graph_shape} (-1 = dynamic), got {shape}")


def _pin_fp32_layers(network: trt.INetworkDefinition, options: BuildOptions) -> int:
    """Pin matching float layers to FP32; returns how many layers were pinned."""
    import tensorrt as trt

    types = set(options.fp32_layer_types)
    patterns = options.fp32_layer_patterns
    nodes = frozenset(options.fp32_nodes)
    used_patterns: set[str] = set()
    used_nodes: set[str] = set()
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        type_name = str(layer.type.name)
        if type_name in _NEVER_CONSTRAINED:
            continue
        hits = [p for p in patterns if fnmatch.fnmatchcase(str(layer.name), p)]
        node = node_of_layer(str(layer.name), nodes)
        if type_name not in types and not hits and node is None:
            continue
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not outputs or not all(t.dtype in (trt.float32, trt.float16) for t in outputs):
            continue  # integer, bool or shape outputs: nothing to keep in FP32
        used_patterns.update(hits)
        if node is not None:
            used_nodes.add(node)
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        pinned += 1
    for pattern in patterns:
        if pattern not in used_patterns:
            log.warning("fp32 layer pattern %r matched no float layer", pattern)
    if nodes - used_nodes:  # e.g. nodes TensorRT folded into a constant
        log.info("%d of %d FP32 nodes made no float layer here", len(nodes - used_nodes), len(nodes))
    return pinned


_PARSER_SUFFIX = re.compile(r"_\d+$")


def node_of_layer(layer_name: str, nodes: frozenset[str]) -> str | None:
    """The ONNX node in `nodes` a layer was made from, or None. TensorRT's ONNX parser names a
    node's first layer after the node and further ones `<node>_<n>` (a global counter)."""
    if layer_name in nodes:
        return layer_name
    base = _PARSER_SUFFIX.sub("", layer_name)
    return base if base != layer_name and base in nodes else None


def _load_timing_cache(config: trt.IBuilderConfig, path: Path) -> None:
    """Start from the shared cache file; one from another TensorRT or GPU is replaced, not used."""
    blob = path.read_bytes() if path.is_file() else b""
    cache = None
    if blob:
        try:
            cache = config.create_timing_cache(blob)
            if cache is not None and not config.set_timing_cache(cache, ignore_mismatch=False):
                cache = None
        except Exception as exc:  # a corrupt file: TensorRT raises; a new cache replaces it
            log.debug("timing cache %s unreadable: %s", path, exc)
            cache = None
        if cache is None:
            log.warning("timing cache %s does not fit this TensorRT and GPU; starting a new one", path)
    if cache is None:
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)


def _save_timing_cache(config: trt.IBuilderConfig, path: Path) -> None:
    cache = config.get_timing_cache()
    if cache is None:
        return
    try:
        atomic_write_bytes(path, bytes(cache.serialize()))
    except OSError as exc:
        log.warning("could not write the timing cache %s: %s", path, exc)


def _configure(builder: trt.Builder, config: trt.IBuilderConfig, options: BuildOptions, caps: TrtCapabilities) -> None:
    import tensorrt as trt

    if options.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    if not options.allow_tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    if options.mode == "fp16_weak":
        config.set_flag(trt.BuilderFlag.FP16)
    elif options.mode == "strongly_typed" and not caps.strongly_typed and options.variant != "fp32":
        # TensorRT 8.6: the graph's Cast and Q/DQ nodes decide nothing by themselves; the flags
        # let FP16 and INT8 kernels run (INT8 is what makes a Q/DQ graph explicit-quantized).
        config.set_flag(trt.BuilderFlag.FP16)
        if options.variant == "int8" and caps.qdq_needs_int8_flag:
            config.set_flag(trt.BuilderFlag.INT8)
    if uses_layer_constraints(options, caps):
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    if options.dla_core is not None:
        cores = int(builder.num_DLA_cores)
        if options.dla_core >= cores:
            raise EngineBuildError(f"DLA core {options.dla_core} requested; this device has {cores} DLA core(s)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        if options.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def build_engine(
    onnx_path: str | Path,
    plan_path: str | Path,
    options: BuildOptions,
    *,
    gpu: GpuInfo | None = None,
    onnx_sha256: str | None = None,
) -> BuildResult:
    """Parse `onnx_path`, build an engine with `options`, write it atomically to `plan_path`.

    `gpu` defaults to device 0 as `runtime.gpu_info.query_gpu` sees it; `onnx_sha256` to the
    file's own hash (pass the manifest's value to avoid reading the file twice).
    Raises EngineBuildError (bad options for this TensorRT, parser or build failure) and
    BackendUnavailable (no TensorRT or no GPU here).
    """
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    if not onnx_path.is_file():
        raise EngineBuildError(f"{onnx_path}: no such ONNX file")
    caps = detect()
    options.check_supported(caps)
    gpu = gpu or query_gpu()
    key_inputs = key_inputs_for(onnx_path, options, caps, gpu, onnx_sha256)
    started = time.perf_counter()

    import tensorrt as trt

    logger = shared_logger()
    # TensorRT's errors from this thread, quoted when parsing or building fails (one logger per
    # process: see runtime/trt_logger.py).
    with logger.forwarding(options.log_severity), logger.collect_errors() as errors:
        builder = trt.Builder(logger)
        # TensorRT 11 types every network strongly; 10.x only in mode "strongly_typed"; 8.6 never.
        strongly_typed = not caps.weakly_typed or (options.mode == "strongly_typed" and caps.strongly_typed)
        network = builder.create_network(network_creation_flags(caps, strongly_typed=strongly_typed))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            details = parser_errors(parser, caps, onnx_path) or errors or ["no details from the parser"]
            raise EngineBuildError(
                f"{onnx_path}: TensorRT {caps.version} cannot parse the graph:\n  " + "\n  ".join(details)
            )

        graph_inputs = _network_inputs(network)
        _check_inputs(graph_inputs, options, onnx_path)
        config = builder.create_builder_config()
        _configure(builder, config, options, caps)
        pinned = _pin_fp32_layers(network, options) if uses_layer_constraints(options, caps) else 0

        dynamic = any(any(d < 0 for d in shape) for shape in graph_inputs.values())
        if dynamic or options.profile is not None:
            profile = builder.create_optimization_profile()
            if options.profile is not None:
                for name, rng in options.profile.items():
                    profile.set_shape(name, rng.min, rng.opt, rng.max)
            else:  # a static engine from a graph with dynamic dims: min = opt = max
                for name, shape in options.input_shapes.items():
                    profile.set_shape(name, shape, shape, shape)
            config.add_optimization_profile(profile)

        if options.timing_cache is not None:
            _load_timing_cache(config, options.timing_cache)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            details = errors[-5:] or ["no error message from TensorRT"]
            what = f"the {options.precision_descriptor(caps)} engine"
            raise EngineBuildError(
                f"{onnx_path}: TensorRT {caps.version} failed to build {what}:\n  " + "\n  ".join(details)
            )
    data = bytes(serialized)
    try:
        plan_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(plan_path, data)
    except OSError as exc:
        raise EngineBuildError(f"cannot write the engine {plan_path}: {exc}") from exc
    if options.timing_cache is not None:
        _save_timing_cache(config, options.timing_cache)
    seconds = time.perf_counter() - started
    log.info("built %s (%s, %.1f MB) in %.1f s", plan_path.name, key_inputs.precision, len(data) / 1e6, seconds)
    return BuildResult(
        plan_path=plan_path,
        build_seconds=seconds,
        size_bytes=len(data),
        precision=options.effective_precision,
        precision_descriptor=key_inputs.precision,
        key=key_inputs.key,
        key_inputs=key_inputs,
        fp32_layers=pinned,
    )
