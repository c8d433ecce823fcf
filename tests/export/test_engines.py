"""export/engines.py: which engines an artifacts folder gets, and what happens without TensorRT.

Building real engines needs TensorRT and a GPU (the `tensorrt` tests in
tests/runtime/test_tensorrt_backend.py build and run them); the manifest bookkeeping of a build
is tested over the fake TensorRT in test_trt_builder.py.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from export.engines import DEFAULT_SIZES, SummaryRow, build_engines_for_artifacts, format_summary, plan_jobs
from runtime.errors import BackendUnavailable, InputError, ManifestError
from runtime.manifest import MANIFEST_NAME, Manifest, load_manifest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def manifest(export_tiny) -> Manifest:
    return load_manifest(export_tiny().artifacts, verify=False)


def test_one_static_engine_per_graph_in_use_and_size_padded_like_the_runtime(manifest: Manifest) -> None:
    jobs = plan_jobs(manifest, sizes=[(64, 64), (45, 70), (64, 64)])
    multiple = manifest.pad_multiple
    padded = (-(-45 // multiple) * multiple, -(-70 // multiple) * multiple)
    assert [(j.graph, j.label) for j in jobs] == [
        (g, label) for g in manifest.graphs_in_use() for label in ("64x64", f"{padded[0]}x{padded[1]}")
    ]
    prior = next(j for j in jobs if j.graph == "prior")
    prior_dim = manifest.prior_dim
    assert prior.options.input_shapes == {"v": (1, 3, 64, 64), "noise": (1, prior_dim), "stage": (1,)}
    assert prior.options.mode == "fp32" and prior.options.spatial_multiple == multiple
    assert all(j.variant == "fp32" for j in jobs)  # auto, and the manifest plans nothing else for TensorRT


def test_the_default_size_is_the_real_time_target(manifest: Manifest) -> None:
    jobs = plan_jobs(manifest)
    assert DEFAULT_SIZES == ((720, 1280),)
    assert {j.label for j in jobs} == {"720x1280"} and len(jobs) == len(manifest.graphs_in_use())


def test_a_dynamic_profile_covers_every_input_with_a_symbolic_dim(manifest: Manifest) -> None:
    (job, *_) = [j for j in plan_jobs(manifest, profile=((32, 32), (64, 64), (128, 256)), batch=2)
                 if j.graph == "prior"]  # fmt: skip
    assert job.label == "32x32..128x256" and not job.options.input_shapes
    profile = {name: rng.as_tuple() for name, rng in job.options.profile.items()}
    assert profile["v"] == ((2, 3, 32, 32), (2, 3, 64, 64), (2, 3, 128, 256))
    assert profile["stage"] == ((2,), (2,), (2,))  # batch is symbolic in the graph: fixed at 2 here


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(precision="bf16"), "unknown precision"),
        (dict(sizes=[(64, 64)], profile=((32, 32), (64, 64), (64, 64))), "not both"),
        (dict(sizes=[]), "no sizes"),
        (dict(sizes=[(0, 64)]), "must be positive"),
        (dict(sizes=[(1, 64)]), "smaller than the model multiple"),
        (dict(profile=((64, 64), (32, 32), (128, 128))), "min <= opt <= max"),
        (dict(batch=0), "batch must be >= 1"),
        (dict(dla_core=0), "DLA runs FP16 or INT8"),
        (dict(workspace_bytes=-1), "workspace_bytes"),
    ],
)
def test_bad_options_are_input_errors(manifest: Manifest, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        plan_jobs(manifest, **kwargs)


def test_fp16_engines_carry_the_converters_fp32_nodes(manifest: Manifest) -> None:
    def with_fp16(graph):  # an FP16 variant as the precision step records it (file not read here)
        fp16 = dataclasses.replace(graph.variants["fp32"], precision="fp16", kept_higher=("/x/Conv", "/x/Mul"))
        return dataclasses.replace(graph, variants={**graph.variants, "fp16": fp16})

    planned = dataclasses.replace(manifest, graphs={n: with_fp16(g) for n, g in manifest.graphs.items()})
    jobs = plan_jobs(planned, precision="fp16", sizes=[(64, 64)])
    assert jobs and all(j.options.fp32_nodes == ("/x/Conv", "/x/Mul") for j in jobs)
    assert all(j.options.fp32_nodes == () for j in plan_jobs(manifest, sizes=[(64, 64)]))  # fp32 engines


def test_int8_engines_carry_the_fp16_graphs_fp32_nodes_not_the_unquantized_ones(manifest: Manifest) -> None:
    """The INT8 graph is the FP16 graph with Q/DQ pairs: on TensorRT 8.6 its FP32 islands are
    pinned like the FP16 engine's; its own kept_higher (convolutions left unquantized) is not."""

    def with_variants(graph, fp16: bool):
        fp32 = graph.variants["fp32"]
        variants = {**graph.variants, "int8": dataclasses.replace(fp32, precision="int8", kept_higher=("/x/Conv",))}
        if fp16:
            variants["fp16"] = dataclasses.replace(fp32, precision="fp16", kept_higher=("/x/Softmax", "/x/Add"))
        return dataclasses.replace(graph, variants=variants)

    for fp16, pinned in ((True, ("/x/Softmax", "/x/Add")), (False, ())):
        graphs = {n: with_variants(g, fp16) for n, g in manifest.graphs.items()}
        jobs = plan_jobs(dataclasses.replace(manifest, graphs=graphs), precision="int8", sizes=[(64, 64)])
        assert jobs and all(j.variant == "int8" and j.options.fp32_nodes == pinned for j in jobs)


def test_a_precision_the_artifacts_lack_is_a_manifest_error(manifest: Manifest) -> None:
    with pytest.raises(ManifestError, match="no fp16 variant of graphs stage1_gd, prior, stage1_prox"):
        plan_jobs(manifest, precision="fp16")
    with pytest.raises(ManifestError, match="no int8 variant of graphs stage1_gd, prior, stage1_prox"):
        plan_jobs(manifest, precision="int8")  # never a quiet fp32 engine instead


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_without_tensorrt_it_says_so_in_one_line_and_writes_nothing(export_tiny, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    shutil.copytree(export_tiny().artifacts, root)
    before = _snapshot(root)
    with pytest.raises(BackendUnavailable) as info:
        build_engines_for_artifacts(root, sizes=[(64, 64)], progress=False)
    assert "TensorRT" in str(info.value) and "\n" not in str(info.value)
    assert _snapshot(root) == before and not (root / "engines").exists()
    with pytest.raises(InputError):  # options are checked before TensorRT is looked for
        build_engines_for_artifacts(root, sizes=[(0, 64)], progress=False)
    with pytest.raises(ManifestError, match="artifacts folder not found"):
        build_engines_for_artifacts(tmp_path / "nowhere", progress=False)
    assert (root / MANIFEST_NAME).read_bytes() == before[MANIFEST_NAME]


def test_the_module_imports_neither_torch_nor_model() -> None:
    code = (
        "import sys, export.engines\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'model', 'onnxruntime', 'tensorrt')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"


def test_the_summary_table() -> None:
    rows = [
        SummaryRow("stage1_gd", "fp16", "720x1280", 3_400_000, 41.2, Path("engines/a.plan"), "built"),
        SummaryRow("prior", "fp32", "720x1280", 1_000_000, 0.0, Path("engines/b.plan"), "kept"),
    ]
    lines = format_summary(rows).splitlines()
    assert lines[0].split() == ["graph", "precision", "shapes", "(HxW)", "size", "(MB)", "build", "(s)", "status"]
    assert lines[1].split() == ["stage1_gd", "fp16", "720x1280", "3.4", "41.2", "built"]
    assert lines[2].split() == ["prior", "fp32", "720x1280", "1.0", "0.0", "kept"]
    assert lines[3] == "2 engine(s), 4.4 MB, 41 s of building"
