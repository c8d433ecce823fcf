"""Accuracy and speed measures for reduced-precision graphs, per graph and end to end.

Per graph: the reduced graph and the FP32 graph run on the same recorded inputs (from held-out
frames, not the calibration frames); PSNR of the output against FP32 with the FP32 output's own
peak-to-peak range as the data range (1 for images; the prior vector z has its own range).
End to end: the whole pipeline with a precision plan against the FP32 pipeline, and both
against ground truth where the frames have it.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration.auto_plan import ONNXRUNTIME_CPU
from calibration.replay import GraphFeeds
from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from runtime.manifest import Manifest
from runtime.metrics import psnr
from runtime.pipeline import Pipeline

PSNR_CAP_DB = 200.0  # identical outputs give +inf; JSON has no infinity


def capped(value: float) -> float:
    return PSNR_CAP_DB if math.isinf(value) else round(value, 3)


# The symmetric `int8` flavour is TensorRT's: int8 x int8 products summed in int32. On x86, ONNX
# Runtime's QDQS8ToU8Transformer moves int8 activations to uint8 for its u8s8 kernels, whose
# 16-bit pair sums saturate without VNNI; on the FP16-based graph (calibration/qdq_fp16.py) the
# prior graph lost 26 dB to it (67.2 dB without it, 66.6 dB in ONNX's reference evaluator, which
# computes the Q/DQ arithmetic exactly: docs/PRECISION.md). So the gate scores that flavour with
# the transformer off, as TensorRT would compute it; the CPU flavour is scored as the CPU runs it.
TENSORRT_LIKE_DISABLED = ("QDQS8ToU8Transformer",)


def _session(path: Path, threads: int | None, tensorrt_like: bool = False):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.log_severity_level = 3
    extra = {"disabled_optimizers": list(TENSORRT_LIKE_DISABLED)} if tensorrt_like else {}
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], **extra)


@dataclass(frozen=True)
class GraphAccuracy:
    min_psnr_db: float  # worst held-out input
    mean_psnr_db: float
    max_abs_error: float
    finite: bool  # no NaN/Inf in any output


def graph_accuracy(
    fp32_path: Path,
    reduced_path: Path,
    feeds: Sequence[GraphFeeds],
    threads: int | None = None,
    tensorrt_like: bool = False,
) -> GraphAccuracy:
    """The reduced graph against the FP32 graph on `feeds` (`tensorrt_like`: scored as TensorRT
    computes symmetric INT8, see TENSORRT_LIKE_DISABLED)."""
    reference, reduced = _session(fp32_path, threads), _session(reduced_path, threads, tensorrt_like)
    scores, worst, finite = [], 0.0, True
    for feed in feeds:
        want = reference.run(None, dict(feed))[0]
        got = reduced.run(None, dict(feed))[0]
        finite = finite and bool(np.isfinite(got).all())
        span = float(np.ptp(want)) or 1.0
        scores.append(psnr(got, want, data_range=span) if finite else -math.inf)
        worst = max(worst, float(np.abs(got - want).max()) if finite else math.inf)
    return GraphAccuracy(capped(min(scores)), capped(statistics.fmean(scores)), worst, finite)


def graph_latencies_ms(
    paths: Mapping[str, Path], feed: GraphFeeds, threads: int | None = None, repeats: int = 5
) -> dict[str, float]:
    """Per variant, the best wall time of one run of its graph on `feed`, after one untimed
    warm-up run each. The variants run in turn, `repeats` rounds, so that other work on the
    machine falls on all of them; the best run is what a variant can do, which a burst of such
    work cannot make look faster (a median of three per variant, timed one variant after the
    other, once put a 3x slower INT8 graph at 1.14x faster)."""
    sessions = {name: _session(path, threads) for name, path in paths.items()}
    for session in sessions.values():
        session.run(None, dict(feed))
    best = dict.fromkeys(sessions, math.inf)
    for _ in range(repeats):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, dict(feed))
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: seconds * 1000.0 for name, seconds in best.items()}


@dataclass(frozen=True)
class PipelineAccuracy:
    psnr_vs_fp32_db: float  # worst frame
    gt_psnr_fp32_db: float | None  # mean over frames with ground truth
    gt_psnr_reduced_db: float | None
    finite: bool

    @property
    def gt_loss_db(self) -> float | None:
        if self.gt_psnr_fp32_db is None or self.gt_psnr_reduced_db is None:
            return None
        return round(self.gt_psnr_fp32_db - self.gt_psnr_reduced_db, 3)


def with_plan(manifest: Manifest, plan: Mapping[str, str]) -> Manifest:
    """`manifest` whose ONNX Runtime CPU `auto` plan is `plan` (graph -> variant), in memory."""
    return dataclasses.replace(manifest, auto_precision={**manifest.auto_precision, ONNXRUNTIME_CPU: dict(plan)})


def pipeline_accuracy(
    manifest: Manifest,
    plan: Mapping[str, str],
    frames: Sequence[np.ndarray],
    clean: Sequence[np.ndarray | None],
    reference: Sequence[np.ndarray],
    threads: int | None = None,
    tensorrt_like: bool = False,
) -> PipelineAccuracy:
    """The pipeline running `plan` (graph -> precision variant; the variants must be in the
    manifest) against the FP32 outputs `reference` of the same `frames`, and against `clean`
    where given (`tensorrt_like`: see TENSORRT_LIKE_DISABLED)."""
    disabled = TENSORRT_LIKE_DISABLED if tensorrt_like else ()
    backend = OnnxRuntimeBackend(with_plan(manifest, plan), "cpu", "auto", threads, disabled_optimizers=disabled)
    worst, finite = math.inf, True
    gt_fp32, gt_reduced = [], []
    with Pipeline(manifest, backend.open()) as pipeline:
        for frame, gt, want in zip(frames, clean, reference, strict=True):
            got = pipeline.restore(frame)
            finite = finite and bool(np.isfinite(got).all())
            worst = min(worst, psnr(got, want))
            if gt is not None:
                gt_fp32.append(psnr(want, gt))
                gt_reduced.append(psnr(got, gt))
    return PipelineAccuracy(capped(worst), _mean_or_none(gt_fp32), _mean_or_none(gt_reduced), finite)


def _mean_or_none(values: Sequence[float]) -> float | None:
    return capped(statistics.fmean(values)) if values else None
