"""Build this machine's TensorRT engines for an artifacts folder, from its ONNX graphs alone.

The last step of export/build_engines.py (the command): which engines, and their manifest
records; export/trt_builder.py builds each one.

    rows = build_engines_for_artifacts("artifacts/edge", sizes=[(720, 1280)])
    print(format_summary(rows))

One engine per graph the stage plan uses, at the precision variant that
`manifest.precision_for(graph, precision, "tensorrt/cuda")` names (`precision="auto"` follows the
manifest's auto_precision plan for TensorRT; "fp32", "fp16", "int8" ask for one), built by
`export/trt_builder.py`:

- fp32 variant: the FP32 graph, mode "fp32";
- fp16 / int8 variants: the converted FP16 graph or the Q/DQ graph (made from the FP16 graph,
  FP32 islands kept, where the graph has one), mode "strongly_typed" (TensorRT 8.6 builds them
  weakly typed with the FP16 graph's FP32 islands pinned; see trt_builder);
  `weak_fp16=True` builds FP16 from the FP32 graph with the FP16 flag instead (TensorRT < 11).

Shapes: static engines, one per frame size in `sizes` (HxW, padded up to the model's multiple
as the runtime pads frames), by default `DEFAULT_SIZES`; or one dynamic engine per graph with
`profile=((h, w) min, opt, max)`. One shared timing cache (`engines/timing.cache` unless
given), an optional workspace limit, an optional DLA core with GPU fallback. Each plan is
written atomically as `engines/<graph>.<key>.plan` and recorded in manifest.json (saved
atomically after every engine, so an interrupted run keeps what it finished); a record for the
same graph, precision and shapes replaces the older one. An engine whose key and file are
already recorded is kept, not rebuilt, unless `force`.

This module imports neither torch nor `model/`: it is the Jetson side of the two-machine flow
(`build_engines.py --from-artifacts DIR`). Without TensorRT or a GPU it raises
BackendUnavailable with one line, before writing anything.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from export.trt_builder import BuildOptions, key_inputs_for
from export.trt_builder import build_engine as build_one_engine
from runtime.engine_key import EngineKeyInputs, plan_filename
from runtime.errors import EngineBuildError, InputError, ShapeError
from runtime.gpu_info import GpuInfo, query_gpu
from runtime.manifest import (
    BATCH,
    HEIGHT,
    REQUESTED_PRECISIONS,
    WIDTH,
    Engine,
    FileRef,
    Manifest,
    ShapeRange,
    TensorSpec,
    load_manifest,
    save_manifest,
    sha256_file,
)
from runtime.pipeline import padded_size
from runtime.trt_version import TrtCapabilities, detect

log = logging.getLogger(__name__)

TARGET = "tensorrt/cuda"  # the manifest's auto_precision key for these engines
ENGINES_DIR = "engines"
TIMING_CACHE = "timing.cache"
DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((720, 1280),)  # (height, width): the real-time target
Size = tuple[int, int]


@dataclass(frozen=True)
class SummaryRow:
    graph: str
    precision: str  # fp32 | fp16 | int8: what the engine computes in
    shapes: str  # "720x1280" (HxW) or "256x256..720x1280" for a dynamic profile
    size_bytes: int
    build_seconds: float  # 0 when kept
    plan: Path
    status: str  # "built" or "kept" (an engine with this key was already recorded)


@dataclass(frozen=True)
class _Job:
    graph: str
    variant: str  # the ONNX variant built from
    options: BuildOptions
    label: str


def _spec_shape(spec: TensorSpec, batch: int, size: Size) -> tuple[int, ...]:
    values = {BATCH: batch, HEIGHT: size[0], WIDTH: size[1]}
    return tuple(values[d] if isinstance(d, str) else d for d in spec.shape)


def _pad(manifest: Manifest, size: Size, what: str) -> Size:
    height, width = size
    if height < 1 or width < 1:
        raise InputError(f"{what} {width}x{height}: width and height must be positive")
    try:
        return padded_size(height, width, manifest.pad_multiple, manifest.min_size)
    except ShapeError as exc:
        raise InputError(f"{what} {width}x{height}: {exc}") from exc


def _label(size: Size) -> str:
    return f"{size[0]}x{size[1]}"


def _mode(variant: str, weak_fp16: bool) -> tuple[str, str]:
    """(builder mode, ONNX variant to build from) for a manifest precision variant."""
    if variant == "fp32":
        return "fp32", "fp32"
    if variant == "fp16" and weak_fp16:
        return "fp16_weak", "fp32"
    if variant in ("fp16", "int8"):
        return "strongly_typed", variant
    raise EngineBuildError(f"the {variant} graphs are for ONNX Runtime on the CPU, not for TensorRT")


def plan_jobs(
    manifest: Manifest,
    *,
    precision: str = "auto",
    sizes: Sequence[Size] | None = None,
    profile: tuple[Size, Size, Size] | None = None,
    batch: int = 1,
    timing_cache: Path | None = None,
    workspace_bytes: int | None = None,
    dla_core: int | None = None,
    gpu_fallback: bool = True,
    weak_fp16: bool = False,
    log_severity: str = "WARNING",
) -> list[_Job]:
    """Every (graph, shapes) engine to build, validated; no TensorRT needed."""
    if precision not in REQUESTED_PRECISIONS:
        raise InputError(f"unknown precision {precision!r} (use one of {', '.join(REQUESTED_PRECISIONS)})")
    if sizes is not None and profile is not None:
        raise InputError("give sizes (static engines) or a profile (one dynamic engine per graph), not both")
    if batch < 1:
        raise InputError(f"batch must be >= 1, got {batch}")
    if precision != "auto":
        manifest.check_precision(precision, TARGET)  # names every graph that lacks it
    if profile is not None:
        low, opt, high = (_pad(manifest, s, "profile size") for s in profile)
        if not all(a <= b <= c for a, b, c in zip(low, opt, high, strict=True)):
            raise InputError(f"profile needs min <= opt <= max in height and width, got {profile}")
        shape_sets: list[tuple[str, tuple[Size, ...]]] = [(f"{_label(low)}..{_label(high)}", (low, opt, high))]
    else:
        padded = [_pad(manifest, s, "size") for s in (DEFAULT_SIZES if sizes is None else sizes)]
        if not padded:
            raise InputError("no sizes given")
        shape_sets = [(_label(s), (s,)) for s in dict.fromkeys(padded)]
    jobs = []
    for graph in manifest.graphs_in_use():
        chosen_variant = manifest.precision_for(graph, precision, TARGET)
        mode, variant = _mode(chosen_variant, weak_fp16)
        spec = manifest.graph(graph)
        # The FP16 converter's FP32 islands, pinned where TensorRT is weakly typed (8.6, fp16_weak):
        # the FP16 graph's, and the INT8 graph's too, which is the FP16 graph with Q/DQ pairs
        # (calibration/qdq_fp16.py). An INT8 variant's own kept_higher lists the nodes left
        # unquantized, not the ones kept in FP32.
        fp16 = spec.variants.get("fp16")
        kept = fp16.kept_higher if fp16 is not None and chosen_variant in ("fp16", "int8") else ()
        for label, chosen in shape_sets:
            common = dict(
                mode=mode,
                variant=variant if mode == "strongly_typed" else "fp32",
                spatial_multiple=manifest.pad_multiple,
                timing_cache=timing_cache,
                workspace_bytes=workspace_bytes,
                dla_core=dla_core,
                gpu_fallback=gpu_fallback,
                log_severity=log_severity,
                fp32_nodes=tuple(kept),
            )
            try:
                if len(chosen) == 1:
                    shapes = {s.name: _spec_shape(s, batch, chosen[0]) for s in spec.inputs}
                    options = BuildOptions(input_shapes=shapes, **common)
                else:
                    ranges = {
                        s.name: ShapeRange(*(_spec_shape(s, batch, size) for size in chosen))
                        for s in spec.inputs
                        if any(isinstance(d, str) for d in s.shape)
                    }
                    options = BuildOptions(profile=ranges, **common)
            except EngineBuildError as exc:
                raise InputError(f"graph {graph!r} at {label}: {exc}") from exc
            jobs.append(_Job(graph, variant, options, label))
    return jobs


def _record(
    manifest: Manifest, job: _Job, plan: Path, key_inputs: EngineKeyInputs, caps: TrtCapabilities, gpu: GpuInfo
) -> Engine:
    spec = manifest.graph(job.graph)
    options = job.options
    profile = {}
    for s in spec.inputs:
        if options.profile is not None and s.name in options.profile:
            low, opt, high = options.profile[s.name].as_tuple()
        elif options.profile is not None:  # a static input of a dynamic engine
            low = opt = high = tuple(int(d) for d in s.shape)
        else:
            low = opt = high = options.input_shapes[s.name]
        profile[s.name] = ShapeRange(low, opt, high)
    return Engine(
        graph=job.graph,
        precision=options.effective_precision,
        key=key_inputs.key,
        plan=FileRef(plan.relative_to(manifest.root).as_posix(), sha256_file(plan)),
        tensorrt_version=caps.version,
        device_name=gpu.name,
        compute_capability=gpu.compute_capability_str,
        profile=profile,
        key_inputs=key_inputs.to_dict(),
        dla_core=options.dla_core,
    )


def _same_slot(a: Engine, b: Engine) -> bool:
    """Records for the same graph, precision and shapes: the newer replaces the older."""
    return a.graph == b.graph and a.precision == b.precision and a.profile == b.profile


def build_engines_for_artifacts(
    artifacts_dir: str | Path,
    *,
    precision: str = "auto",
    sizes: Sequence[Size] | None = None,
    profile: tuple[Size, Size, Size] | None = None,
    batch: int = 1,
    timing_cache: str | Path | None = None,
    workspace_bytes: int | None = None,
    dla_core: int | None = None,
    gpu_fallback: bool = True,
    weak_fp16: bool = False,
    force: bool = False,
    log_severity: str = "WARNING",
    progress: bool = True,
) -> list[SummaryRow]:
    """Build (or keep) this machine's engines for the artifacts in `artifacts_dir`; see the module doc.

    `sizes` are frame sizes (height, width), `profile` is ((h, w) min, opt, max); both are padded
    up to the model's multiple. Raises InputError (bad options), ManifestError (artifacts),
    BackendUnavailable (no TensorRT or no GPU: nothing is written) and EngineBuildError.
    """
    manifest = load_manifest(artifacts_dir, verify=True)
    root = manifest.root
    engines_dir = root / ENGINES_DIR
    cache = Path(timing_cache) if timing_cache is not None else engines_dir / TIMING_CACHE
    jobs = plan_jobs(
        manifest,
        precision=precision,
        sizes=sizes,
        profile=profile,
        batch=batch,
        timing_cache=cache,
        workspace_bytes=workspace_bytes,
        dla_core=dla_core,
        gpu_fallback=gpu_fallback,
        weak_fp16=weak_fp16,
        log_severity=log_severity,
    )
    caps, gpu = detect(), query_gpu()  # BackendUnavailable in one line; nothing written yet
    for job in jobs:
        job.options.check_supported(caps)
    rows: list[SummaryRow] = []
    bar = tqdm(jobs, desc="TensorRT engines", unit="engine", disable=not progress)
    for job in bar:
        bar.set_postfix_str(f"{job.graph} {job.options.effective_precision} {job.label}")
        onnx = manifest.graph_file(job.graph, job.variant)
        sha = manifest.graph(job.graph).variants[job.variant].onnx.sha256
        key_inputs = key_inputs_for(onnx, job.options, caps, gpu, sha)
        plan = engines_dir / plan_filename(job.graph, key_inputs.key)
        kept = [e for e in manifest.engines if e.key == key_inputs.key and e.graph == job.graph]
        if kept and not force and manifest.file_path(kept[0].plan).is_file():
            size = manifest.file_path(kept[0].plan).stat().st_size
            rows.append(SummaryRow(job.graph, kept[0].precision, job.label, size, 0.0, plan, "kept"))
            continue
        result = build_one_engine(onnx, plan, job.options, gpu=gpu, onnx_sha256=sha)
        record = _record(manifest, job, result.plan_path, result.key_inputs, caps, gpu)
        engines = tuple(e for e in manifest.engines if not _same_slot(e, record)) + (record,)
        manifest = dataclasses.replace(manifest, engines=engines)
        save_manifest(manifest, root)
        rows.append(
            SummaryRow(job.graph, result.precision, job.label, result.size_bytes, result.build_seconds, plan, "built")
        )
    return rows


def format_summary(rows: Sequence[SummaryRow]) -> str:
    """The summary table: graph, precision, shapes, size, build time, status."""
    header = ("graph", "precision", "shapes (HxW)", "size (MB)", "build (s)", "status")
    lines = [
        (r.graph, r.precision, r.shapes, f"{r.size_bytes / 1e6:.1f}", f"{r.build_seconds:.1f}", r.status) for r in rows
    ]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines, strict=True)]
    text = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (header, *lines)]
    total = sum(r.size_bytes for r in rows)
    built = sum(r.build_seconds for r in rows)
    text.append(f"{len(rows)} engine(s), {total / 1e6:.1f} MB, {built:.0f} s of building")
    return "\n".join(text)
