"""The TensorRT capability table and the version-dependent calls, without TensorRT."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from runtime import trt_version
from runtime.errors import BackendUnavailable
from runtime.trt_version import capabilities, parse_version

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "version, expected",
    [
        ("8.6.2.3", (8, 6)),  # JetPack 6.0
        ("10.3.0.30", (10, 3)),  # JetPack 6.1 / 6.2
        ("10.13.3.9", (10, 13)),  # JetPack 7, desktop
        ("11.0.0.114", (11, 0)),
        ("10.13", (10, 13)),
        ("10.13.0.35+cuda12.9", (10, 13)),
    ],
)
def test_parse_version(version: str, expected: tuple[int, int]) -> None:
    assert parse_version(version) == expected


@pytest.mark.parametrize("version", ["", "ten", "10", "v10.3"])
def test_unparsable_versions_are_refused(version: str) -> None:
    with pytest.raises(ValueError):
        parse_version(version)
    with pytest.raises(BackendUnavailable):
        capabilities(version)


# version: (weakly typed, strongly typed, strongly typed by default, EXPLICIT_BATCH, INT8 flag
#           for Q/DQ, ParserError.node_name, USER_MANAGED strategy, set_device_memory)
TABLE = {
    "8.6.2.3": (True, False, False, True, True, False, False, False),
    "10.0.1.6": (True, True, False, False, False, False, True, False),
    "10.3.0.30": (True, True, False, False, False, True, True, True),
    "10.13.3.9": (True, True, False, False, False, True, True, True),
    "11.0.0.114": (False, True, True, False, False, True, True, True),
}


@pytest.mark.parametrize("version", list(TABLE))
def test_capability_table(version: str) -> None:
    caps = capabilities(version)
    got = (
        caps.weakly_typed,
        caps.strongly_typed,
        caps.strongly_typed_by_default,
        caps.needs_explicit_batch,
        caps.qdq_needs_int8_flag,
        caps.parser_error_has_node_name,
        caps.user_managed_context_strategy,
        caps.device_memory_v2,
    )
    assert got == TABLE[version]
    assert caps.version == version and caps.version_tuple == parse_version(version)
    assert version in caps.describe()


@pytest.mark.parametrize("version", ["8.5.2.2", "8.4.1.5", "7.1.3"])
def test_versions_before_8_6_are_unavailable(version: str) -> None:
    with pytest.raises(BackendUnavailable, match="8.6"):
        capabilities(version)


def test_every_supported_version_has_one_int8_path_and_some_fp16_path() -> None:
    for version in TABLE:
        caps = capabilities(version)
        assert caps.weakly_typed or caps.strongly_typed  # FP16 one way or the other
        assert caps.strongly_typed or caps.qdq_needs_int8_flag  # Q/DQ INT8 on every version


def test_detect_without_tensorrt_says_why() -> None:
    try:
        import tensorrt

        real = hasattr(tensorrt, "Builder")
    except ImportError:
        real = False
    if real:
        pytest.skip("TensorRT is installed here")
    trt_version.detect.cache_clear()
    try:
        with pytest.raises(BackendUnavailable, match="(not installed|only the TensorRT type stubs)"):
            trt_version.detect()
    finally:
        trt_version.detect.cache_clear()


def test_nothing_imports_tensorrt_at_module_import_time() -> None:
    code = (
        "import sys\n"
        "import runtime.trt_version, runtime.engine_key, runtime.gpu_info, export.trt_builder\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorrt', 'pycuda', 'cuda', 'torch', 'onnx'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


# ----------------------------------------------------------- version-dependent calls (fake)


class _Flag:
    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    fake = types.ModuleType("tensorrt")
    fake.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=_Flag(0), STRONGLY_TYPED=_Flag(1))
    fake.ExecutionContextAllocationStrategy = types.SimpleNamespace(USER_MANAGED="user-managed")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


@pytest.mark.parametrize(
    "version, strongly_typed, flags",
    [
        ("8.6.2.3", False, 1),  # EXPLICIT_BATCH
        ("10.3.0.30", False, 0),
        ("10.3.0.30", True, 2),  # STRONGLY_TYPED
        ("11.0.0.114", True, 0),  # strongly typed by default
    ],
)
def test_network_creation_flags(fake_trt: types.ModuleType, version: str, strongly_typed: bool, flags: int) -> None:
    assert trt_version.network_creation_flags(capabilities(version), strongly_typed) == flags


@pytest.mark.parametrize("version, strongly_typed", [("8.6.2.3", True), ("11.0.0.114", False)])
def test_network_creation_flags_refuse_what_a_version_lacks(
    fake_trt: types.ModuleType, version: str, strongly_typed: bool
) -> None:
    with pytest.raises(BackendUnavailable):
        trt_version.network_creation_flags(capabilities(version), strongly_typed)


class _Engine:
    device_memory_size = 100
    device_memory_size_v2 = 120

    def create_execution_context(self, strategy: object = None) -> tuple[str, object]:
        return ("v10", strategy)

    def create_execution_context_without_device_memory(self) -> tuple[str, object]:
        return ("v8", None)


class _Context:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.device_memory = None

    def set_device_memory(self, address: int, size: int) -> None:
        self.calls.append((address, size))


def test_scratch_memory_calls_follow_the_version(fake_trt: types.ModuleType) -> None:
    old, new = capabilities("8.6.2.3"), capabilities("10.3.0.30")
    engine = _Engine()
    assert trt_version.create_context_without_memory(engine, old) == ("v8", None)
    assert trt_version.create_context_without_memory(engine, new) == ("v10", "user-managed")
    assert trt_version.context_memory_size(engine, old) == 100
    assert trt_version.context_memory_size(engine, new) == 120
    context = _Context()
    trt_version.set_context_memory(context, 4096, 100, old)
    assert context.device_memory == 4096 and context.calls == []
    trt_version.set_context_memory(context, 8192, 120, new)
    assert context.calls == [(8192, 120)]
