"""The INT8 step: INT8 Q/DQ graphs per graph, the accuracy gate, what `auto` may run in INT8.

1. Replay the FP32 pipeline over the calibration frames and, separately, over held-out frames
   (never used for calibration): every graph's real inputs.
2. Per graph, quantize (calibration/qdq.py) and measure against FP32 on the held-out inputs.
   TensorRT's `int8` graph is made from the graph's FP16 variant where it has one (its FP32
   islands kept, calibration/qdq_fp16.py), else from the FP32 graph; the report says which.
   A graph below the per-graph screen is quantized again with more convolutions left in FP32,
   in the fixed order of `ESCALATION`; if the last level still misses, the graph keeps its
   higher precision and the report says so.
3. End to end, the symmetric INT8 pipeline (the TensorRT graphs, scored as TensorRT computes
   them: calibration/gate.py) must stay within the gate against FP32 and lose at most
   `max_gt_loss_db` against ground truth; while it does not, the graph whose removal helps most
   is dropped (it keeps its higher precision).
4. ONNX Runtime CPU may take the `int8-cpu` flavour only where it measured faster than FP32 by
   `min_speedup` (best of interleaved runs) and the CPU pipeline with it still passes the gate.

The result is the graphs that passed (TensorRT's INT8 graphs, the CPU's INT8 flavours) and the
report; calibration/auto_plan.py turns them into the `auto` plans. Graph files are written
here; the manifest returned is in memory (calibration/precision.py saves it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
from tqdm import tqdm

from calibration.gate import (
    GraphAccuracy,
    PipelineAccuracy,
    graph_accuracy,
    graph_latencies_ms,
    pipeline_accuracy,
)
from calibration.qdq import count_quantize_nodes, quantize_graph
from calibration.replay import replay
from calibration.sources import CalibrationFrame
from runtime.errors import CalibrationError
from runtime.manifest import Manifest, Variant

INT8_FLAVOURS = ("int8", "int8-cpu")


def _group(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


# Convolutions left in FP32 at each level, beyond calibration/sensitive_ops.py's rule: depthwise
# convolutions (per-tensor activation scales fit their channels worst), then the first
# convolution (it sees the raw image) and the high-frequency branch (it carries fine texture).
def _nothing_more(node: onnx.NodeProto, producers: Mapping[str, onnx.NodeProto]) -> bool:
    return False


def _gated(node: onnx.NodeProto, producers: Mapping[str, onnx.NodeProto]) -> bool:
    """A convolution fed by the product of two activations (a gated feed-forward's output):
    heavy-tailed inputs that one per-tensor scale resolves worst (measured: the largest SNR
    drop of any layer in the proximal graphs)."""
    source = producers.get(node.input[0])
    if source is None or source.op_type != "Mul":
        return False
    return all(i in producers and producers[i].op_type != "Constant" for i in source.input)


def _gated_or_depthwise(node: onnx.NodeProto, producers: Mapping[str, onnx.NodeProto]) -> bool:
    return _gated(node, producers) or _group(node) > 1


def _gated_depthwise_or_edges(node: onnx.NodeProto, producers: Mapping[str, onnx.NodeProto]) -> bool:
    edges = "/embed/" in node.name or "/high_freq/" in node.name  # sees the raw image / carries fine texture
    return _gated_or_depthwise(node, producers) or edges


# Convolutions left in FP32 at each level, beyond calibration/sensitive_ops.py's rule.
ESCALATION: tuple[tuple[str, Callable[[onnx.NodeProto, Mapping[str, onnx.NodeProto]], bool]], ...] = (
    ("rule", _nothing_more),
    ("+gated", _gated),
    ("+gated+depthwise", _gated_or_depthwise),
    ("+gated+depthwise+embed+high_freq", _gated_depthwise_or_edges),
)


@dataclass
class GraphResult:
    graph: str
    level: str | None = None  # escalation level in use; None: no INT8
    level_index: int | None = None
    accuracy: dict[str, GraphAccuracy] = field(default_factory=dict)  # per flavour
    kept_higher: tuple[str, ...] = ()
    made_from: str = ""  # the variant the `int8` graph was made from: "fp16" (islands kept) or "fp32"
    quantize_nodes: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)  # per precision, ONNX Runtime CPU
    note: str = ""


@dataclass
class CalibrationReport:
    source: str
    method: str
    calibration_frames: int
    heldout_frames: int
    gate_db: float
    max_gt_loss_db: float
    graphs: dict[str, GraphResult]
    int8_pipeline: PipelineAccuracy | None
    cpu_pipeline: PipelineAccuracy | None
    plans: dict[str, dict[str, str]]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in ("int8_pipeline", "cpu_pipeline"):
            accuracy = getattr(self, name)
            if accuracy is not None:
                data[name]["gt_loss_db"] = accuracy.gt_loss_db
        return data


def _set_variants(manifest: Manifest, graph: str, variants: Mapping[str, Variant]) -> Manifest:
    entry = dataclasses.replace(manifest.graphs[graph], variants=dict(variants))
    return dataclasses.replace(manifest, graphs={**manifest.graphs, graph: entry})


class _Quantizer:
    """Quantizes one graph at a given escalation level and scores it on the held-out inputs."""

    def __init__(self, manifest: Manifest, calib: dict, heldout: dict, method: str, threads: int | None) -> None:
        self.manifest, self.calib, self.heldout = manifest, calib, heldout
        self.method, self.threads = method, threads

    def path(self, graph: str, flavour: str) -> Path:
        return self.manifest.graph_file(graph, "fp32").with_name(f"{graph}.{flavour}.onnx")

    def run(self, result: GraphResult, level: int, flavour: str = "int8") -> GraphAccuracy:
        graph = result.graph
        fp32_path = self.manifest.graph_file(graph, "fp32")
        nodes = onnx.load(str(fp32_path)).graph.node
        producers = {out: n for n in nodes for out in n.output}
        name, rule = ESCALATION[level]
        extra = [n.name for n in nodes if n.op_type == "Conv" and rule(n, producers)]
        out = self.path(graph, flavour)
        # TensorRT builds the int8 graph strongly typed: the layers between quantized
        # convolutions run in the graph's own types, so they are FP16 where the FP16 variant's are
        # (calibration/qdq_fp16.py). No FP16 variant (it missed its gate, or the FP16 step did
        # not run): FP32 graph. The CPU flavour stays FP32.
        fp16 = self.manifest.graphs[graph].variants.get("fp16") if flavour == "int8" else None
        islands = fp16.kept_higher if fp16 is not None else None
        kept = quantize_graph(fp32_path, out, self.calib[graph], flavour, self.method, extra, islands)
        accuracy = graph_accuracy(fp32_path, out, self.heldout[graph], self.threads, tensorrt_like=flavour == "int8")
        result.accuracy[flavour] = accuracy
        if flavour == "int8":
            result.level, result.level_index, result.kept_higher = name, level, kept
            result.made_from = "fp32" if fp16 is None else "fp16"
            result.quantize_nodes = count_quantize_nodes(out)
        return accuracy


def _register(manifest: Manifest, graph: str, flavour: str, result: GraphResult, path: Path, checked_on: str):
    """`manifest` with `path` as the graph's `flavour` variant (in memory)."""
    variant = manifest.derived_variant(
        graph, flavour, path, result.kept_higher, result.accuracy[flavour].min_psnr_db, checked_on
    )
    return _set_variants(manifest, graph, {**manifest.graphs[graph].variants, flavour: variant})


@dataclass(frozen=True)
class Int8Settings:
    """Everything the INT8 step needs besides the manifest (see calibrate_int8)."""

    calibration: Sequence[CalibrationFrame]
    heldout: Sequence[CalibrationFrame]
    source: str
    method: str = "entropy"
    gate_db: float = 40.0
    graph_screen_db: float = 35.0
    max_gt_loss_db: float = 0.3
    min_speedup: float = 1.1
    cpu_flavour: bool = True


@dataclass(frozen=True)
class Int8Outcome:
    manifest: Manifest  # in memory, with the INT8 variants that passed
    report: CalibrationReport  # its `plans` are filled in by calibration/precision.py
    tensorrt: dict[str, str]  # graph -> "int8": what passed the end-to-end gate (TensorRT's graphs)
    cpu: dict[str, str]  # graph -> INT8 flavour ONNX Runtime CPU runs (faster, and within the gate)


def calibrate_int8(
    manifest: Manifest, settings: Int8Settings, threads: int | None = None, progress: bool = True
) -> Int8Outcome:
    """Calibrate the graphs of `manifest` (which holds no INT8 variant); see the module docstring.

    `graph_screen_db` is the per-graph PSNR a graph needs to be tried in the INT8 pipeline at
    all; `gate_db` and `max_gt_loss_db` are the end-to-end gate that decides. The unfolding
    corrects part of an early stage's error in later stages, so the end-to-end figure, not the
    per-graph one, is what a user sees."""
    s = settings
    calibration, heldout, source, method = s.calibration, s.heldout, s.source, s.method
    gate_db, graph_screen_db, max_gt_loss_db = s.gate_db, s.graph_screen_db, s.max_gt_loss_db
    if not calibration:
        raise CalibrationError("no calibration frames")
    if not heldout:
        raise CalibrationError("no held-out frames to check the INT8 graphs on")
    calib_records, _ = replay(manifest, [f.image for f in calibration], threads, progress)
    held_records, fp32_out = replay(manifest, [f.image for f in heldout], threads, progress)
    quantizer = _Quantizer(manifest, calib_records, held_records, method, threads)
    checked_on = f"{len(heldout)} held-out frames from {source}"
    results: dict[str, GraphResult] = {}
    notes: list[str] = []

    # 1. Per graph: the lowest escalation level that passes the screen.
    bar = tqdm(manifest.graphs_in_use(), desc="quantize", unit="graph", disable=not progress)
    for graph in bar:
        bar.set_postfix_str(graph)
        result = results[graph] = GraphResult(graph)
        for level in range(len(ESCALATION)):
            accuracy = quantizer.run(result, level)
            if accuracy.finite and accuracy.min_psnr_db >= graph_screen_db:
                break
        else:
            quantizer.path(graph, "int8").unlink(missing_ok=True)
            result.level = result.level_index = None
            result.note = f"missed the {graph_screen_db:g} dB per-graph screen at every level"
            continue
        manifest = _register(manifest, graph, "int8", result, quantizer.path(graph, "int8"), checked_on)

    # 2. End to end: while the symmetric INT8 pipeline misses the gate, drop the graph whose
    #    removal helps most (leave-one-out). Not the least accurate graph alone: the unfolding
    #    corrects much of an early stage's error, so per-graph PSNR misjudges what a graph costs.
    images, clean = [f.image for f in heldout], [f.clean for f in heldout]

    def acceptable(accuracy: PipelineAccuracy) -> bool:
        loss = accuracy.gt_loss_db
        return accuracy.finite and accuracy.psnr_vs_fp32_db >= gate_db and (loss is None or loss <= max_gt_loss_db)

    def score(accuracy: PipelineAccuracy) -> tuple[bool, float, float]:
        return (accuracy.finite, accuracy.psnr_vs_fp32_db, -(accuracy.gt_loss_db or 0.0))

    plan = {g: "int8" for g, r in results.items() if r.level is not None}
    def tensorrt_accuracy(trial: Mapping[str, str]) -> PipelineAccuracy:
        return pipeline_accuracy(manifest, trial, images, clean, fp32_out, threads, tensorrt_like=True)

    int8_accuracy = tensorrt_accuracy(plan) if plan else None
    while int8_accuracy is not None and not acceptable(int8_accuracy):
        trials = {
            g: tensorrt_accuracy({k: v for k, v in plan.items() if k != g})
            for g in plan
        }
        drop = max(trials, key=lambda g: score(trials[g]))
        notes.append(
            f"INT8 pipeline {int8_accuracy.psnr_vs_fp32_db} dB vs FP32 (gate {gate_db:g}): dropping {drop} "
            f"gives {trials[drop].psnr_vs_fp32_db} dB"
        )
        results[
            drop
        ].note = f"dropped: with it the INT8 pipeline was {int8_accuracy.psnr_vs_fp32_db} dB vs FP32 (gate {gate_db:g})"
        results[drop].level = results[drop].level_index = None
        del plan[drop]
        manifest = _drop_int8(manifest, drop)
        int8_accuracy = trials[drop] if plan else None

    # 3. ONNX Runtime CPU: the uint8 flavour at the same level, and speed against FP32. Only that
    #    flavour can enter the CPU plan: the symmetric one is TensorRT's (FP16 between its
    #    quantized convolutions where made from the FP16 graph); it is timed for the report.
    cpu_plan: dict[str, str] = {}
    for graph in plan:
        result = results[graph]
        feed = held_records[graph][0]
        timed = {"fp32": manifest.graph_file(graph, "fp32"), "int8": quantizer.path(graph, "int8")}
        if s.cpu_flavour and result.level_index is not None:
            accuracy = quantizer.run(result, result.level_index, "int8-cpu")
            if accuracy.finite and accuracy.min_psnr_db >= graph_screen_db:
                timed["int8-cpu"] = quantizer.path(graph, "int8-cpu")
                manifest = _register(manifest, graph, "int8-cpu", result, timed["int8-cpu"], checked_on)
            else:
                quantizer.path(graph, "int8-cpu").unlink(missing_ok=True)
        result.latency_ms.update(graph_latencies_ms(timed, feed, threads))
        latency = result.latency_ms
        if "int8-cpu" in latency and latency["fp32"] / latency["int8-cpu"] >= s.min_speedup:
            cpu_plan[graph] = "int8-cpu"
    cpu_accuracy = None
    if cpu_plan:
        cpu_accuracy = pipeline_accuracy(manifest, cpu_plan, images, clean, fp32_out, threads)
        if not acceptable(cpu_accuracy):
            notes.append(f"CPU plan {cpu_plan} missed the end-to-end gate; CPU auto stays FP32")
            cpu_plan = {}

    report = CalibrationReport(
        source, method, len(calibration), len(heldout), gate_db, max_gt_loss_db,
        results, int8_accuracy, cpu_accuracy, {}, notes,
    )  # fmt: skip
    return Int8Outcome(manifest, report, plan, cpu_plan)


def _drop_int8(manifest: Manifest, graph: str) -> Manifest:
    entry = manifest.graphs[graph]
    for flavour in INT8_FLAVOURS:
        if flavour in entry.variants:
            manifest.file_path(entry.variants[flavour].onnx).unlink(missing_ok=True)
    return _set_variants(manifest, graph, {k: v for k, v in entry.variants.items() if k not in INT8_FLAVOURS})
