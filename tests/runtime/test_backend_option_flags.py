"""--backend-option on the runtime CLIs: the option reaches the backend that opens, and an option
that cannot apply (a GPU-only one on the CPU) stops the tool in one line before any work."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime import benchmark, restore, tradeoffs, video_throughput
from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

GPU_ONLY = "backend option tensorrt_provider applies to onnxruntime on cuda only"


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[OnnxRuntimeBackend]:
    """Every ONNX Runtime backend the tools opened, once each, in order (not those that were unavailable)."""
    backends: list[OnnxRuntimeBackend] = []
    real_open = OnnxRuntimeBackend.open

    def spy(self: OnnxRuntimeBackend) -> OnnxRuntimeBackend:
        real_open(self)
        if self not in backends:  # `with backend:` opens an open backend again
            backends.append(self)
        return self

    monkeypatch.setattr(OnnxRuntimeBackend, "open", spy)
    return backends


def _image(path: Path) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    cv2.imwrite(str(path), pixels)
    return path


def test_restore_hands_io_binding_to_onnxruntime(tiny_export, tmp_path: Path, capsys, opened) -> None:
    source, target = _image(tmp_path / "in.png"), tmp_path / "out.png"
    argv = [str(source), "-o", str(target), "--artifacts", str(tiny_export.artifacts), "--backend", "onnxruntime"]
    assert restore.main([*argv, "--backend-option", "io_binding=on", "--threads", "1", "-q"]) == 0
    assert [(b.device, b.io_binding) for b in opened] == [("cpu", True)]
    assert target.is_file()


def test_restore_refuses_a_gpu_only_option_on_the_cpu(tiny_export, tmp_path: Path, capsys) -> None:
    source = _image(tmp_path / "in.png")
    argv = [str(source), "-o", str(tmp_path / "out.png"), "--artifacts", str(tiny_export.artifacts)]
    assert restore.main([*argv, "--device", "cpu", "--backend-option", "tensorrt_provider=on"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {GPU_ONLY};")
    assert not (tmp_path / "out.png").exists()
    assert restore.main([*argv, "--device", "cpu", "--backend-option", "check_finite=off"]) == 1
    assert "backend option check_finite applies to tensorrt on cuda only" in capsys.readouterr().err


def test_a_bad_value_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        restore.main(["in.png", "-o", "out.png", "--backend-option", "io_binding=maybe"])
    assert exit_info.value.code == 2
    assert "backend option io_binding='maybe': use on or off (auto|on|off)" in capsys.readouterr().err


@pytest.mark.parametrize("tool", [restore, benchmark, tradeoffs, video_throughput])
def test_help_lists_every_backend_option(tool, capsys) -> None:
    with pytest.raises(SystemExit):
        tool.main(["--help"])
    text = capsys.readouterr().out
    assert "--backend-option KEY=VALUE" in text
    for key in ("io_binding", "tensorrt_provider", "device_id", "cuda_library", "check_finite"):
        assert f"  {key}=" in text


def test_benchmark_runs_the_cells_that_take_the_option(tiny_export, tmp_path: Path, capsys, opened) -> None:
    out = tmp_path / "bench.json"
    argv = ["--artifacts", str(tiny_export.artifacts), "--backends", "onnxruntime,torch", "--sizes", "32x32"]
    argv += ["--warmup", "0", "--iters", "1", "--threads", "1", "--json", str(out), "-q"]
    assert benchmark.main([*argv, "--backend-option", "io_binding=on"]) == 0
    assert [b.io_binding for b in opened] == [True]
    assert "backend options: io_binding=True" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["settings"]["backend_options"] == {"io_binding": True}
    assert [(c["backend"], c["precision"]) for c in result["results"]] == [("onnxruntime", "auto")]
    torch_cells = [s for s in result["skipped"] if s["backend"] == "torch"]
    assert torch_cells and {s["reason"] for s in torch_cells} == {
        "backend option io_binding applies to onnxruntime on cpu or cuda only"
    }


def test_benchmark_with_only_gpu_options_on_the_cpu_measures_nothing(tiny_export, capsys) -> None:
    argv = ["--artifacts", str(tiny_export.artifacts), "--sizes", "32x32", "-q"]
    assert benchmark.main([*argv, "--backend-option", "tensorrt_provider=on"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == "error: every cell was skipped (reasons above): nothing was measured"
    assert GPU_ONLY in captured.out


def test_video_throughput_refuses_a_gpu_only_option_before_reading_the_clip(tiny_export, tmp_path, capsys) -> None:
    argv = ["--artifacts", str(tiny_export.artifacts), "--clip", str(tmp_path / "missing"), "-q"]
    assert video_throughput.main([*argv, "--backend-option", "tensorrt_provider=on"]) == 1
    assert capsys.readouterr().err.startswith(f"error: {GPU_ONLY};")


def test_tradeoffs_hands_the_options_to_its_pipeline(export_tiny, shared_data, tmp_path, capsys, opened) -> None:
    out = tmp_path / "tradeoffs.json"
    argv = ["--artifacts", str(export_tiny(stages=3).artifacts), "--image-count", "1", "--frames", "2"]
    argv += ["--size", "32x32", "--reuse", "0", "--threads", "1", "--json", str(out), "-q"]
    opened.clear()  # the export's own parity checks
    assert tradeoffs.main([*argv, "--backend-option", "io_binding=on"]) == 0
    assert [b.io_binding for b in opened] == [True]
    assert json.loads(out.read_text())["settings"]["backend_options"] == {"io_binding": True}
    assert tradeoffs.main([*argv, "--backend-option", "device_id=1"]) == 1
    assert "backend option device_id applies to onnxruntime on cuda only" in capsys.readouterr().err
