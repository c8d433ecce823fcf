"""Export of every stage and the prior to ONNX and torch.export: opset, checks, parity, plans."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from export.artifacts_folder import claim_folder
from export.build import ExportOptions, build_artifacts, checkpoint_source
from export.onnx_export import check_opset, plan_graphs, written_opset
from export.verify import parity_check
from runtime.errors import ExportError
from runtime.manifest import MANIFEST_NAME, load_manifest
from runtime.pipeline import Pipeline, sampler_noise

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # a training job may share this machine


def _files(manifest, programs: bool = True) -> tuple[dict[str, Path], dict[str, Path]]:
    onnx_files = {name: manifest.graph_file(name) for name in manifest.graphs}
    program_files = {name: manifest.program_file(name) for name in manifest.graphs} if programs else {}
    return onnx_files, program_files


def test_every_graph_is_written_at_opset_17_with_dynamic_batch_height_width(tiny_export) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    assert manifest.opset == 17
    assert sorted(manifest.graphs) == ["prior", "stage1_gd", "stage1_prox", "stage2_gd", "stage2_prox"]
    for name, graph in manifest.graphs.items():
        path = manifest.graph_file(name)
        assert written_opset(path) == 17 and graph.opset == 17
        onnx.checker.check_model(str(path), full_check=True)
        proto = onnx.load(str(path))
        assert not list(path.parent.glob("*.data")), "weights must be inside the graph, not external data"
        for value, spec in zip(proto.graph.input, graph.inputs, strict=True):
            dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            assert value.name == spec.name and dims == list(spec.shape)
            assert dims[0] == "batch"
            if spec.name in ("x", "y", "v"):
                assert dims[2:] == ["height", "width"]
        assert manifest.program_file(name).is_file()


def test_torch_programs_carry_only_the_weights_their_graph_uses(tiny_export) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    wanted = {
        "stage1_gd": "model.gradient_steps.0.",
        "stage2_gd": "model.gradient_steps.1.",
        "stage1_prox": "model.proximal_steps.0.",
        "stage2_prox": "model.proximal_steps.1.",
        "prior": "model.prior.",
    }
    for name, prefix in wanted.items():
        state = torch.export.load(str(manifest.program_file(name))).state_dict
        assert state and all(key.startswith(prefix) for key in state), (name, sorted(state)[:3])
        assert not any("gt_encoder" in key for key in state)


def test_every_graph_matches_pytorch_up_to_512(tiny_export) -> None:
    """ONNX Runtime and the reloaded torch.export program against PyTorch, FP32, <= 1e-4."""
    manifest = load_manifest(tiny_export.artifacts)
    model = tiny_export.model
    multiple = manifest.pad_multiple
    shapes = [(1, 16, 16), (2, 34, 50), (1, 512, 512), (1, 512, 16 * multiple)]
    onnx_files, program_files = _files(manifest)
    result = parity_check(
        model, plan_graphs(model), onnx_files, program_files, shapes, sampler_noise(manifest), tolerance=1e-4, threads=1
    )
    assert sorted(result) == sorted(manifest.graphs)
    for name, parity in result.items():
        assert parity.onnxruntime_max_abs_error <= 1e-4, name
        assert parity.torch_program_max_abs_error is not None and parity.torch_program_max_abs_error <= 1e-4, name
        assert parity.shapes == tuple(shapes)
    # The build recorded its own parity run in the manifest.
    for graph in manifest.graphs.values():
        assert graph.parity is not None and graph.parity.onnxruntime_max_abs_error <= 1e-4


def test_a_graph_that_does_not_match_pytorch_fails_the_build(tiny_export) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    torch.manual_seed(123)
    other = type(tiny_export.model)(tiny_export.model.config).eval()  # same shapes, other weights
    onnx_files, _ = _files(manifest, programs=False)
    with pytest.raises(ExportError, match=r"graph 'stage1_gd': ONNX Runtime differs from PyTorch by .* at batch 1"):
        parity_check(other, plan_graphs(other), onnx_files, {}, [(1, 16, 16)], sampler_noise(manifest), threads=1)


def test_the_manifest_records_the_pipeline_check_at_an_odd_size(tiny_export) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    backends = {c.backend for c in manifest.pipeline_checks}
    assert backends == {"onnxruntime", "torch"}
    for check in manifest.pipeline_checks:
        _, h, w = check.shape
        assert h % manifest.pad_multiple and w % manifest.pad_multiple  # odd sizes: padding is exercised
        assert check.max_abs_error <= 1e-4


@pytest.mark.parametrize("opset", [16, 21])
def test_opsets_outside_the_supported_range_are_refused(opset: int) -> None:
    with pytest.raises(ExportError, match=f"opset {opset} is not supported"):
        check_opset(opset)


def test_opset_can_be_raised_and_is_checked_in_every_file(export_tiny, tmp_path: Path) -> None:
    model = export_tiny().model
    source = checkpoint_source(export_tiny().checkpoint, "phase2_joint", 0, False)
    options = ExportOptions(opset=18, torch_programs=False, parity_shapes=((1, 16, 16),), threads=1, progress=False)
    manifest = build_artifacts(model, source, tmp_path / "art", "tiny18", options)
    assert manifest.opset == 18
    assert {written_opset(manifest.graph_file(n)) for n in manifest.graphs} == {18}
    assert all(g.opset == 18 for g in manifest.graphs.values())


def test_shared_stage_weights_use_one_graph_pair_for_every_stage(export_tiny) -> None:
    exported = export_tiny(share_stage_weights=True, stages=3, prior_dim=8)
    manifest = load_manifest(exported.artifacts)
    assert sorted(manifest.graphs) == ["prior", "stage1_gd", "stage1_prox"]
    assert [(s.gradient, s.prior, s.proximal, s.prior_stage_index) for s in manifest.stages] == [
        ("stage1_gd", "prior", "stage1_prox", k) for k in range(3)
    ]
    assert manifest.graphs["stage1_gd"].stages == (1, 2, 3)
    _check_pipeline_matches_model(exported, manifest)


def test_a_model_without_prior_has_no_prior_graph(export_tiny) -> None:
    exported = export_tiny(use_prior=False)
    manifest = load_manifest(exported.artifacts)
    assert "prior" not in manifest.graphs and manifest.sampler is None
    assert all(s.prior is None for s in manifest.stages)
    _check_pipeline_matches_model(exported, manifest)


def _check_pipeline_matches_model(exported, manifest) -> None:
    rng = np.random.default_rng(0)
    frame = rng.random((20, 26, 3), dtype=np.float32)
    noise = sampler_noise(manifest)
    z_noise = torch.zeros(1, manifest.prior_dim) if noise is None else torch.from_numpy(noise)
    with torch.no_grad():
        y = torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1)))[None]
        expected = exported.model(y, z_noise).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    with Pipeline.from_manifest(exported.artifacts, backend="onnxruntime", device="cpu", threads=1) as pipeline:
        got = pipeline.restore(frame)
    assert np.abs(got - expected).max() <= 1e-4


def test_an_interrupted_build_leaves_no_manifest_and_no_temporary_files(
    tiny_export, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import export.build as build

    out = tmp_path / "art"
    claim_folder(out, [], allow_non_empty=False)  # a folder of ours, as an earlier build leaves it
    (out / "graphs").mkdir()
    (out / MANIFEST_NAME).write_text("{}")  # a manifest from an earlier build
    calls = {"n": 0}
    real = build.export_onnx

    def fail_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ExportError("simulated failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(build, "export_onnx", fail_on_third)
    source = checkpoint_source(tiny_export.checkpoint, "phase2_joint", 0, False)
    with pytest.raises(ExportError, match="simulated failure"):
        build_artifacts(tiny_export.model, source, out, "tiny", ExportOptions(torch_programs=False, progress=False))
    assert not (out / MANIFEST_NAME).exists()
    assert not [p for p in out.rglob(".*") if p.is_file()], "temporary files left behind"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env_threads = {"OMP_NUM_THREADS": "1"}
    import os

    return subprocess.run(
        [sys.executable, "export/build_engines.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **env_threads},
        timeout=600,
    )


def test_build_engines_cli_prepares_fp32_fp16_int8_and_says_why_no_engines(export_tiny, tmp_path: Path) -> None:
    exported = export_tiny()
    out = tmp_path / "cli_art"
    result = _cli(
        "--checkpoint",
        str(exported.checkpoint),
        "--name",
        "mine",
        "--out",
        str(out),
        "--no-torch-programs",
        "--check-size",
        "16x24",
        "--frames",
        "2",
        "--heldout-frames",
        "1",
        "--calibration-size",
        "48x32",
        "--threads",
        "1",
    )
    assert result.returncode == 0, result.stderr
    # Without -v: our lines and tables on stdout, progress bars on stderr, no library chatter.
    chatter = ("Collecting tensor data", "Finding optimal threshold", "Number of ", "WARNING", "INFO")
    assert not [line for line in result.stdout.splitlines() if line.startswith(chatter)], result.stdout
    bar = re.compile(r"[\w .-]+: .*\[\d+:\d\d")  # tqdm: "desc: ...[elapsed..."
    stray = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip() and not bar.match(line)]
    assert stray == []
    skipped = [line for line in result.stdout.splitlines() if line.startswith("TensorRT engines: skipped (")]
    assert len(skipped) == 1 and "ONNX Runtime artifacts" in skipped[0]
    manifest = load_manifest(out)
    assert manifest.name == "mine" and manifest.source.checkpoint == exported.checkpoint.name
    assert any("fp16" in g.variants for g in manifest.graphs.values())
    assert manifest.calibration is not None and (out / manifest.calibration.report.path).is_file()
    assert manifest.engines == ()
    # The CPU backends were timed for the default order (export/cpu_timing.py).
    assert manifest.cpu_timing is not None and manifest.cpu_timing.frame_ms["onnxruntime"] > 0


def test_build_engines_from_artifacts_needs_no_torch_and_says_what_is_missing(export_tiny) -> None:
    """The Jetson side: engines only, from the artifacts alone; here (no TensorRT) a one-line error."""
    artifacts = export_tiny().artifacts
    code = (
        "import sys; from export.build_engines import main; "
        f"rc = main(['--from-artifacts', {str(artifacts)!r}, '-q']); "
        "print('torch' in sys.modules, 'model.unfoldldm' in sys.modules, rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.stdout.split() == ["False", "False", "1"], result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "TensorRT" in line


def test_build_engines_cli_reports_errors_in_one_line(tmp_path: Path) -> None:
    result = _cli("--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "a"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.pt'}: checkpoint not found"]
    result = _cli("--checkpoint", str(tmp_path / "missing.pt"), "--opset", "16")
    assert result.returncode == 1 and result.stderr.startswith("error: opset 16 is not supported")
    assert not (tmp_path / "a" / MANIFEST_NAME).exists()
