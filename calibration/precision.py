"""The precision step: every reduced-precision variant of an artifacts folder, and the `auto` plans.

    result = build_precision("artifacts/edge", fp16_heldout=frames, int8=Int8Settings(...))

The one entry point of calibration/ (docs/ARCHITECTURE.md, "Precision"): export/build_engines.py
runs it as one step after the export, calibration/calibrate.py runs it with INT8 only. It is the
only writer of the manifest in this step, and writes only its own keys: the `fp16`, `int8` and
`int8-cpu` variants of each graph, `calibration` and `auto_precision`.

1. Load the manifest once. The variants of the sub-steps that run again (FP16 when
   `fp16_heldout` is given, INT8 when `int8` is), the calibration record when INT8 runs, and
   the plans are removed, and that manifest is saved before their files are replaced: an
   interrupted run leaves a valid folder, never a manifest naming rewritten files.
2. FP16 (calibration/fp16_variants.py) and INT8 (calibration/int8.py), each in memory.
3. The `auto` plans (calibration/auto_plan.py) from the variants now present and what passed
   INT8: this run's calibration, or the earlier one's when INT8 does not run. FP16 is planned
   either way.
4. `calibration/report.json` when INT8 ran, then the manifest, saved once and read back with
   every sha256 checked.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from calibration.auto_plan import auto_plans, earlier_int8_plans
from calibration.fp16_variants import FP16_GATE_DB, Fp16Row, add_fp16_variants
from calibration.int8 import INT8_FLAVOURS, CalibrationReport, Int8Settings, calibrate_int8
from calibration.sources import CalibrationFrame
from runtime.atomic_io import atomic_write_bytes
from runtime.manifest import Calibration, FileRef, Manifest, load_manifest, save_manifest, sha256_file

REPORT_PATH = "calibration/report.json"


@dataclass(frozen=True)
class PrecisionResult:
    fp16: list[Fp16Row] | None  # None: the FP16 step did not run
    int8: CalibrationReport | None  # None: the INT8 step did not run
    plans: dict[str, dict[str, str]]  # the `auto` plans written, per backend target


def build_precision(
    artifacts: str | Path,
    *,
    fp16_heldout: Sequence[CalibrationFrame] | None = None,
    int8: Int8Settings | None = None,
    fp16_gate_db: float = FP16_GATE_DB,
    threads: int | None = None,
    progress: bool = True,
) -> PrecisionResult:
    """Write the FP16 variants (when `fp16_heldout` is given), the INT8 variants (when `int8`
    is) and the `auto` plans of the artifacts folder `artifacts`; see the module docstring."""
    loaded = load_manifest(artifacts)
    manifest = _without_replaced(loaded, fp16=fp16_heldout is not None, int8=int8 is not None)
    rows = report = None
    if fp16_heldout is not None:
        manifest, rows = add_fp16_variants(manifest, fp16_heldout, fp16_gate_db, threads, progress)
    if int8 is None:
        tensorrt_int8, cpu_int8 = earlier_int8_plans(loaded)
    else:
        outcome = calibrate_int8(manifest, int8, threads, progress)
        manifest, tensorrt_int8, cpu_int8 = outcome.manifest, outcome.tensorrt, outcome.cpu
    plans = auto_plans(manifest, tensorrt_int8, cpu_int8)
    if int8 is not None:
        report = dataclasses.replace(outcome.report, plans=plans)
        record = _write_report(manifest.root, report, int8, sorted(tensorrt_int8))
        manifest = dataclasses.replace(manifest, calibration=record)
    save_manifest(dataclasses.replace(manifest, auto_precision=plans), manifest.root)
    load_manifest(manifest.root, verify=True)  # read back what we wrote, hashes included
    return PrecisionResult(rows, report, plans)


def _without_replaced(manifest: Manifest, fp16: bool, int8: bool) -> Manifest:
    """`manifest` without the variants the sub-steps that run will replace, without the
    calibration record when INT8 runs, and without plans; saved (when that changed anything)
    before the old files are deleted."""
    replaced = ({"fp16"} if fp16 else set()) | (set(INT8_FLAVOURS) if int8 else set())
    old = [manifest.file_path(v.onnx) for e in manifest.graphs.values() for k, v in e.variants.items() if k in replaced]
    graphs = {
        name: dataclasses.replace(e, variants={k: v for k, v in e.variants.items() if k not in replaced})
        for name, e in manifest.graphs.items()
    }
    cleared = dataclasses.replace(
        manifest, graphs=graphs, auto_precision={}, calibration=None if int8 else manifest.calibration
    )
    if cleared != manifest:
        save_manifest(cleared, cleared.root)
    for path in old:
        path.unlink(missing_ok=True)
    return cleared


def _write_report(root: Path, report: CalibrationReport, settings: Int8Settings, graphs: list[str]) -> Calibration:
    """Write `calibration/report.json`; the manifest's calibration record that names it."""
    path = root / REPORT_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(report.to_dict(), indent=2) + "\n").encode())
    # Provenance of TensorRT's int8 graphs: `parent_sha256` names the FP32 graph every variant
    # descends from (and was calibrated on); which ones were made from the FP16 variant is said here.
    from_fp16 = [g for g in graphs if report.graphs[g].made_from == "fp16"]
    return Calibration(
        method=f"onnxruntime quantize_static Q/DQ, {settings.method}; "
        f"int8 made from the FP16 graph (FP32 islands kept): {', '.join(from_fp16) or 'none'}",
        source=settings.source,
        frames=len(settings.calibration),
        graphs=tuple(graphs),
        report=FileRef(REPORT_PATH, sha256_file(path)),
    )

