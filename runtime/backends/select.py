"""Choosing a backend: an explicit fallback order, resolved once when the pipeline opens.

A candidate is (backend name, device). `open_backend` tries them in order and moves on only
when a candidate raises BackendUnavailable (library or device missing); each skip is logged.
Any other error (a bad manifest, a graph that fails to load) stops the search: falling back
would hide it. Once a backend is open it is used for every frame; nothing falls back mid-stream.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from runtime.backends.base import DEVICES, Backend
from runtime.backends.options import BackendOptions, options_for, restrict
from runtime.errors import BackendUnavailable, InputError
from runtime.manifest import Manifest

log = logging.getLogger(__name__)

BACKEND_NAMES = ("torch", "onnxruntime", "tensorrt", "openvino")
# Backends that run on one device only; the others run on both.
ONLY_ON = {"tensorrt": "cuda", "openvino": "cpu"}
# GPU first, then the CPU; ONNX Runtime before torch on each device (faster, and torch may be absent).
# OpenVINO joins the default order only where the manifest's CPU timing measured it fastest
# (`candidate_order`'s `cpu_first`), and then in front of ONNX Runtime, which stays the CPU
# backend that is always installed: without OpenVINO the order falls through to it.
DEFAULT_ORDER: tuple[tuple[str, str], ...] = (
    ("tensorrt", "cuda"),
    ("onnxruntime", "cuda"),
    ("torch", "cuda"),
    ("onnxruntime", "cpu"),
    ("torch", "cpu"),
)


def create_backend(
    name: str,
    manifest: Manifest,
    device: str,
    precision: str = "fp32",
    threads: int | None = None,
    options: BackendOptions | None = None,
) -> Backend:
    """An unopened backend; importing its module does not import its library. `options`
    (runtime/backends/options.py) must all apply to `name` on `device` (InputError otherwise)."""
    if name not in BACKEND_NAMES:
        raise InputError(f"unknown backend {name!r} (use one of {', '.join(BACKEND_NAMES)})")
    keywords = options_for(options, name, device)
    if name == "onnxruntime":
        from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(manifest, device, precision, threads, **keywords)
    if name == "torch":
        from runtime.backends.torch_backend import TorchBackend

        return TorchBackend(manifest, device, precision, threads, **keywords)
    if name == "openvino":
        from runtime.backends.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(manifest, device, precision, threads, **keywords)
    from runtime.backends.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(manifest, device, precision, threads, **keywords)


def candidate_order(
    backends: Sequence[str] | None = None, device: str | None = None, cpu_first: str | None = None
) -> list[tuple[str, str]]:
    """The candidates for a request: `backends` in the given order (None: all, default order),
    each on `device` (None: CUDA first, then CPU). TensorRT runs on CUDA only, OpenVINO on the CPU only.
    `cpu_first` (the manifest's fastest CPU backend, `CpuTiming.fastest`) leads the default
    order's CPU candidates; an explicit `backends` list is kept as given."""
    for name in backends or ():
        if name not in BACKEND_NAMES:
            raise InputError(f"unknown backend {name!r} (use one of {', '.join(BACKEND_NAMES)})")
    if device is not None and device not in DEVICES:
        raise InputError(f"unknown device {device!r} (use one of {', '.join(DEVICES)})")
    if backends:
        devices = [device] if device else ["cuda", "cpu"]
        order = [(b, d) for b in backends for d in devices if ONLY_ON.get(b, d) == d]
    else:
        default = list(DEFAULT_ORDER)
        if cpu_first is not None and ONLY_ON.get(cpu_first, "cpu") == "cpu":
            if (cpu_first, "cpu") in default:
                default.remove((cpu_first, "cpu"))
            first_cpu = next(i for i, (_, d) in enumerate(default) if d == "cpu")
            default.insert(first_cpu, (cpu_first, "cpu"))
        order = [(b, d) for b, d in default if device in (None, d)]
    if not order:
        needs = "; ".join(f"the {b} backend needs --device {ONLY_ON[b]}" for b in dict.fromkeys(backends or ()))
        raise InputError(needs)
    return order


def open_backend(
    manifest: Manifest,
    candidates: Sequence[tuple[str, str]],
    precision: str = "fp32",
    threads: int | None = None,
    options: BackendOptions | None = None,
) -> Backend:
    """Open the first available candidate that takes every one of `options` (see
    runtime/backends/options.py); BackendUnavailable listing every reason if none opens."""
    reasons: list[str] = []
    kept = restrict(candidates, options)
    for name, device in kept:
        backend = create_backend(name, manifest, device, precision, threads, options)
        try:
            backend.open()
        except BackendUnavailable as exc:
            log.info("backend %s on %s unavailable (%s); trying the next one", name, device, exc)
            reasons.append(f"{name} on {device}: {exc}")
            continue
        if reasons:
            log.info("using backend %s on %s", name, device)
        return backend
    # Say why fewer backends were tried than asked for: the options left the others out.
    limited = ""
    if len(kept) < len(candidates):
        limited = f" (the backend options {', '.join(options or {})} apply there only)"
    if len(reasons) == 1:
        raise BackendUnavailable(reasons[0] + limited)
    raise BackendUnavailable("no backend could be opened: " + "; ".join(reasons) + limited)
