"""Write `<graph>.fp16.onnx` for every graph of an artifacts folder and record them in the manifest.

Each FP16 graph (export/fp16.py) is checked against its FP32 parent on the inputs the FP32
pipeline really produces on held-out frames (pipeline replay): no NaN/Inf and at least
`gate_db` PSNR, with ONNX Runtime on the CPU. That provider may compute some FP16 nodes in FP32,
so it can hide an overflow; the test suite therefore runs every FP16 graph through ONNX's
reference evaluator too (export/reference_check.py). A graph that misses the gate gets no FP16
variant, and `--precision fp16` then names it in its error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import onnx
from tqdm import tqdm

from calibration.gate import graph_accuracy
from calibration.replay import replay
from calibration.sources import CalibrationFrame
from export.fp16 import convert_to_fp16
from runtime.atomic_io import atomic_write_bytes
from runtime.errors import ExportError
from runtime.manifest import load_manifest, save_manifest

FP16_GATE_DB = 45.0


@dataclass(frozen=True)
class Fp16Row:
    graph: str
    kept_fp32: int  # nodes left in FP32
    min_psnr_db: float
    finite: bool
    accepted: bool


def add_fp16_variants(
    artifacts: str,
    heldout: Sequence[CalibrationFrame],
    gate_db: float = FP16_GATE_DB,
    threads: int | None = None,
    progress: bool = True,
) -> list[Fp16Row]:
    """Convert, check and record the FP16 variant of every graph in use (replacing earlier ones)."""
    if not heldout:
        raise ExportError("the FP16 check needs at least one frame")
    manifest = load_manifest(artifacts)
    # Drop the old FP16 variants (and the plans that name them) from the manifest before their
    # files are rewritten, so an interrupted run leaves a valid manifest, not one with stale hashes.
    manifest = dataclasses.replace(
        manifest,
        graphs={
            name: dataclasses.replace(g, variants={k: v for k, v in g.variants.items() if k != "fp16"})
            for name, g in manifest.graphs.items()
        },
        auto_precision={},
    )
    save_manifest(manifest, manifest.root)
    records, _ = replay(manifest, [f.image for f in heldout], threads, progress)
    checked_on = f"{len(heldout)} held-out frames, ONNX Runtime CPU"
    graphs = dict(manifest.graphs)
    rows = []
    for name in tqdm(manifest.graphs_in_use(), desc="fp16", unit="graph", disable=not progress):
        entry = graphs[name]
        fp32_path = manifest.graph_file(name, "fp32")
        path = fp32_path.with_name(f"{name}.fp16.onnx")
        converted = convert_to_fp16(onnx.load(str(fp32_path)))
        atomic_write_bytes(path, converted.model.SerializeToString())
        accuracy = graph_accuracy(fp32_path, path, records[name], threads)
        accepted = accuracy.finite and accuracy.min_psnr_db >= gate_db
        rows.append(Fp16Row(name, len(converted.kept_fp32), accuracy.min_psnr_db, accuracy.finite, accepted))
        variants = dict(entry.variants)
        if accepted:
            variants["fp16"] = manifest.derived_variant(
                name, "fp16", path, converted.kept_fp32, accuracy.min_psnr_db, checked_on
            )
        else:
            path.unlink(missing_ok=True)
        graphs[name] = dataclasses.replace(entry, variants=variants)
    # The plans were cleared above: a new FP16 set invalidates them; calibration writes new ones.
    save_manifest(dataclasses.replace(manifest, graphs=graphs), manifest.root)
    load_manifest(manifest.root, verify=True)
    return rows


def format_fp16_rows(rows: Sequence[Fp16Row]) -> str:
    lines = [f"{'graph':<14} {'kept FP32':>9} {'PSNR vs FP32':>13}  result"]
    for r in rows:
        result = "fp16" if r.accepted else ("NaN/Inf: stays FP32" if not r.finite else "below the gate: stays FP32")
        lines.append(f"{r.graph:<14} {r.kept_fp32:>9} {r.min_psnr_db:>10.1f} dB  {result}")
    return "\n".join(lines)
