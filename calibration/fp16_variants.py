"""The FP16 step: `<graph>.fp16.onnx` for every graph in use, each kept only if it passes its gate.

Each FP16 graph (calibration/fp16.py) is checked against its FP32 parent on the inputs the FP32
pipeline really produces on held-out frames (pipeline replay): no NaN/Inf and at least
`gate_db` PSNR, with ONNX Runtime on the CPU. That provider may compute some FP16 nodes in FP32,
so it can hide an overflow; the test suite therefore runs every FP16 graph through ONNX's
reference evaluator too (export/reference_check.py). A graph that misses the gate gets no FP16
variant, and `--precision fp16` then names it in its error.

This step writes graph files only; the manifest it returns is in memory, and
calibration/precision.py, the one writer of the precision step, saves it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import onnx
from tqdm import tqdm

from calibration.fp16 import convert_to_fp16
from calibration.gate import graph_accuracy
from calibration.replay import replay
from calibration.sources import CalibrationFrame
from runtime.atomic_io import atomic_write_bytes
from runtime.errors import CalibrationError
from runtime.manifest import Manifest

FP16_GATE_DB = 45.0


@dataclass(frozen=True)
class Fp16Row:
    graph: str
    kept_fp32: int  # nodes left in FP32
    min_psnr_db: float
    finite: bool
    accepted: bool


def add_fp16_variants(
    manifest: Manifest,
    heldout: Sequence[CalibrationFrame],
    gate_db: float = FP16_GATE_DB,
    threads: int | None = None,
    progress: bool = True,
) -> tuple[Manifest, list[Fp16Row]]:
    """`manifest` (without FP16 variants) with the FP16 variant of every graph in use that passed."""
    if not heldout:
        raise CalibrationError("the FP16 check needs at least one frame")
    records, _ = replay(manifest, [f.image for f in heldout], threads, progress)
    checked_on = f"{len(heldout)} held-out frames, ONNX Runtime CPU"
    graphs = dict(manifest.graphs)
    rows = []
    for name in tqdm(manifest.graphs_in_use(), desc="fp16", unit="graph", disable=not progress):
        fp32_path = manifest.graph_file(name, "fp32")
        path = fp32_path.with_name(f"{name}.fp16.onnx")
        converted = convert_to_fp16(onnx.load(str(fp32_path)))
        atomic_write_bytes(path, converted.model.SerializeToString())
        accuracy = graph_accuracy(fp32_path, path, records[name], threads)
        accepted = accuracy.finite and accuracy.min_psnr_db >= gate_db
        rows.append(Fp16Row(name, len(converted.kept_fp32), accuracy.min_psnr_db, accuracy.finite, accepted))
        if not accepted:
            path.unlink(missing_ok=True)
            continue
        variant = manifest.derived_variant(name, "fp16", path, converted.kept_fp32, accuracy.min_psnr_db, checked_on)
        graphs[name] = dataclasses.replace(graphs[name], variants={**graphs[name].variants, "fp16": variant})
    return dataclasses.replace(manifest, graphs=graphs), rows


def format_fp16_rows(rows: Sequence[Fp16Row]) -> str:
    lines = [f"{'graph':<14} {'kept FP32':>9} {'PSNR vs FP32':>13}  result"]
    for r in rows:
        result = "fp16" if r.accepted else ("NaN/Inf: stays FP32" if not r.finite else "below the gate: stays FP32")
        lines.append(f"{r.graph:<14} {r.kept_fp32:>9} {r.min_psnr_db:>10.1f} dB  {result}")
    return "\n".join(lines)
