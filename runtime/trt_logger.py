"""The process's one TensorRT logger, shared by the engine builder and the runtime backend.

TensorRT keeps the first logger handed to a Builder, Runtime or Refitter for the whole process:
a later one is ignored with the warning "The logger passed into createInferRuntime differs from
one already provided ...", and every message goes to the first. With one logger per build and
one per backend, the errors of a runtime opened after a build would land in the builder's list
and the runtime's error messages would say "no message". Hence one logger, made on first use.

Messages are forwarded to `logging` (logger `runtime.trt_logger`) from `forward_severity` up, and
errors are kept per thread inside `collect_errors()` so that a failing call can quote them:

    logger = shared_logger()
    with logger.collect_errors() as errors:
        engine = runtime.deserialize_cuda_engine(data)
    if engine is None: raise ...(errors[-1] if errors else "no message")

TensorRT reports synchronously from the calling thread for the calls we quote (parse, build,
deserialize, execute), so a thread-local collector sees exactly its own call's errors.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from runtime.trt_version import import_tensorrt

log = logging.getLogger(__name__)

SEVERITIES = ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")
_LEVELS = {
    "INTERNAL_ERROR": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.INFO,
    "VERBOSE": logging.DEBUG,
}
_ERRORS = ("INTERNAL_ERROR", "ERROR")

_lock = threading.Lock()
_shared: Any = None


def shared_logger() -> Any:
    """The one TensorRT logger of this process (imports TensorRT on first call).

    BackendUnavailable when TensorRT is not installed (or only its type stub is).
    """
    global _shared
    with _lock:
        if _shared is None:
            import_tensorrt()  # BackendUnavailable when absent, or when only the type stub is installed
            import tensorrt as trt

            _shared = make_logger_class(trt.ILogger)()
        return _shared


def make_logger_class(base: type) -> type:
    """A logger class deriving from `trt.ILogger` (passed in: TensorRT is imported lazily)."""

    class SharedTrtLogger(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.forward_severity = "WARNING"
            self._local = threading.local()

        def log(self, severity: Any, msg: str) -> None:
            name = str(getattr(severity, "name", severity))
            if name in _ERRORS:
                for errors in getattr(self._local, "collectors", ()):
                    errors.append(msg)
            if name in SEVERITIES and SEVERITIES.index(name) <= SEVERITIES.index(self.forward_severity):
                log.log(_LEVELS[name], "TensorRT: %s", msg)

        @contextlib.contextmanager
        def collect_errors(self) -> Iterator[list[str]]:
            """The errors TensorRT reports from this thread while the block runs."""
            errors: list[str] = []
            collectors = self._local.__dict__.setdefault("collectors", [])
            collectors.append(errors)
            try:
                yield errors
            finally:
                collectors.remove(errors)

        @contextlib.contextmanager
        def forwarding(self, severity: str) -> Iterator[None]:
            """Forward messages from `severity` up to `logging` while the block runs (e.g. a build)."""
            if severity not in SEVERITIES:
                raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
            before, self.forward_severity = self.forward_severity, severity
            try:
                yield
            finally:
                self.forward_severity = before

    return SharedTrtLogger
