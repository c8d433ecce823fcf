"""Backend options: parsed and checked, handed to the backend that has them, refused where none does."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from runtime.backends.options import check_backend_options, parse_backend_option, restrict
from runtime.backends.select import DEFAULT_ORDER, create_backend, open_backend
from runtime.errors import BackendUnavailable, InputError
from runtime.manifest import load_manifest
from runtime.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("io_binding=on", ("io_binding", True)),
        ("io-binding=OFF", ("io_binding", False)),
        ("io_binding=auto", ("io_binding", None)),
        ("tensorrt_provider=yes", ("tensorrt_provider", True)),
        ("device_id=1", ("device_id", 1)),
        ("cuda_library=torch", ("cuda_library", "torch")),
        ("check_finite=0", ("check_finite", False)),
    ],
)
def test_an_option_is_read_from_key_equals_value(text: str, expected: tuple) -> None:
    assert parse_backend_option(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("io_binding", "expected a backend option as KEY=VALUE"),
        ("=on", "expected a backend option as KEY=VALUE"),
        ("iobinding=on", "unknown backend option 'iobinding' (use one of io_binding, tensorrt_provider"),
        ("io_binding=maybe", "backend option io_binding='maybe': use on or off (auto|on|off)"),
        ("device_id=-1", "device_id='-1': use a device index >= 0"),
        ("cuda_library=cupy", "use one of auto, pycuda, torch"),
    ],
)
def test_a_bad_option_says_what_it_takes(text: str, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        parse_backend_option(text)


def test_library_callers_pass_python_values_or_text() -> None:
    assert check_backend_options({"io-binding": "on", "device_id": 2}) == {"io_binding": True, "device_id": 2}
    with pytest.raises(InputError, match="backend option device_id takes N, got True"):
        check_backend_options({"device_id": True})
    with pytest.raises(InputError, match="backend option check_finite takes on|off, got 1"):
        check_backend_options({"check_finite": 1})


def test_setting_an_option_keeps_only_the_candidates_it_applies_to() -> None:
    assert restrict(DEFAULT_ORDER, {}) == list(DEFAULT_ORDER)
    assert restrict(DEFAULT_ORDER, {"io_binding": True}) == [("onnxruntime", "cuda"), ("onnxruntime", "cpu")]
    assert restrict(DEFAULT_ORDER, {"check_finite": False}) == [("tensorrt", "cuda")]
    with pytest.raises(InputError) as caught:
        restrict([("onnxruntime", "cpu"), ("torch", "cpu")], {"tensorrt_provider": True})
    assert str(caught.value) == (
        "backend option tensorrt_provider applies to onnxruntime on cuda only; "
        "the backends asked for are onnxruntime on cpu, torch on cpu"
    )


def test_the_options_reach_the_constructors(tiny_export) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    ort = create_backend("onnxruntime", manifest, "cpu", options={"io_binding": True})
    assert isinstance(ort, OnnxRuntimeBackend) and ort.io_binding is True
    gpu = create_backend("onnxruntime", manifest, "cuda", options={"tensorrt_provider": True, "device_id": 1})
    assert gpu._providers()[:2] == [
        ("TensorrtExecutionProvider", {"device_id": 1}),
        ("CUDAExecutionProvider", {"device_id": 1}),
    ]
    # TensorRT is not opened here (no GPU needed): its constructor holds what opening uses.
    trt = create_backend("tensorrt", manifest, "cuda", options={"cuda_library": "torch", "check_finite": False})
    assert trt.cuda_library == "torch" and trt.check_finite is False
    with pytest.raises(InputError, match="backend option io_binding applies to onnxruntime on cpu or cuda only"):
        create_backend("torch", manifest, "cpu", options={"io_binding": True})


def test_io_binding_reaches_a_real_onnxruntime_session_on_the_cpu(tiny_export) -> None:
    frame = np.random.default_rng(0).random((20, 24, 3), dtype=np.float32)
    outputs = []
    for options in ({}, {"io_binding": True}):
        artifacts = tiny_export.artifacts
        with Pipeline.from_manifest(artifacts, "onnxruntime", "cpu", threads=1, backend_options=options) as p:
            assert p.backend.io_binding is bool(options)
            tensor = p.backend.upload(np.zeros((1, 3, 16, 16), np.float32))
            assert type(tensor).__name__ == ("OrtValue" if options else "ndarray")
            outputs.append(p.restore(frame))
    assert np.array_equal(outputs[0], outputs[1])


def test_a_gpu_only_option_on_the_cpu_fails_saying_why(tiny_export) -> None:
    with pytest.raises(InputError, match="tensorrt_provider applies to onnxruntime on cuda only"):
        Pipeline.from_manifest(tiny_export.artifacts, "onnxruntime", "cpu", backend_options={"tensorrt_provider": True})


@pytest.mark.skipif(
    "CUDAExecutionProvider" in onnxruntime.get_available_providers(), reason="ONNX Runtime can use CUDA here"
)
def test_a_gpu_only_option_is_not_dropped_for_the_cpu(tiny_export) -> None:
    """Without --device the option still rules out the CPU: no silent run without it."""
    manifest = load_manifest(tiny_export.artifacts)
    with pytest.raises(BackendUnavailable, match=r"onnxruntime on cuda: .*\(the backend options tensorrt_provider"):
        open_backend(manifest, [("onnxruntime", "cuda"), ("onnxruntime", "cpu")], options={"tensorrt_provider": True})


def test_the_core_never_imports_the_cli_layer() -> None:
    core = [REPO / "runtime" / "pipeline.py", REPO / "runtime" / "manifest.py"]
    core += sorted((REPO / "runtime" / "backends").glob("*.py"))
    for path in core:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            assert "runtime.cli" not in names, f"{path} imports the CLI layer"
