"""The one place that detects the TensorRT version and says what it can do.

Everything that differs between the TensorRT releases we support is decided here, from the
version string alone, so that the engine builder (`export/trt_builder.py`) and the TensorRT
backend agree and a test can check the table without TensorRT:

=====================  ==========  ===========================================================
target                 TensorRT    precision paths
=====================  ==========  ===========================================================
JetPack 6.0            8.6         weakly typed (FP16 flag + per-layer FP32 constraints);
                                   Q/DQ INT8 needs the INT8 builder flag; EXPLICIT_BATCH flag
JetPack 6.1 / 6.2      10.3        weakly typed, or strongly typed (STRONGLY_TYPED flag)
JetPack 7, desktop 10  10.13       as 10.3
desktop / JetPack 7    11.x        strongly typed only: precision lives in the ONNX graph
=====================  ==========  ===========================================================

Q/DQ INT8 works on every TensorRT >= 8.0, so there is one INT8 path (a Q/DQ graph). TensorRT
before 8.6 (JetPack 5) is out of scope and reported as unavailable.

This module lives in `runtime/` because the runtime may not import `export/` (the import
contracts of docs/ARCHITECTURE.md) and both need it. It never imports TensorRT at module import time: `detect()` does,
once. The helpers at the bottom wrap the few calls whose spelling differs between 8.6 and 10+;
the call that exists only in 8.6 (`context.device_memory = ...`) is on the allow-list of
`tools/trt_api_check.py`, which lets it appear in this file and nowhere else.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runtime.errors import BackendUnavailable

if TYPE_CHECKING:  # the stub (tensorrt-stubs) or the real module; never imported at run time here
    import tensorrt as trt

# The oldest TensorRT we support (JetPack 6.0) and the newest major we know the rules of.
MIN_VERSION = (8, 6)
KNOWN_MAJORS = (8, 10, 11)

_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?")


@dataclass(frozen=True)
class TrtCapabilities:
    """What one TensorRT version supports; derived from the version string by `capabilities`."""

    version: str  # as `tensorrt.__version__` spells it, e.g. "10.3.0.30"
    major: int
    minor: int
    # Weakly typed precision: BuilderFlag.FP16 / INT8 and per-layer precision constraints
    # (layer.precision, set_output_type, OBEY_PRECISION_CONSTRAINTS). Removed in TensorRT 11.
    weakly_typed: bool
    # Strongly typed networks: every tensor type comes from the graph (Cast, Q/DQ, FP16 weights).
    strongly_typed: bool
    # TensorRT 11+: every network is strongly typed; no creation flag is needed.
    strongly_typed_by_default: bool
    # TensorRT 8.x: networks must be created with NetworkDefinitionCreationFlag.EXPLICIT_BATCH
    # (deprecated and ignored in 10, gone later).
    needs_explicit_batch: bool
    # TensorRT 8.x: a Q/DQ network is only quantized when BuilderFlag.INT8 is set (and FP16 lets
    # the float parts run in half precision). On 10+ the Q/DQ graph builds strongly typed.
    qdq_needs_int8_flag: bool
    # ParserError.node_name(): confirmed in the 10.2 API, absent from 8.x; 10.0 and 10.1 are
    # treated like 8.6 (the node index, and its name looked up in the ONNX file).
    parser_error_has_node_name: bool
    # ICudaEngine.create_execution_context(ExecutionContextAllocationStrategy.USER_MANAGED) (10.0+);
    # 8.6 has create_execution_context_without_device_memory().
    user_managed_context_strategy: bool
    # IExecutionContext.set_device_memory(address, size) and ICudaEngine.device_memory_size_v2
    # (10.1+); 8.6 and 10.0 assign `context.device_memory` and read `device_memory_size`.
    device_memory_v2: bool

    @property
    def version_tuple(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def describe(self) -> str:
        paths = []
        if self.weakly_typed:
            paths.append("weakly typed FP16")
        if self.strongly_typed:
            paths.append("strongly typed" + (" (always)" if self.strongly_typed_by_default else ""))
        return f"TensorRT {self.version}: {', '.join(paths)}; Q/DQ INT8"


def parse_version(version: str) -> tuple[int, int]:
    """`"10.3.0.30"` -> `(10, 3)`; a string that does not start with MAJOR.MINOR is a ValueError."""
    match = _VERSION.match(version)
    if match is None:
        raise ValueError(f"not a TensorRT version string: {version!r}")
    return int(match.group(1)), int(match.group(2))


def capabilities(version: str) -> TrtCapabilities:
    """The capability table for a TensorRT version string; BackendUnavailable below 8.6."""
    try:
        major, minor = parse_version(version)
    except ValueError as exc:
        raise BackendUnavailable(str(exc)) from exc
    if (major, minor) < MIN_VERSION:
        raise BackendUnavailable(
            f"TensorRT {version} is too old: TensorRT 8.6 (JetPack 6.0) or newer is needed "
            "(JetPack 5 / TensorRT 8.5 is out of scope)"
        )
    # Majors after 11 are assumed to keep 11's rules (strong typing only); 9.x was never a
    # public GA release for our targets and is treated like 8.6 (weak typing, explicit batch).
    modern = major >= 10
    return TrtCapabilities(
        version=version.strip(),
        major=major,
        minor=minor,
        weakly_typed=major < 11,
        strongly_typed=modern,
        strongly_typed_by_default=major >= 11,
        needs_explicit_batch=not modern,
        qdq_needs_int8_flag=not modern,
        parser_error_has_node_name=(major, minor) >= (10, 2),
        user_managed_context_strategy=modern,
        device_memory_v2=(major, minor) >= (10, 1),
    )


def import_tensorrt() -> Any:
    """Import the real `tensorrt` module, or raise BackendUnavailable saying why not.

    `pip install tensorrt-stubs` creates a `tensorrt/` folder with only `.pyi` files, which
    Python imports as an empty namespace package: that is reported as "not installed", not as a
    TensorRT without a version.
    """
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailable(
            f"TensorRT is not installed ({exc}); on Jetson use JetPack's python3-libnvinfer in a "
            "--system-site-packages virtualenv, on a desktop `pip install tensorrt`"
        ) from exc
    if getattr(tensorrt, "__file__", None) is None or not hasattr(tensorrt, "Builder"):
        raise BackendUnavailable(
            "only the TensorRT type stubs (tensorrt-stubs) are installed here, not TensorRT itself"
        )
    return tensorrt


@functools.cache
def detect() -> TrtCapabilities:
    """Import TensorRT once and return its capabilities (cached for the process)."""
    tensorrt = import_tensorrt()
    return capabilities(str(tensorrt.__version__))


# ---------------------------------------------------------------------------------------------
# Calls whose spelling differs between TensorRT 8.6 and 10+. Every branch is chosen from the
# capability table, never by catching AttributeError, so the API check sees each call.


def network_creation_flags(caps: TrtCapabilities, strongly_typed: bool) -> int:
    """The `flags` argument of `builder.create_network` for this version and typing."""
    import tensorrt as trt

    if strongly_typed and not caps.strongly_typed:
        raise BackendUnavailable(f"TensorRT {caps.version} has no strongly typed networks (10.0 or newer needed)")
    if not strongly_typed and not caps.weakly_typed:
        raise BackendUnavailable(f"TensorRT {caps.version} builds strongly typed networks only")
    if caps.needs_explicit_batch:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strongly_typed and not caps.strongly_typed_by_default:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def create_context_without_memory(engine: trt.ICudaEngine, caps: TrtCapabilities) -> trt.IExecutionContext:
    """An execution context whose scratch memory the caller provides (one shared buffer)."""
    import tensorrt as trt

    if caps.user_managed_context_strategy:
        return engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
    return engine.create_execution_context_without_device_memory()


def context_memory_size(engine: trt.ICudaEngine, caps: TrtCapabilities) -> int:
    """Bytes of scratch memory a context of `engine` needs."""
    if caps.device_memory_v2:
        return int(engine.device_memory_size_v2)
    return int(engine.device_memory_size)


def set_context_memory(context: trt.IExecutionContext, address: int, size: int, caps: TrtCapabilities) -> None:
    """Give `context` the scratch memory at device `address` (at least `context_memory_size`)."""
    if caps.device_memory_v2:
        context.set_device_memory(address, size)
    else:
        # TensorRT 8.6 / 10.0: a write-only property; the 10.13 stub leaves it out (allow-listed).
        context.device_memory = address
