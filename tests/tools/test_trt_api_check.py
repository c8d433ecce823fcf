"""A wrong TensorRT call fails CI here, where TensorRT cannot run: tools/trt_api_check.py.

The check reads the `tensorrt-stubs` distribution; CI installs it with
`pip install --no-deps tensorrt-stubs==10.13.0.35.1`. Without it these tests skip with the
reason on a developer machine and fail when the environment variable CI is set.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from export.trt_builder import DEFAULT_FP32_LAYER_TYPES

REPO = Path(__file__).resolve().parents[2]


def load_checker() -> ModuleType:
    """tools/ is not a package: the checker is loaded from its file (registered under its name,
    which its dataclasses need)."""
    spec = importlib.util.spec_from_file_location("trt_api_check", REPO / "tools" / "trt_api_check.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


api = load_checker()
BUILDER = REPO / "export" / "trt_builder.py"
VERSION_MODULE = REPO / "runtime" / "trt_version.py"
BACKEND = REPO / "runtime" / "backends" / "tensorrt_backend.py"


@pytest.fixture(scope="module")
def index() -> api.StubIndex:
    try:
        return api.load_stub_index()
    except api.StubNotFound as exc:
        message = f"the TensorRT API check needs the stub: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def _mutate(source: Path, old: str, new: str) -> tuple[str, int]:
    """`source` with the first code occurrence of `old` replaced; returns (text, line number)."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        if old in line and not line.lstrip().startswith(("#", '"', "-", "`")):
            lines[number - 1] = line.replace(old, new, 1)
            return "".join(lines), number
    raise AssertionError(f"{old!r} is not in the code of {source}")


def _problems(index: api.StubIndex, source: str, path: str = "snippet.py") -> list[str]:
    return [str(p) for p in api.check_source(source, path, index).problems]


# ------------------------------------------------------------------------------ the stub


def test_stub_is_parsed_after_sanitising_only_broken_def_lines(index: api.StubIndex) -> None:
    # The shipped stub has a parameter named `in` and a non-default argument after a default one.
    assert 1 <= len(index.fixes) <= 10, index.fixes
    assert any("add_scale_nd" in fix for fix in index.fixes)
    for name in ("Builder", "IBuilderConfig", "INetworkDefinition", "OnnxParser", "ParserError", "Runtime",
                 "ICudaEngine", "IExecutionContext", "ITimingCache", "IOptimizationProfile", "BuilderFlag"):
        assert index.module[name].kind == "class", name
    assert index.module["__version__"].kind == "attribute"
    assert index.lookup("Builder", "create_network") == api.Member("method", "INetworkDefinition")
    assert index.lookup("OnnxParser", "num_errors").kind == "property"
    assert index.lookup("Logger", "WARNING") is not None  # inherited from ILogger
    assert index.lookup("BuilderFlag", "FP16") == api.Member("attribute", "BuilderFlag")


def test_sanitise_fixes_the_two_known_defects_and_keeps_return_types() -> None:
    text = (
        "class A:\n"
        "    def f(self, in: list[int], out: list[int]) -> B:\n"
        "        ...\n"
        "    def g(self, a: int = None, b: int) -> B:\n"
        "        ...\n"
        "class B:\n"
        "    x: int\n"
    )
    index = api.StubIndex(text)
    assert len(index.fixes) == 2
    assert index.lookup("A", "f") == api.Member("method", "B")
    assert index.lookup("A", "g") == api.Member("method", "B")


def test_sanitise_refuses_a_broken_line_that_is_not_a_def() -> None:
    with pytest.raises(SyntaxError, match="cannot be sanitised"):
        api.sanitise("class A:\n    x: = 1\n")


# ------------------------------------------------------------------- the project's modules


def test_the_project_tensorrt_modules_pass_the_check(index: api.StubIndex) -> None:
    reports, problems = api.check_project(REPO, index)
    assert problems == []
    checked = {r.path: r for r in reports}
    assert {"export/trt_builder.py", "runtime/trt_version.py"} <= set(checked)
    # Any TensorRT backend that imports tensorrt is found by the scan, whatever its name.
    for backend in sorted((REPO / "runtime" / "backends").glob("*tensorrt*.py")):
        if api.imports_tensorrt(__import__("ast").parse(backend.read_text(encoding="utf-8"))):
            assert f"runtime/backends/{backend.name}" in checked
    # The inference must really see the TensorRT objects: a check of nothing would pass too.
    assert checked["export/trt_builder.py"].verified >= 40, checked["export/trt_builder.py"].verified
    assert checked["runtime/trt_version.py"].verified >= 8


def test_the_tensorrt_backend_is_checked_call_by_call(index: api.StubIndex) -> None:
    report = api.check_files([BACKEND], index)[0]
    assert report.uses_tensorrt and report.problems == []
    # Runtime, deserialisation, IO tensors, profiles, contexts, bindings, execute_async_v3, logger.
    assert report.verified >= 25, report.verified
    # The engine builder for artifacts and the device machinery make no TensorRT call of their own.
    for module in ("export/engines.py", "runtime/backends/cuda_device.py"):
        tree = __import__("ast").parse((REPO / module).read_text(encoding="utf-8"))
        assert not api.imports_tensorrt(tree), module


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("context.execute_async_v3(", "context.execute_async_v2(", "class IExecutionContext has no 'execute_async_v2'"),
        ("context.set_tensor_address(", "context.set_tensor_adress(", "has no 'set_tensor_adress'"),
        ("context.set_input_shape(", "context.set_binding_shape(", "has no 'set_binding_shape'"),
        ("engine.get_tensor_profile_shape(", "engine.get_profile_shape(", "ICudaEngine has no 'get_profile_shape'"),
        ("trt.TensorIOMode.INPUT", "trt.TensorIOMode.INPUTS", "class TensorIOMode has no 'INPUTS'"),
        ("runtime.deserialize_cuda_engine(", "runtime.deserialize_engine(", "class Runtime has no"),
        ("range(engine.num_io_tensors)", "range(engine.num_io_tensors())", "num_io_tensors is a property"),
        ("trt_module.Runtime(", "trt_module.IRuntime(", "module tensorrt has no 'IRuntime'"),
    ],
)
def test_a_wrong_call_in_the_tensorrt_backend_fails(index: api.StubIndex, old: str, new: str, expected: str) -> None:
    text, line = _mutate(BACKEND, old, new)
    problems = _problems(index, text, "runtime/backends/tensorrt_backend.py")
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"runtime/backends/tensorrt_backend.py:{line}:") and expected in problems[0]


def test_a_misspelt_trt_name_fails_with_file_line_and_name(index: api.StubIndex) -> None:
    text, line = _mutate(BUILDER, "trt.BuilderFlag.FP16", "trt.BuilderFlag.FP61")
    problems = _problems(index, text, "export/trt_builder.py")
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"export/trt_builder.py:{line}:")
    assert "trt.BuilderFlag.FP61" in problems[0] and "'FP61'" in problems[0]


def test_a_misspelt_method_fails_with_file_line_and_name(index: api.StubIndex) -> None:
    text, line = _mutate(BUILDER, "builder.create_network(", "builder.create_netwrk(")
    problems = _problems(index, text, "export/trt_builder.py")
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"export/trt_builder.py:{line}:")
    assert "builder.create_netwrk" in problems[0] and "class Builder" in problems[0]


def test_a_misspelt_file_on_disk_is_named_by_its_path(index: api.StubIndex, tmp_path: Path) -> None:
    text, line = _mutate(VERSION_MODULE, "engine.device_memory_size_v2", "engine.device_memory_size_2")
    copy = tmp_path / "trt_version.py"
    copy.write_text(text, encoding="utf-8")
    problems = [str(p) for r in api.check_files([copy], index) for p in r.problems]
    assert any(p.startswith(f"{copy}:{line}:") and "'device_memory_size_2'" in p for p in problems), problems


def test_calling_a_property_fails(index: api.StubIndex) -> None:
    text, line = _mutate(BUILDER, "range(parser.num_errors)", "range(parser.num_errors())")
    problems = _problems(index, text, "export/trt_builder.py")
    assert len(problems) == 1 and problems[0].startswith(f"export/trt_builder.py:{line}:"), problems
    assert "num_errors is a property" in problems[0]


def test_an_allow_listed_8_6_call_fails_outside_the_version_module(index: api.StubIndex) -> None:
    problems = _problems(index, VERSION_MODULE.read_text(encoding="utf-8"), "runtime/backends/tensorrt_backend.py")
    assert any("context.device_memory" in p and "allowed only in runtime/trt_version.py" in p for p in problems)


@pytest.mark.parametrize(
    "code, expected",
    [
        ("config.set_flag(trt.BuilderFlag.FP16)", "removed in TensorRT 11"),
        ("builder.platform_has_fast_fp16", "use it nowhere"),
        ("network.get_layer(0).precision = trt.float32", "removed in TensorRT 11"),
        ("context.set_device_memory(0, 0)", "not before TensorRT 10.1"),
        ("trt.ExecutionContextAllocationStrategy.USER_MANAGED", "not in TensorRT 8.6"),
    ],
)
def test_names_missing_from_another_supported_version_are_confined(
    index: api.StubIndex, code: str, expected: str
) -> None:
    source = (
        "import tensorrt as trt\n"
        "def f(builder: trt.Builder, config: trt.IBuilderConfig, network: trt.INetworkDefinition,\n"
        "      context: trt.IExecutionContext):\n"
        f"    {code}\n"
    )
    problems = _problems(index, source, "runtime/backends/tensorrt_backend.py")
    assert len(problems) == 1 and expected in problems[0] and problems[0].startswith(
        "runtime/backends/tensorrt_backend.py:4:"), problems


def test_the_allow_list_is_small_documented_and_needed(index: api.StubIndex) -> None:
    assert len(api.ALLOW_LIST) <= 3
    for entry in api.ALLOW_LIST:
        assert len(entry.reason) > 40, entry
        assert entry.files and all((REPO / f).is_file() for f in entry.files), entry
    assert api.check_allow_list(index) == []  # every entry is really missing from the stub


def test_the_default_fp32_layer_types_are_layer_types(index: api.StubIndex) -> None:
    for name in DEFAULT_FP32_LAYER_TYPES:
        assert index.lookup("LayerType", name) is not None, name


# ------------------------------------------------------------------------- type inference

RUNTIME_SNIPPET = '''
import tensorrt as trt

class Engine:
    _runtime: trt.Runtime

    def open(self, data: bytes) -> None:
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        self._context = self._engine.create_execution_context()

    def names(self) -> list[str]:
        return [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]

    def run(self, stream: int) -> bool:
        return self._context.execute_async_v3(stream)
'''


def test_a_correct_runtime_snippet_passes(index: api.StubIndex) -> None:
    report = api.check_source(RUNTIME_SNIPPET, "snippet.py", index)
    assert report.problems == []
    assert report.verified >= 8


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("execute_async_v3(stream)", "execute_async_v2(stream)", "class IExecutionContext has no 'execute_async_v2'"),
        ("get_tensor_name(i)", "get_binding_name(i)", "class ICudaEngine has no 'get_binding_name'"),
        ("trt.Logger.WARNING", "trt.Logger.WARN", "class Logger has no 'WARN'"),
        ("self._engine.num_io_tensors", "self._engine.num_io_tensors()", "num_io_tensors is a property"),
        ("_runtime: trt.Runtime", "_runtime: trt.Runtim", "module tensorrt has no 'Runtim'"),
        ("deserialize_cuda_engine(data)", "deserialise_cuda_engine(data)", "class Runtime has no"),
    ],
)
def test_mistakes_in_a_runtime_snippet_are_found(index: api.StubIndex, old: str, new: str, expected: str) -> None:
    assert old in RUNTIME_SNIPPET
    problems = _problems(index, RUNTIME_SNIPPET.replace(old, new, 1))
    assert len(problems) == 1 and expected in problems[0], problems
    line = next(n for n, text in enumerate(RUNTIME_SNIPPET.replace(old, new, 1).splitlines(), 1) if new in text)
    assert problems[0].startswith(f"snippet.py:{line}:")


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from tensorrt import Buildr\n", "module tensorrt has no 'Buildr'"),
        ("import tensorrt\nx = tensorrt.DataType.FLOT\n", "class DataType has no 'FLOT'"),
        ("import tensorrt as trt\ndef f(b: trt.Builder):\n    with b.create_builder_config() as c:\n"
         "        c.set_memory_pool_limt(trt.MemoryPoolType.WORKSPACE, 1)\n", "has no 'set_memory_pool_limt'"),
        ("import tensorrt as trt\ndef f(n: 'trt.INetworkDefinition | None'):\n    n.get_layr(0)\n",
         "class INetworkDefinition has no 'get_layr'"),
        ("import tensorrt as trt\ndef f(n: trt.INetworkDefinition):\n"
         "    layers = [n.get_layer(i) for i in range(n.num_layers)]\n    for layer in layers:\n"
         "        layer.precison = trt.float32\n", "class ILayer has no 'precison'"),
        ("from runtime.trt_version import import_tensorrt\ntrt = import_tensorrt()\nb = trt.Buildr\n",
         "module tensorrt has no 'Buildr'"),
    ],
)
def test_names_are_checked_through_imports_annotations_and_loops(
    index: api.StubIndex, source: str, expected: str
) -> None:
    problems = _problems(index, source)
    assert len(problems) == 1 and expected in problems[0], problems


def test_modules_that_do_not_import_tensorrt_are_not_checked(index: api.StubIndex) -> None:
    report = api.check_source("trt = object()\ntrt.Buildr\n", "other.py", index)
    assert report.problems == [] and not report.uses_tensorrt


# -------------------------------------------------------------------------------- the CLI


def test_the_cli_runs_as_a_file_from_the_repository_root(index: api.StubIndex) -> None:
    result = subprocess.run([sys.executable, "tools/trt_api_check.py", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("usage:"), result.stderr
    result = subprocess.run([sys.executable, "tools/trt_api_check.py"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 problem(s)" in result.stderr
