"""The checks `runtime/doctor.py` runs, as a record of results: each ok, failed or skipped, with why.

A check is a function that returns its details (a dict) when it passes, raises `Skip(reason)`
when it cannot run here, and raises anything else when it fails. `Checks.run` records which,
with the exception as the reason of a failure: a diagnostic tool must report every failure,
named by the call that failed, never stop at the first one.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import platform
import subprocess
import threading
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import BackendUnavailable
from runtime.metrics import psnr

log = logging.getLogger(__name__)

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
L4T_RELEASE = Path("/etc/nv_tegra_release")


class Skip(Exception):
    """The check cannot run on this machine; the message says why."""


@dataclass
class CheckResult:
    name: str
    status: str
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        facts = ", ".join(f"{k}={_short(v)}" for k, v in self.details.items())
        why = f": {self.reason}" if self.reason else ""
        return f"{self.status.upper():7s} {self.name}{why}" + (f" ({facts})" if facts else "")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Checks:
    """Runs checks in order and keeps their results; `passed(name)` for checks that depend on one."""

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self.results: list[CheckResult] = []
        self._echo = echo

    def run(self, name: str, check: Callable[[], dict[str, Any] | None]) -> CheckResult:
        try:
            result = CheckResult(name, OK, details=check() or {})
        except Skip as why:
            result = CheckResult(name, SKIPPED, str(why))
        except Exception as exc:  # a failing check is a result to report, whatever raised it
            log.debug("check %s failed:\n%s", name, traceback.format_exc())
            result = CheckResult(name, FAILED, f"{type(exc).__name__}: {exc}")
        self.results.append(result)
        if self._echo is not None:
            self._echo(result.line())
        return result

    def passed(self, name: str) -> bool:
        return any(r.name == name and r.status == OK for r in self.results)

    def require(self, name: str) -> None:
        """Skip the running check unless the check `name` passed."""
        for r in self.results:
            if r.name == name and r.status != OK:
                raise Skip(f"{name} {r.status}" + (f" ({r.reason})" if r.reason else ""))

    @property
    def failed(self) -> bool:
        return any(r.status == FAILED for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"checks": [asdict(r) for r in self.results]}


# ------------------------------------------------------------------ the machine


def python_check() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform()}


def module_check(module: str, distribution: str | None = None) -> Callable[[], dict[str, Any]]:
    """Imports `module`; its version. Skipped when it is not installed."""

    def check() -> dict[str, Any]:
        try:
            imported = importlib.import_module(module)
        except ImportError as exc:
            raise Skip(f"{module} is not installed ({exc})") from exc
        version = getattr(imported, "__version__", None)
        if version is None and distribution is not None:
            version = importlib.metadata.version(distribution)
        return {"version": str(version)}

    return check


def opencv_check() -> dict[str, Any]:
    try:
        import cv2
    except ImportError as exc:
        raise Skip(f"OpenCV is not installed ({exc})") from exc
    gstreamer = "unknown"
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            gstreamer = "yes" if "YES" in line else "no"
    return {"version": cv2.__version__, "gstreamer": gstreamer}


def l4t_check() -> dict[str, Any]:
    if not L4T_RELEASE.is_file():
        raise Skip(f"not a Jetson ({L4T_RELEASE} is absent)")
    return {"l4t": L4T_RELEASE.read_text(errors="replace").splitlines()[0].lstrip("# ").strip()}


def gpu_check() -> dict[str, Any]:
    from runtime.gpu_info import query_gpu

    try:
        info = query_gpu(0)
    except BackendUnavailable as exc:
        raise Skip(str(exc)) from exc
    return {
        "gpu": info.name,
        "compute_capability": info.compute_capability_str,
        "queried_with": info.source,
        "driver": _driver_version(),
    }


def _driver_version() -> str:
    """The NVIDIA driver as nvidia-smi reports it; JetPack's L4T release names it on a Jetson."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown (no nvidia-smi)"
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"


def tensorrt_check() -> dict[str, Any]:
    from runtime.trt_version import detect

    try:
        caps = detect()
    except BackendUnavailable as exc:
        raise Skip(str(exc)) from exc
    return {"version": caps.version, "supports": caps.describe()}


# ------------------------------------------------------------------ the artifacts


def reference_frames(manifest: Any) -> tuple[np.ndarray, np.ndarray]:
    """The export's reference frame and the PyTorch FP32 model's output for it."""
    if manifest.reference is None:
        raise Skip(
            "these artifacts hold no reference frame (exported before it was kept): "
            "re-export them with python export/build_engines.py"
        )
    frame = np.load(manifest.file_path(manifest.reference.input), allow_pickle=False)
    expected = np.load(manifest.file_path(manifest.reference.output), allow_pickle=False)
    return frame, expected


def compare(restored: np.ndarray, expected: np.ndarray, atol: float) -> dict[str, Any]:
    """Polygraphy's output comparison of a restored frame against the reference, plus PSNR and
    NaN/Inf counts; AssertionError (a failed check) when it does not match within `atol`."""
    from polygraphy.comparator import IterationResult, SimpleCompareFunc
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.ERROR  # its per-output report would drown the doctor's lines
    bad = int(restored.size - np.count_nonzero(np.isfinite(restored)))
    result = SimpleCompareFunc(atol=atol, rtol=0.0)(
        IterationResult({"restored": expected}, runner_name="reference (PyTorch FP32, at export)"),
        IterationResult({"restored": restored}, runner_name="this machine"),
    )["restored"]
    details = {
        "max_abs_diff": float(result.max_absdiff),
        "mean_abs_diff": float(result.mean_absdiff),
        "psnr_db": psnr(np.nan_to_num(restored), expected),
        "nan_or_inf": bad,
        "atol": atol,
    }
    if bad or not bool(result):
        raise AssertionError(f"output differs from the reference: {details}")
    return details


def in_a_thread(work: Callable[[], np.ndarray]) -> np.ndarray:
    """`work()` run in a new thread (as the video loop runs inference); its exception re-raised here."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the calling thread, which raises it
            box["error"] = exc

    thread = threading.Thread(target=body, name="doctor-worker")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
