"""The TensorRT backend: plan discovery, key checks, profile checks and errors (CPU), and real engines (tensorrt).

On a machine without TensorRT the `tensorrt` tests skip; everything above them runs here: it is
the backend's own logic over real manifests (a tiny exported model), with engine records as
`export/engines.py` writes them. Nothing here stands in for TensorRT executing an engine.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from runtime.backends.tensorrt_backend import (
    TensorRTBackend,
    covers,
    engines_for,
    key_mismatches,
    rebuild_command,
    select_profile,
    usable_engines,
)
from runtime.engine_key import EngineKeyInputs
from runtime.errors import BackendUnavailable, EngineBuildError, InferenceError, ManifestError, ShapeError
from runtime.gpu_info import GpuInfo
from runtime.manifest import Engine, FileRef, Manifest, load_manifest, save_manifest, sha256_file
from runtime.pipeline import Pipeline, sampler_noise
from tests.runtime.engine_records import engine_record

ORIN = GpuInfo("Orin (nvgpu)", (8, 7), "test")
TRT = "10.3.0.30"


def _record(manifest: Manifest, graph: str, *, version: str = TRT, gpu: GpuInfo = ORIN, size=(64, 64)) -> Engine:
    """An engine record as export/engines.py writes it, for a static fp32 engine at `size`."""
    return engine_record(manifest, graph, version=version, gpu=gpu, size=size)


@pytest.fixture(scope="module")
def manifest(export_tiny) -> Manifest:
    return load_manifest(export_tiny().artifacts, verify=False)


# ------------------------------------------------------------------ plan discovery


def test_engines_are_found_per_graph_and_precision_through_a_saved_manifest(
    export_tiny, manifest: Manifest, tmp_path: Path
) -> None:
    root = tmp_path / "artifacts"
    shutil.copytree(export_tiny().artifacts, root)
    graph = manifest.graphs_in_use()[0]
    record = _record(manifest, graph)
    plan = root / record.plan.path
    plan.parent.mkdir()
    plan.write_bytes(b"a plan")
    record = dataclasses.replace(record, plan=FileRef(record.plan.path, sha256_file(plan)))
    save_manifest(dataclasses.replace(load_manifest(root), engines=(record,)), root)

    loaded = load_manifest(root)  # every sha256 checked, the plan's included
    assert engines_for(loaded, graph, "fp32") == [record]
    assert engines_for(loaded, graph, "fp16") == []
    assert usable_engines(loaded, graph, "fp32", TRT, ORIN) == [record]
    other = manifest.graphs_in_use()[1]
    with pytest.raises(BackendUnavailable, match=f"no fp32 TensorRT engine for graph '{other}'") as info:
        usable_engines(loaded, other, "fp32", TRT, ORIN)
    assert f"python export/build_engines.py --from-artifacts {root}" in str(info.value)


def test_a_record_whose_key_is_not_its_inputs_hash_is_refused(export_tiny, manifest: Manifest, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    shutil.copytree(export_tiny().artifacts, root)
    record = dataclasses.replace(_record(manifest, manifest.graphs_in_use()[0]), key="0123456789abcdef")
    with pytest.raises(ManifestError, match=r"engines\[0\].key: is not the hash of key_inputs"):
        save_manifest(dataclasses.replace(load_manifest(root), engines=(record,)), root)


# ------------------------------------------------------------------ key mismatches


def test_an_engine_built_here_for_this_graph_matches(manifest: Manifest) -> None:
    assert key_mismatches(manifest, _record(manifest, "prior"), TRT, ORIN) == []


@pytest.mark.parametrize(
    "version, gpu, expected",
    [
        ("10.13.0.35", ORIN, "tensorrt_version: built for '10.3.0.30', now '10.13.0.35'"),
        (TRT, GpuInfo("Jetson AGX Orin", (8, 7)), "gpu_name: built for 'Orin (nvgpu)', now 'Jetson AGX Orin'"),
        (TRT, GpuInfo("Orin (nvgpu)", (8, 6)), "compute_capability: built for [8, 7], now [8, 6]"),
    ],
)
def test_another_tensorrt_or_gpu_is_a_mismatch(manifest: Manifest, version: str, gpu: GpuInfo, expected: str) -> None:
    problems = key_mismatches(manifest, _record(manifest, "prior"), version, gpu)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_a_changed_onnx_graph_is_a_mismatch(manifest: Manifest) -> None:
    record = _record(manifest, "prior")
    graph = manifest.graph("prior")
    fp32 = graph.variants["fp32"]
    changed = dataclasses.replace(fp32, onnx=dataclasses.replace(fp32.onnx, sha256="f" * 64))
    edited = dataclasses.replace(
        manifest, graphs={**manifest.graphs, "prior": dataclasses.replace(graph, variants={"fp32": changed})}
    )
    (problem,) = key_mismatches(edited, record, TRT, ORIN)
    assert problem.startswith("onnx_sha256: built for") and "ffffffff" in problem


def test_stale_engines_are_never_loaded_and_the_error_gives_the_rebuild_command(manifest: Manifest) -> None:
    stale = dataclasses.replace(manifest, engines=(_record(manifest, "prior", version="8.6.2.3"),))
    with pytest.raises(EngineBuildError) as info:
        usable_engines(stale, "prior", "fp32", TRT, ORIN, requested="fp32")
    message = str(info.value)
    assert "graph 'prior' were built for another machine" in message
    assert "tensorrt_version: built for '8.6.2.3', now '10.3.0.30'" in message
    assert message.endswith(
        f"rebuild them here: python export/build_engines.py --from-artifacts {manifest.root} --precision fp32"
    )
    assert "\n" not in message


def test_an_engine_for_another_machine_is_skipped_when_one_for_this_machine_exists(manifest: Manifest) -> None:
    here, there = _record(manifest, "prior"), _record(manifest, "prior", gpu=GpuInfo("Other", (7, 2)))
    both = dataclasses.replace(manifest, engines=(there, here))
    assert usable_engines(both, "prior", "fp32", TRT, ORIN) == [here]


def test_a_record_without_key_inputs_cannot_be_trusted(manifest: Manifest) -> None:
    record = dataclasses.replace(_record(manifest, "prior"), key_inputs=None)
    assert key_mismatches(manifest, record, TRT, ORIN) == [
        "the manifest records no key inputs for it (built by an older build_engines.py)"
    ]


def test_rebuild_command_names_the_artifacts_and_precision(manifest: Manifest) -> None:
    assert rebuild_command(manifest) == f"python export/build_engines.py --from-artifacts {manifest.root}"
    assert rebuild_command(manifest, "int8").endswith(" --precision int8")


# ------------------------------------------------------------------ profiles and shapes

STATIC = {"x": ((1, 3, 64, 64), (1, 3, 64, 64)), "y": ((1, 3, 64, 64), (1, 3, 64, 64))}
DYNAMIC = {"x": ((1, 3, 32, 32), (1, 3, 256, 512)), "y": ((1, 3, 32, 32), (1, 3, 256, 512))}


def test_profile_coverage() -> None:
    assert covers(STATIC, {"x": (1, 3, 64, 64), "y": (1, 3, 64, 64)})
    assert not covers(STATIC, {"x": (1, 3, 64, 68), "y": (1, 3, 64, 68)})
    assert covers(DYNAMIC, {"x": (1, 3, 32, 512), "y": (1, 3, 32, 512)})
    assert not covers(DYNAMIC, {"x": (1, 3, 16, 64), "y": (1, 3, 16, 64)})  # below min
    assert not covers(DYNAMIC, {"x": (2, 3, 64, 64), "y": (2, 3, 64, 64)})  # batch outside
    assert not covers(DYNAMIC, {"x": (1, 3, 64), "y": (1, 3, 64)})  # rank
    assert not covers(DYNAMIC, {"x": (1, 3, 64, 64)})  # an input missing


def test_the_first_engine_that_takes_the_shape_is_chosen_and_none_is_a_shape_error() -> None:
    shapes = {"x": (1, 3, 128, 128), "y": (1, 3, 128, 128)}
    assert select_profile("stage1_gd", [STATIC, DYNAMIC], shapes) == 1
    assert select_profile("stage1_gd", [STATIC, DYNAMIC], {"x": (1, 3, 64, 64), "y": (1, 3, 64, 64)}) == 0
    with pytest.raises(ShapeError) as info:
        select_profile("stage1_gd", [STATIC], shapes, hint=": add --sizes")
    assert str(info.value) == (
        "graph 'stage1_gd': no TensorRT engine takes x [1, 3, 128, 128], y [1, 3, 128, 128] "
        "(engines here take: x [1, 3, 64, 64], y [1, 3, 64, 64]); build one for this size: add --sizes"
    )


# ------------------------------------------------------------------ availability here


def test_tensorrt_needs_cuda(manifest: Manifest) -> None:
    with pytest.raises(BackendUnavailable, match="TensorRT runs on NVIDIA GPUs only"):
        TensorRTBackend(manifest, device="cpu").open()


def test_without_tensorrt_the_backend_says_so_in_one_line(export_tiny) -> None:
    with pytest.raises(BackendUnavailable) as info:
        Pipeline.from_manifest(export_tiny().artifacts, backend="tensorrt")
    assert "TensorRT" in str(info.value) and "\n" not in str(info.value)


def test_the_backend_is_unusable_before_open(manifest: Manifest) -> None:
    backend = TensorRTBackend(manifest)
    with pytest.raises(BackendUnavailable, match="not open"):
        backend.upload(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(BackendUnavailable, match="not open"):
        backend.run("prior", {})


# ------------------------------------------------------------------ real engines (TensorRT + GPU)


@pytest.fixture(scope="module")
def built(export_tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's artifacts with real fp32 engines at 64x64 and 48x80 (H x W)."""
    from export.engines import build_engines_for_artifacts

    root = tmp_path_factory.mktemp("trt") / "artifacts"
    shutil.copytree(export_tiny().artifacts, root)
    build_engines_for_artifacts(root, precision="fp32", sizes=[(64, 64), (48, 80)], progress=False)
    return root


def _frames(n: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(1).random((n, h, w, 3), dtype=np.float32)


@pytest.mark.tensorrt
@pytest.mark.parametrize("library", ["auto", "torch"])
def test_engines_match_onnxruntime(built: Path, library: str) -> None:
    frames = _frames(1, 64, 64)
    with Pipeline.from_manifest(built, backend="onnxruntime", device="cpu", precision="fp32") as reference:
        expected = reference.restore_batch(frames)
    manifest = load_manifest(built)
    backend = TensorRTBackend(manifest, precision="fp32", cuda_library=library).open()
    with Pipeline(manifest, backend) as pipeline:
        got = pipeline.restore_batch(frames)
        assert np.abs(got - expected).max() < 1e-3  # TF32 is allowed in fp32 engines
        small = pipeline.restore_batch(_frames(1, 48, 80))  # the second static engine
        assert small.shape == (1, 48, 80, 3)
        with pytest.raises(ShapeError, match="no TensorRT engine takes"):
            pipeline.restore_batch(_frames(1, 96, 96))


@pytest.mark.tensorrt
def test_stage_outputs_stay_on_the_device_in_reused_buffers(built: Path) -> None:
    manifest = load_manifest(built)
    with TensorRTBackend(manifest, precision="fp32", cuda_library="torch") as backend:
        y = backend.upload(_frames(1, 64, 64).transpose(0, 3, 1, 2).copy())
        first = backend.run("stage1_gd", {"x": y, "y": y})["v"]
        second = backend.run("stage1_gd", {"x": y, "y": y})["v"]
        assert first.is_cuda and first.data_ptr() == second.data_ptr()


@pytest.mark.tensorrt
def test_a_whole_frame_cuda_graph_replays_the_pipeline(built: Path) -> None:
    manifest = load_manifest(built)
    backend = TensorRTBackend(manifest, precision="fp32", cuda_library="torch").open()
    pipeline = Pipeline(manifest, backend)
    noise = backend.upload(sampler_noise(manifest))
    index = {s.stage: backend.upload(np.array([s.prior_stage_index], np.int64)) for s in manifest.stages}

    def frame(inputs):  # the pipeline's stage loop: device work only
        x = y = inputs["y"]
        for stage in manifest.stages:
            v = backend.run(stage.gradient, {"x": x, "y": y})["v"]
            z = backend.run(stage.prior, {"v": v, "noise": noise, "stage": index[stage.stage]})["z"]
            x = backend.run(stage.proximal, {"v": v, "z": z})["x"]
        return {"x": x}

    a = _frames(1, 64, 64).transpose(0, 3, 1, 2).copy()
    b = np.ascontiguousarray(a[:, ::-1])
    graph = backend.frame_graph(frame, {"y": a})
    for y in (a, b, a):
        assert np.abs(graph({"y": y})["x"] - pipeline.run(y)).max() < 1e-5
    pipeline.close()


@pytest.mark.tensorrt
def test_a_stale_engine_is_refused_with_the_rebuild_command(built: Path, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    shutil.copytree(built, root)
    manifest = load_manifest(root)
    edited = []
    for record in manifest.engines:
        inputs = EngineKeyInputs.from_dict(record.key_inputs)
        inputs = dataclasses.replace(inputs, tensorrt_version="8.6.2.3")
        edited.append(dataclasses.replace(record, key=inputs.key, key_inputs=inputs.to_dict()))
    save_manifest(dataclasses.replace(manifest, engines=tuple(edited)), root)
    with pytest.raises(EngineBuildError, match="rebuild them here: python export/build_engines.py --from-artifacts"):
        Pipeline.from_manifest(root, backend="tensorrt", precision="fp32")


@pytest.mark.tensorrt
def test_a_corrupt_plan_is_a_clear_error(built: Path, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    shutil.copytree(built, root)
    plan = root / load_manifest(root).engines[0].plan.path
    plan.write_bytes(plan.read_bytes()[: plan.stat().st_size // 2])
    with pytest.raises(ManifestError, match="sha256 does not match"):  # the manifest check sees it first
        Pipeline.from_manifest(root, backend="tensorrt", precision="fp32")
    with pytest.raises(EngineBuildError, match="cannot load this engine"):  # TensorRT itself, unverified
        Pipeline.from_manifest(root, backend="tensorrt", precision="fp32", verify=False)


@pytest.mark.tensorrt
def test_nan_in_the_output_is_an_inference_error(built: Path) -> None:
    with Pipeline.from_manifest(built, backend="tensorrt", precision="fp32") as pipeline:
        frames = _frames(1, 64, 64)
        frames[0, 10, 10] = np.nan
        with pytest.raises(InferenceError, match="NaN or Inf"):
            pipeline.restore_batch(frames)
