"""Backend options: the settings of one backend beyond the common ones (device, precision,
threads), by name, with the backend and devices each applies to.

`create_backend` hands them to the backend's constructor as keyword arguments. Setting an
option asks for a backend that has it: `restrict` keeps only the (backend, device) candidates
every set option applies to, so an option is never dropped on the way. Otherwise a fallback
could run the frame somewhere the option means nothing (ONNX Runtime's TensorRT provider asked
for, the CPU provider used) and the user would not know; instead, a GPU-only option on the CPU
is an error that says where the option applies.

Values arrive as text from the command line (`parse_backend_option`, "key=value") or as Python
values from library callers; both are checked here, and the key may be written with '-' or '_'.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.backends.cuda_device import LIBRARIES
from runtime.errors import InputError

# Set options by key, e.g. {"io_binding": True}; a key left out keeps the backend's default.
BackendOptions = Mapping[str, Any]

_ON = ("on", "true", "yes", "1")
_OFF = ("off", "false", "no", "0")


def _switch(text: str) -> bool:
    word = text.strip().lower()
    if word in _ON:
        return True
    if word in _OFF:
        return False
    raise ValueError("use on or off")


def _switch_or_auto(text: str) -> bool | None:
    return None if text.strip().lower() == "auto" else _switch(text)


def _device_index(text: str) -> int:
    try:
        index = int(text)
    except ValueError:
        index = -1
    if index < 0:
        raise ValueError("use a device index >= 0")
    return index


def _cuda_library(text: str) -> str:
    name = text.strip().lower()
    if name not in LIBRARIES:
        raise ValueError(f"use one of {', '.join(LIBRARIES)}")
    return name


@dataclass(frozen=True)
class BackendOption:
    """One option: its key (the constructor's keyword), where it applies, how its text reads."""

    key: str
    backend: str
    devices: tuple[str, ...]
    values: str  # what the text may be, for help texts ("on|off")
    parse: Callable[[str], Any]
    help: str
    python_type: type | tuple[type, ...]  # what a library caller may pass instead of text

    def applies_to(self, backend: str, device: str) -> bool:
        return backend == self.backend and device in self.devices

    @property
    def where(self) -> str:
        return f"{self.backend} on {' or '.join(self.devices)}"


OPTIONS: dict[str, BackendOption] = {
    o.key: o
    for o in (
        BackendOption(
            "io_binding", "onnxruntime", ("cpu", "cuda"), "auto|on|off", _switch_or_auto,
            "bind inputs and outputs as OrtValues on the device and run through IO binding, so stage outputs stay "
            "on the device between graphs; auto: on for CUDA, off for the CPU (on the CPU, 'on' runs the CUDA "
            "code path, to test it without a GPU) (default: auto)",
            (bool, type(None)),
        ),
        BackendOption(
            "tensorrt_provider", "onnxruntime", ("cuda",), "on|off", _switch,
            "put ONNX Runtime's TensorRT execution provider before its CUDA provider (needs onnxruntime-gpu with "
            "TensorRT; it builds its own engines on first use) (default: off)",
            bool,
        ),
        BackendOption(
            "device_id", "onnxruntime", ("cuda",), "N", _device_index,
            "CUDA device index for ONNX Runtime's providers (default: 0)",
            int,
        ),
        BackendOption(
            "cuda_library", "tensorrt", ("cuda",), "|".join(LIBRARIES), _cuda_library,
            "library for device buffers and the stream: pycuda, torch (needed for whole-frame CUDA graphs) or auto "
            "(pycuda when installed, else torch) (default: auto)",
            str,
        ),
        BackendOption(
            "check_finite", "tensorrt", ("cuda",), "on|off", _switch,
            "fail when a frame coming back from the GPU holds NaN or Inf (FP16/INT8 overflow); off saves that one "
            "pass over each output (default: on)",
            bool,
        ),
    )
}  # fmt: skip


def _option(key: str) -> BackendOption:
    option = OPTIONS.get(key.strip().replace("-", "_"))
    if option is None:
        raise InputError(f"unknown backend option {key!r} (use one of {', '.join(OPTIONS)})")
    return option


def parse_backend_option(text: str) -> tuple[str, Any]:
    """ "key=value" -> (key, value), the value checked and converted (InputError if it is not one)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"expected a backend option as KEY=VALUE, got {text!r}")
    option = _option(key)
    try:
        return option.key, option.parse(value)
    except ValueError as exc:
        raise InputError(f"backend option {option.key}={value!r}: {exc} ({option.values})") from exc


def check_backend_options(options: BackendOptions) -> dict[str, Any]:
    """The options with canonical keys; InputError for an unknown key or a value of the wrong type."""
    checked: dict[str, Any] = {}
    for key, value in options.items():
        option = _option(key)
        if isinstance(value, str):
            _, value = parse_backend_option(f"{option.key}={value}")
        elif (isinstance(value, bool) and option.python_type is int) or not isinstance(value, option.python_type):
            raise InputError(f"backend option {option.key} takes {option.values}, got {value!r}")
        checked[option.key] = value
    return checked


def unmet_options(options: BackendOptions, backend: str, device: str) -> list[str]:
    """Why `backend` on `device` cannot take these options, one line per option; [] when it can."""
    return [
        f"backend option {o.key} applies to {o.where} only"
        for o in map(_option, options)
        if not o.applies_to(backend, device)
    ]


def options_for(options: BackendOptions | None, backend: str, device: str) -> dict[str, Any]:
    """The constructor keywords of `backend` on `device`; InputError if an option does not apply."""
    checked = check_backend_options(options or {})
    unmet = unmet_options(checked, backend, device)
    if unmet:
        raise InputError("; ".join(unmet))
    return checked


def restrict(candidates: Sequence[tuple[str, str]], options: BackendOptions | None) -> list[tuple[str, str]]:
    """The candidates every set option applies to, in order; InputError naming the options when
    none is left (a GPU-only option with --device cpu, an ONNX Runtime option with --backend torch)."""
    if not options:
        return list(candidates)
    kept = [(b, d) for b, d in candidates if not unmet_options(options, b, d)]
    if not kept:
        tried = ", ".join(f"{b} on {d}" for b, d in candidates)
        reasons = "; ".join(dict.fromkeys(r for b, d in candidates for r in unmet_options(options, b, d)))
        raise InputError(f"{reasons}; the backends asked for are {tried}")
    return kept


def describe_options(options: Iterable[BackendOption] = OPTIONS.values(), width: int = 100) -> str:
    """Every option as help text: key=values and where it applies, then what it does, indented."""
    lines = []
    for o in options:
        lines.append(f"  {o.key}={o.values}  ({o.where})")
        lines += textwrap.wrap(o.help, width, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)
