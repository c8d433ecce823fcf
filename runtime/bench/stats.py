"""Latency summaries of timed samples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from runtime.errors import InputError

PERCENTILES = (50, 90, 99)


def summarize(seconds: Sequence[float]) -> dict[str, Any]:
    """Mean, p50, p90, p99, min, max and standard deviation in milliseconds, and the throughput
    (1 / mean, per second) of per-call times in seconds. Percentiles interpolate linearly between
    order statistics (numpy's default method), so p99 of 10 samples lies between the two largest."""
    if len(seconds) == 0:
        raise InputError("no samples to summarize")
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    if not np.all(np.isfinite(ms)) or np.any(ms < 0):
        raise InputError("timings must be finite and non-negative")
    mean = float(ms.mean())
    summary: dict[str, Any] = {"count": int(ms.size), "mean_ms": mean}
    for q, value in zip(PERCENTILES, np.percentile(ms, PERCENTILES), strict=True):
        summary[f"p{q}_ms"] = float(value)
    summary.update(
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
        std_ms=float(ms.std()),
        throughput_per_s=1e3 / mean if mean > 0 else float("inf"),
    )
    return summary
