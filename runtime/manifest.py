"""`manifest.json`: the schema of an artifacts folder, its reader and its writer.

The manifest is the single source of truth about an exported model (docs/ARCHITECTURE.md): the
runtime needs nothing else, and never imports `model/`, `export/` or `calibration/`. This module
owns the schema; one writer per build step fills it in: calibration/precision.py the `fp16`,
`int8` and `int8-cpu` variants, `calibration` and `auto_precision`; export/engines.py
`engines`; export/build.py everything else. Schema version 1::

    format            "unfoldldm-edge/artifacts"
    schema_version    1
    name              artifacts name ("edge")
    created           UTC time of the export, ISO 8601
    model_config      the model's config, as `ModelConfig.to_dict()` wrote it (kept opaque here)
    source            checkpoint file name, sha256, training phase, step, interim flag
    toolchain         versions of python, torch, onnx, onnxruntime, numpy used to export
    exporter          how the ONNX graphs were written
    opset             ONNX opset requested and found in every graph file
    pad_multiple      height and width of every graph input are multiples of this
    min_size          smallest padded height/width every graph accepts (pixels)
    layout, color     "NCHW", "RGB"
    value_range       [0.0, 1.0]: input range; outputs are clipped to it by the pipeline
    prior_dim         length of the prior vector z
    sampler           DR-LDM constants: steps, betas, alpha-bars, prediction, noise seed, noise
                      shape and the rule that draws the noise (null when the model has no prior)
    stages            per stage (1-based): its gradient / prior / proximal graph names and the
                      value fed to the prior graph's `stage` input
    graphs            per graph name: role, stages served, inputs and outputs (name, dtype,
                      symbolic shape), opset, precision variants (file, sha256, parent sha256,
                      nodes kept in higher precision, PSNR against FP32 and its input),
                      torch.export program (file, sha256), parity record, and the bytes of
                      activations it holds at its peak as a polynomial in the input's height
                      and width (per batch item), for the runtime's memory estimate
    pipeline_checks   end-to-end runs of the exported pipeline against PyTorch at export
    reference         one frame (float32 NHWC .npy) and the PyTorch FP32 model's restoration of
                      it, written at export: what a device compares its own output with
                      (`runtime/doctor.py`), needing neither the checkpoint nor ONNX Runtime
    cpu_timing        the FP32 pipeline's time per frame on each CPU backend (ONNX Runtime,
                      OpenVINO where installed), measured at export, or null: the default
                      backend order on a CPU tries the fastest first
    calibration       INT8 calibration record, or null
    engines           TensorRT engines built from these graphs, with their keys
    auto_precision    per backend target ("onnxruntime/cpu", "tensorrt/cuda", ...): graph name ->
                      the precision variant `--precision auto` runs there (graphs not listed: fp32)

Reading validates everything: types, unknown keys (rejected at any depth), names, the stage
plan, relative file paths, and the sha256 of every file the manifest names. Every error is a
`ManifestError` naming the manifest or file and the field (e.g. `graphs.stage1_gd.inputs[0]`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from runtime.atomic_io import atomic_write_bytes
from runtime.engine_key import EngineKeyInputs
from runtime.errors import ManifestError

FORMAT = "unfoldldm-edge/artifacts"
SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"

ROLES = ("gradient", "prior", "proximal")
PRECISIONS = ("fp32", "fp16", "int8", "int8-cpu")
# What a user may ask a backend for: "auto" takes each graph's precision from `auto_precision`.
REQUESTED_PRECISIONS = ("auto", "fp32", "fp16", "int8")
BACKEND_TARGETS = (
    "onnxruntime/cpu",
    "onnxruntime/cuda",
    "tensorrt/cuda",
    "torch/cpu",
    "torch/cuda",
    "openvino/cpu",
)
DTYPES = ("float32", "float16", "int64")
# Symbolic dimension names the runtime understands.
BATCH, HEIGHT, WIDTH = "batch", "height", "width"
SYMBOLIC_DIMS = (BATCH, HEIGHT, WIDTH)
# Input and output names per graph role: the pipeline chains graphs by these names.
ROLE_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gradient": (("x", "y"), ("v",)),
    "prior": (("v", "noise", "stage"), ("z",)),
    "proximal": (("v", "z"), ("x",)),
}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GRAPH_NAME = re.compile(r"[A-Za-z0-9_]+")


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class FileRef:
    """A file inside the artifacts folder: POSIX path relative to it, and its sha256."""

    path: str
    sha256: str


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. `shape` entries are ints (fixed) or symbolic names."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class Variant:
    """One precision of a graph. `parent_sha256` is the FP32 file it was derived from."""

    precision: str
    onnx: FileRef
    parent_sha256: str | None = None
    # Nodes left in higher precision than the variant's (FP16: kept FP32; INT8: not quantized).
    kept_higher: tuple[str, ...] = ()
    # What the export measured: PSNR of this variant's output against FP32, and on which input.
    psnr_vs_fp32_db: float | None = None
    checked_on: str | None = None


@dataclass(frozen=True)
class Parity:
    """What export measured: max |ONNX Runtime - PyTorch| (and torch program) over `shapes`."""

    tolerance: float
    onnxruntime_max_abs_error: float
    torch_program_max_abs_error: float | None
    shapes: tuple[tuple[int, int, int], ...]  # (batch, height, width)


@dataclass(frozen=True)
class ActivationBytes:
    """Peak bytes of a graph's intermediate tensors for one batch item of an h x w input:
    per_pixel*h*w + per_row_squared*h^2 + per_column_squared*w^2 + per_row*h + per_column*w
    + constant. Measured at export from every tensor's real shape at several sizes; the squares
    come from operators that mix whole rows or columns."""

    per_pixel: float
    per_row_squared: float
    per_column_squared: float
    per_row: float
    per_column: float
    constant: float

    def at(self, height: int, width: int) -> int:
        terms = (
            self.per_pixel * height * width,
            self.per_row_squared * height * height,
            self.per_column_squared * width * width,
            self.per_row * height,
            self.per_column * width,
            self.constant,
        )
        return int(sum(terms))


@dataclass(frozen=True)
class Graph:
    role: str
    stages: tuple[int, ...]  # 1-based stages this graph serves (several when weights are shared)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int
    variants: dict[str, Variant]  # keyed by precision; "fp32" always present
    torch_program: FileRef | None = None
    parity: Parity | None = None
    activation_bytes: ActivationBytes | None = None  # None: exported before it was recorded


@dataclass(frozen=True)
class PipelineCheck:
    """An end-to-end run of the exported pipeline against the PyTorch model, at export."""

    backend: str
    device: str
    shape: tuple[int, int, int]  # (batch, height, width) of the frame, before padding
    max_abs_error: float


@dataclass(frozen=True)
class ReferenceFrame:
    """A frame and the PyTorch FP32 model's restoration of it (both float32 (1, H, W, 3) .npy)."""

    input: FileRef
    output: FileRef


@dataclass(frozen=True)
class CpuTiming:
    """The FP32 pipeline's median time per frame on each CPU backend that could open, measured
    interleaved at export (export/cpu_timing.py): the default backend order on a CPU puts the
    fastest first."""

    height: int
    width: int
    threads: int | None  # None: each backend's default (one thread per physical core)
    frame_ms: dict[str, float]  # backend name -> median milliseconds per frame

    def fastest(self) -> str | None:
        return min(self.frame_ms, key=self.frame_ms.__getitem__) if self.frame_ms else None


@dataclass(frozen=True)
class Stage:
    stage: int  # 1-based
    gradient: str
    prior: str | None  # None: the model has no prior, z is zeros
    proximal: str
    prior_stage_index: int  # the value fed to the prior graph's `stage` input


@dataclass(frozen=True)
class Sampler:
    steps: int
    beta_start: float
    beta_end: float
    alpha_bars: tuple[float, ...]
    prediction: str  # "x0": the denoiser predicts the clean prior; DDIM, eta = 0
    noise_seed: int
    noise_shape: tuple[int, int]  # (1, prior_dim), broadcast over the batch
    noise_rule: str  # the exact numpy call, for humans and other runtimes


@dataclass(frozen=True)
class Source:
    checkpoint: str  # file name the weights came from
    sha256: str
    phase: str
    step: int
    interim: bool


@dataclass(frozen=True)
class Calibration:
    method: str
    source: str
    frames: int
    graphs: tuple[str, ...]
    report: FileRef | None = None


@dataclass(frozen=True)
class ShapeRange:
    """An input's min/opt/max shapes: an engine's recorded profile, and what the builder is asked for."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def as_tuple(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return (tuple(self.min), tuple(self.opt), tuple(self.max))


@dataclass(frozen=True)
class Engine:
    graph: str
    precision: str
    key: str  # hash of ONNX sha256, precision, profile, TensorRT version, GPU and capability
    plan: FileRef
    tensorrt_version: str
    device_name: str
    compute_capability: str
    profile: dict[str, ShapeRange]
    # EngineKeyInputs.to_dict() of the build (ONNX sha256, precision descriptor, shapes, TensorRT,
    # GPU): lets the runtime recompute the key here and say what changed. None: not recorded.
    key_inputs: dict[str, Any] | None = None
    # The DLA core the engine was built for (the runtime must name it when deserialising);
    # None: a GPU engine, or a manifest written before this field (then the key's descriptor says).
    dla_core: int | None = None


@dataclass(frozen=True)
class Manifest:
    format: str
    schema_version: int
    name: str
    created: str
    model_config: dict[str, Any]
    source: Source
    toolchain: dict[str, str]
    exporter: str
    opset: int
    pad_multiple: int
    min_size: int
    layout: str
    color: str
    value_range: tuple[float, float]
    prior_dim: int
    sampler: Sampler | None
    stages: tuple[Stage, ...]
    graphs: dict[str, Graph]
    pipeline_checks: tuple[PipelineCheck, ...] = ()
    reference: ReferenceFrame | None = None
    cpu_timing: CpuTiming | None = None
    calibration: Calibration | None = None
    engines: tuple[Engine, ...] = ()
    auto_precision: dict[str, dict[str, str]] = field(default_factory=dict)
    # Where the manifest was read from; not part of the file.
    root: Path = field(default=Path("."), compare=False, metadata={"serialise": False})

    def file_path(self, ref: FileRef) -> Path:
        return self.root / ref.path

    def derived_variant(
        self,
        graph: str,
        precision: str,
        path: Path,
        kept_higher: tuple[str, ...],
        psnr_vs_fp32_db: float,
        checked_on: str,
    ) -> Variant:
        """A reduced-precision variant written at `path` (inside the folder) from `graph`'s FP32 file."""
        return Variant(
            precision,
            FileRef(path.relative_to(self.root).as_posix(), sha256_file(path)),
            self.graphs[graph].variants["fp32"].onnx.sha256,
            kept_higher=tuple(kept_higher),
            psnr_vs_fp32_db=psnr_vs_fp32_db,
            checked_on=checked_on,
        )

    def graph_file(self, graph: str, precision: str = "fp32") -> Path:
        entry = self.graph(graph)
        if precision not in entry.variants:
            have = ", ".join(sorted(entry.variants))
            raise ManifestError(f"{self.root / MANIFEST_NAME}: graph {graph!r} has no {precision} variant (has {have})")
        return self.file_path(entry.variants[precision].onnx)

    def program_file(self, graph: str) -> Path:
        entry = self.graph(graph)
        if entry.torch_program is None:
            raise ManifestError(
                f"{self.root / MANIFEST_NAME}: graph {graph!r} was exported without a torch program "
                "(re-run build_engines.py, or use the onnxruntime backend)"
            )
        return self.file_path(entry.torch_program)

    def precision_for(self, graph: str, requested: str, target: str) -> str:
        """The variant a backend `target` runs for `graph` when the user asked for `requested`.

        "auto" follows `auto_precision[target]` (fp32 where it names nothing). "int8" means the
        INT8 flavour this target prefers (auto's choice when it chose one, else `int8-cpu` on a
        CPU target where the graph has it, else the symmetric `int8` graph).
        "fp32" and "fp16" are exact. An explicit precision the graph lacks is a
        ManifestError: nothing falls back quietly (auto is the request that mixes precisions).
        """
        if requested not in REQUESTED_PRECISIONS:
            raise ManifestError(f"unknown precision {requested!r} (use one of {', '.join(REQUESTED_PRECISIONS)})")
        chosen = self._variant_for(graph, requested, target)
        if chosen is None:
            self.check_precision(requested, target, [graph])
        assert chosen is not None
        return chosen

    def _variant_for(self, graph: str, requested: str, target: str) -> str | None:
        variants = self.graph(graph).variants
        planned = self.auto_precision.get(target, {}).get(graph, "fp32")
        if requested == "auto":
            return planned
        if requested == "int8":
            if planned.startswith("int8"):
                return planned
            # On a CPU the uint8-activation flavour is the one made for it (the symmetric `int8`
            # is TensorRT's, FP16 between its convolutions where made from the FP16 graph).
            if target.endswith("/cpu") and "int8-cpu" in variants:
                return "int8-cpu"
            return "int8" if "int8" in variants else None
        return requested if requested in variants else None

    def missing_variants(self, requested: str, target: str, graphs: list[str] | None = None) -> list[str]:
        """The graphs (of `graphs`, default: those in use) that cannot run at `requested` on `target`."""
        names = self.graphs_in_use() if graphs is None else graphs
        return [g for g in names if self._variant_for(g, requested, target) is None]

    def check_precision(self, requested: str, target: str, graphs: list[str] | None = None) -> None:
        """ManifestError naming every graph (of `graphs`, default: those in use) that has no
        variant for an explicit `requested` precision on `target`."""
        missing = self.missing_variants(requested, target, graphs)
        if not missing:
            return
        how = (
            "calibrate them with calibration/calibrate.py, or use precision auto, which runs INT8 only where it "
            "passed the accuracy gate"
            if requested == "int8"
            else "re-run export/build_engines.py to write them, or use precision auto"
        )
        raise ManifestError(
            f"{self.root / MANIFEST_NAME}: precision {requested} was asked for, but there is no {requested} "
            f"variant of {'graph' if len(missing) == 1 else 'graphs'} {', '.join(missing)} ({how})"
        )

    def graph(self, name: str) -> Graph:
        if name not in self.graphs:
            raise ManifestError(f"{self.root / MANIFEST_NAME}: no graph named {name!r}")
        return self.graphs[name]

    def graphs_in_use(self) -> list[str]:
        """Graph names the stage plan runs, in first-use order, each once."""
        names: list[str] = []
        for stage in self.stages:
            for name in (stage.gradient, stage.prior, stage.proximal):
                if name is not None and name not in names:
                    names.append(name)
        return names

    def to_dict(self) -> dict[str, Any]:
        return _dump(self)


# --------------------------------------------------------------------------- strict parsing


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "list"
    if origin is dict:
        return "object"
    if dataclasses.is_dataclass(tp):
        return "object"
    return {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}.get(tp, str(tp))


def _parse(value: Any, tp: Any, where: str) -> Any:
    """Convert JSON `value` to type `tp`, raising ValueError(where, why) on any mismatch."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        last: ValueError | None = None
        for option in options:
            if option is type(None):
                continue
            try:
                return _parse(value, option, where)
            except ValueError as exc:
                last = exc
        if len([o for o in options if o is not type(None)]) == 1 and last is not None:
            raise last
        raise ValueError(where, f"expected {_type_name(tp)}, got {json.dumps(value)[:60]}")
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(where, f"expected a boolean, got {json.dumps(value)[:60]}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(where, f"expected an integer, got {json.dumps(value)[:60]}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(where, f"expected a number, got {json.dumps(value)[:60]}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(where, f"expected a string, got {json.dumps(value)[:60]}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(where, f"expected a list, got {json.dumps(value)[:60]}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse(item, args[0], f"{where}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise ValueError(where, f"expected a list of {len(args)} items, got {len(value)}")
        return tuple(_parse(item, arg, f"{where}[{i}]") for i, (item, arg) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(where, f"expected an object, got {json.dumps(value)[:60]}")
        _, value_type = typing.get_args(tp)
        return {key: _parse(item, value_type, f"{where}.{key}") for key, item in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(where, f"expected an object, got {json.dumps(value)[:60]}")
        hints = typing.get_type_hints(tp)
        fields = [f for f in dataclasses.fields(tp) if f.metadata.get("serialise", True)]
        known = {f.name for f in fields}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}" if where else unknown[0], "unknown key (not in schema)")
        kwargs = {}
        for f in fields:
            sub = f"{where}.{f.name}" if where else f.name
            if f.name not in value:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ValueError(sub, "missing")
                continue
            kwargs[f.name] = _parse(value[f.name], hints[f.name], sub)
        return tp(**kwargs)
    raise TypeError(f"schema type {tp!r} not handled")  # a bug in the schema, not in the file


def _dump(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: _dump(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.metadata.get("serialise", True)
        }
    if isinstance(obj, (tuple, list)):
        return [_dump(item) for item in obj]
    if isinstance(obj, dict):
        return {key: _dump(item) for key, item in obj.items()}
    return obj


# --------------------------------------------------------------------------- semantic checks


def _check_ref(ref: FileRef, where: str) -> None:
    pure = PurePosixPath(ref.path)
    if not ref.path or pure.is_absolute() or "\\" in ref.path or ".." in pure.parts or ref.path.startswith("~"):
        raise ValueError(f"{where}.path", f"must be a relative path inside the artifacts folder, got {ref.path!r}")
    if not _SHA256.fullmatch(ref.sha256):
        raise ValueError(f"{where}.sha256", "must be 64 lower-case hex digits")


def _check_graph(name: str, graph: Graph, manifest: Manifest) -> None:
    where = f"graphs.{name}"
    if not _GRAPH_NAME.fullmatch(name):
        raise ValueError(where, "graph names use letters, digits and '_' only")
    if graph.role not in ROLES:
        raise ValueError(f"{where}.role", f"must be one of {', '.join(ROLES)}, got {graph.role!r}")
    want_in, want_out = ROLE_IO[graph.role]
    for kind, specs, want in (("inputs", graph.inputs, want_in), ("outputs", graph.outputs, want_out)):
        names = tuple(s.name for s in specs)
        if names != want:
            raise ValueError(f"{where}.{kind}", f"a {graph.role} graph has {kind} {list(want)}, got {list(names)}")
        for i, spec in enumerate(specs):
            if spec.dtype not in DTYPES:
                raise ValueError(
                    f"{where}.{kind}[{i}].dtype", f"must be one of {', '.join(DTYPES)}, got {spec.dtype!r}"
                )
            for j, dim in enumerate(spec.shape):
                if isinstance(dim, str) and dim not in SYMBOLIC_DIMS:
                    raise ValueError(f"{where}.{kind}[{i}].shape[{j}]", f"unknown symbolic dimension {dim!r}")
                if isinstance(dim, int) and dim < 1:
                    raise ValueError(f"{where}.{kind}[{i}].shape[{j}]", f"must be >= 1, got {dim}")
    if not graph.stages or any(s < 1 or s > len(manifest.stages) for s in graph.stages):
        raise ValueError(f"{where}.stages", f"must list stages between 1 and {len(manifest.stages)}")
    if graph.opset != manifest.opset:
        raise ValueError(f"{where}.opset", f"{graph.opset} differs from the manifest's opset {manifest.opset}")
    if "fp32" not in graph.variants:
        raise ValueError(f"{where}.variants", "the fp32 variant is required")
    fp32_sha = graph.variants["fp32"].onnx.sha256
    for key, variant in graph.variants.items():
        sub = f"{where}.variants.{key}"
        if key not in PRECISIONS or variant.precision != key:
            raise ValueError(sub, f"precision must be one of {', '.join(PRECISIONS)} and equal its key")
        _check_ref(variant.onnx, f"{sub}.onnx")
        if key == "fp32" and variant.parent_sha256 is not None:
            raise ValueError(f"{sub}.parent_sha256", "the fp32 graph has no parent")
        if key != "fp32" and variant.parent_sha256 != fp32_sha:
            raise ValueError(f"{sub}.parent_sha256", "must be the sha256 of the fp32 graph it was derived from")
    if graph.torch_program is not None:
        _check_ref(graph.torch_program, f"{where}.torch_program")
    if graph.activation_bytes is not None:
        for key, value in dataclasses.asdict(graph.activation_bytes).items():
            if not 0 <= value < float("inf"):
                raise ValueError(f"{where}.activation_bytes.{key}", f"must be a finite number >= 0, got {value}")


def _check(manifest: Manifest) -> None:
    """Everything beyond types; raises ValueError(field, why)."""
    if manifest.pad_multiple < 1:
        raise ValueError("pad_multiple", "must be >= 1")
    if manifest.min_size < manifest.pad_multiple or manifest.min_size % manifest.pad_multiple:
        raise ValueError("min_size", f"must be a positive multiple of pad_multiple ({manifest.pad_multiple})")
    if manifest.layout != "NCHW" or manifest.color != "RGB":
        raise ValueError("layout", "only NCHW RGB artifacts are supported")
    if manifest.value_range != (0.0, 1.0):
        raise ValueError("value_range", "only [0, 1] is supported")
    if manifest.prior_dim < 1:
        raise ValueError("prior_dim", "must be >= 1")
    if not _SHA256.fullmatch(manifest.source.sha256):
        raise ValueError("source.sha256", "must be 64 lower-case hex digits")
    if not manifest.stages:
        raise ValueError("stages", "at least one stage is required")
    for i, stage in enumerate(manifest.stages):
        where = f"stages[{i}]"
        if stage.stage != i + 1:
            raise ValueError(f"{where}.stage", f"stages must be numbered 1, 2, ... in order; expected {i + 1}")
        for role, name in (("gradient", stage.gradient), ("prior", stage.prior), ("proximal", stage.proximal)):
            if name is None:
                if role != "prior":
                    raise ValueError(f"{where}.{role}", "missing graph name")
                if manifest.sampler is not None:
                    raise ValueError(f"{where}.prior", "the manifest has a sampler, so every stage needs a prior graph")
                continue
            if name not in manifest.graphs:
                raise ValueError(f"{where}.{role}", f"names graph {name!r}, which is not in graphs")
            graph = manifest.graphs[name]
            if graph.role != role:
                raise ValueError(f"{where}.{role}", f"graph {name!r} has role {graph.role!r}, not {role!r}")
            if stage.stage not in graph.stages:
                raise ValueError(f"graphs.{name}.stages", f"does not list stage {stage.stage}, which uses it")
        if stage.prior is not None and manifest.sampler is None:
            raise ValueError("sampler", "a prior graph needs the sampler constants")
    for name, graph in manifest.graphs.items():
        _check_graph(name, graph, manifest)
    unused = sorted(set(manifest.graphs) - set(manifest.graphs_in_use()))
    if unused:
        raise ValueError(f"graphs.{unused[0]}", "no stage uses this graph")
    if manifest.sampler is not None:
        s = manifest.sampler
        if s.steps < 1 or len(s.alpha_bars) != s.steps:
            raise ValueError("sampler.alpha_bars", "needs one value per step")
        if s.noise_shape != (1, manifest.prior_dim):
            raise ValueError("sampler.noise_shape", f"must be [1, prior_dim] = [1, {manifest.prior_dim}]")
    if manifest.calibration is not None and manifest.calibration.report is not None:
        _check_ref(manifest.calibration.report, "calibration.report")
    if manifest.reference is not None:
        _check_ref(manifest.reference.input, "reference.input")
        _check_ref(manifest.reference.output, "reference.output")
    for i, engine in enumerate(manifest.engines):
        if engine.graph not in manifest.graphs:
            raise ValueError(f"engines[{i}].graph", f"names graph {engine.graph!r}, which is not in graphs")
        _check_ref(engine.plan, f"engines[{i}].plan")
        if engine.precision not in PRECISIONS:
            raise ValueError(f"engines[{i}].precision", f"must be one of {', '.join(PRECISIONS)}")
        if engine.key_inputs is not None:
            try:
                recorded = EngineKeyInputs.from_dict(engine.key_inputs)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"engines[{i}].key_inputs", str(exc)) from exc
            if recorded.key != engine.key:
                raise ValueError(f"engines[{i}].key", f"is not the hash of key_inputs ({recorded.key})")
    for target, plan in manifest.auto_precision.items():
        if target not in BACKEND_TARGETS:
            raise ValueError(f"auto_precision.{target}", f"unknown backend target (use {', '.join(BACKEND_TARGETS)})")
        for name, precision in plan.items():
            if name not in manifest.graphs:
                raise ValueError(f"auto_precision.{target}.{name}", "not a graph of this manifest")
            if precision not in manifest.graphs[name].variants:
                raise ValueError(f"auto_precision.{target}.{name}", f"graph has no {precision!r} variant")


def file_refs(manifest: Manifest) -> list[tuple[str, FileRef]]:
    """Every file the manifest names, with the field that names it."""
    refs: list[tuple[str, FileRef]] = []
    for name, graph in manifest.graphs.items():
        for key, variant in graph.variants.items():
            refs.append((f"graphs.{name}.variants.{key}.onnx", variant.onnx))
        if graph.torch_program is not None:
            refs.append((f"graphs.{name}.torch_program", graph.torch_program))
    if manifest.calibration is not None and manifest.calibration.report is not None:
        refs.append(("calibration.report", manifest.calibration.report))
    for i, engine in enumerate(manifest.engines):
        refs.append((f"engines[{i}].plan", engine.plan))
    if manifest.reference is not None:
        refs.append(("reference.input", manifest.reference.input))
        refs.append(("reference.output", manifest.reference.output))
    return refs


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(manifest: Manifest) -> None:
    """Every named file exists and has the recorded sha256; the error names file and field."""
    for where, ref in file_refs(manifest):
        path = manifest.file_path(ref)
        if not path.is_file():
            raise ManifestError(f"{path}: missing (named by {where}.path in {manifest.root / MANIFEST_NAME})")
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise ManifestError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
        if actual != ref.sha256:
            raise ManifestError(
                f"{path}: sha256 does not match {where}.sha256 in {manifest.root / MANIFEST_NAME} "
                "(the file changed after export; re-run build_engines.py)"
            )


# --------------------------------------------------------------------------- reading and writing


def manifest_from_dict(data: Any, root: Path, origin: str = MANIFEST_NAME) -> Manifest:
    """Validate a parsed manifest; `origin` names it in errors."""
    if not isinstance(data, dict):
        raise ManifestError(f"{origin}: not a JSON object")
    if data.get("format") != FORMAT:
        raise ManifestError(
            f"{origin}: not an UnfoldLDM-Edge artifacts manifest (field format is {data.get('format')!r}, "
            f"expected {FORMAT!r})"
        )
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ManifestError(
            f"{origin}: field schema_version is {version!r}, this runtime reads version {SCHEMA_VERSION} "
            "(re-export with this version's build_engines.py)"
        )
    try:
        manifest = _parse(data, Manifest, "")
        _check(manifest)
    except ValueError as exc:
        where, why = exc.args if len(exc.args) == 2 else ("", str(exc))
        raise ManifestError(f"{origin}: field {where}: {why}") from exc
    return dataclasses.replace(manifest, root=root)


def resolve_manifest_path(artifacts: str | os.PathLike[str]) -> Path:
    """`artifacts` is the folder holding manifest.json (a path to manifest.json itself is accepted)."""
    path = Path(artifacts)
    if path.name == MANIFEST_NAME and path.is_file():
        return path
    if not path.exists():
        raise ManifestError(f"{path}: artifacts folder not found (run export/build_engines.py to create it)")
    if not path.is_dir():
        raise ManifestError(f"{path}: not an artifacts folder (expected a folder holding {MANIFEST_NAME})")
    manifest = path / MANIFEST_NAME
    if not manifest.is_file():
        raise ManifestError(f"{path}: no {MANIFEST_NAME} here (run export/build_engines.py --out {path} first)")
    return manifest


def load_manifest(artifacts: str | os.PathLike[str], verify: bool = True) -> Manifest:
    """Read and validate `<artifacts>/manifest.json`; with `verify`, check every file's sha256."""
    path = resolve_manifest_path(artifacts)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot be read ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    manifest = manifest_from_dict(data, path.parent, str(path))
    if verify:
        verify_files(manifest)
    return manifest


def save_manifest(manifest: Manifest, folder: str | os.PathLike[str]) -> Path:
    """Validate `manifest` and write it atomically as `<folder>/manifest.json`."""
    folder = Path(folder)
    data = manifest.to_dict()
    # Round-trip through the reader so we never write a manifest we would refuse to read.
    manifest_from_dict(json.loads(json.dumps(data)), folder, str(folder / MANIFEST_NAME))
    target = folder / MANIFEST_NAME
    try:
        atomic_write_bytes(target, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    except OSError as exc:
        raise ManifestError(f"{target}: cannot be written ({exc.strerror or exc})") from exc
    return target
