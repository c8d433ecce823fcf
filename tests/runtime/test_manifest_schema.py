"""runtime/manifest.py: schema validation, unknown keys, hashes, and errors that name file and field."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import numpy_helper

from runtime.errors import ManifestError
from runtime.manifest import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    load_manifest,
    manifest_from_dict,
    save_manifest,
    sha256_file,
)


@pytest.fixture()
def artifacts(tiny_export, tmp_path: Path) -> Path:
    """A private copy of the tiny artifacts (ONNX graphs only) that a test may damage."""
    out = tmp_path / "artifacts"
    (out / "graphs").mkdir(parents=True)
    data = json.loads((tiny_export.artifacts / MANIFEST_NAME).read_text())
    for graph in data["graphs"].values():
        graph["torch_program"] = None
        shutil.copy(tiny_export.artifacts / graph["variants"]["fp32"]["onnx"]["path"], out / "graphs")
    (out / MANIFEST_NAME).write_text(json.dumps(data))
    return out


def _raw(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST_NAME).read_text())


def _error(data: dict[str, Any], root: Path = Path(".")) -> str:
    with pytest.raises(ManifestError) as info:
        manifest_from_dict(data, root, "m.json")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_written_manifest_reads_back_identically(tiny_export, tmp_path: Path) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    assert manifest.root == tiny_export.artifacts
    assert manifest.schema_version == SCHEMA_VERSION and manifest.format == "unfoldldm-edge/artifacts"
    assert manifest.model_config["name"] == "tiny" and manifest.pad_multiple == 2
    assert manifest.sampler is not None and manifest.sampler.noise_shape == (1, manifest.prior_dim)
    assert manifest.sampler.steps == len(manifest.sampler.alpha_bars) == 4
    assert set(manifest.toolchain) >= {"python", "torch", "onnx", "onnxruntime", "numpy"}
    again = manifest_from_dict(json.loads(json.dumps(manifest.to_dict())), manifest.root)
    assert again == manifest
    assert [s.stage for s in manifest.stages] == [1, 2]


def test_the_manifest_path_itself_is_accepted(tiny_export) -> None:
    assert load_manifest(tiny_export.artifacts / MANIFEST_NAME).name == "tiny"


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d.update(extra=1), "field extra: unknown key"),
        (
            lambda d: d["graphs"]["stage1_gd"]["inputs"][0].update(layout="NHWC"),
            "field graphs.stage1_gd.inputs[0].layout: unknown key",
        ),
        (lambda d: d["sampler"].update(eta=0.0), "field sampler.eta: unknown key"),
        (lambda d: d.update(opset="17"), "field opset: expected an integer"),
        (lambda d: d.pop("pad_multiple"), "field pad_multiple: missing"),
        (lambda d: d["graphs"]["prior"]["inputs"][2].update(dtype="int32"), "field graphs.prior.inputs[2].dtype"),
        (
            lambda d: d["graphs"]["stage1_gd"]["variants"]["fp32"]["onnx"].update(path="../elsewhere.onnx"),
            "field graphs.stage1_gd.variants.fp32.onnx.path: must be a relative path inside the artifacts folder",
        ),
        (
            lambda d: d["graphs"]["stage1_gd"]["variants"]["fp32"]["onnx"].update(path="/etc/passwd"),
            "must be a relative path inside the artifacts folder",
        ),
        (
            lambda d: d["graphs"]["stage1_gd"]["variants"]["fp32"]["onnx"].update(sha256="abc"),
            "field graphs.stage1_gd.variants.fp32.onnx.sha256: must be 64 lower-case hex digits",
        ),
        (lambda d: d["stages"][1].update(gradient="stage7_gd"), "field stages[1].gradient: names graph 'stage7_gd'"),
        (lambda d: d["stages"][1].update(gradient="stage2_prox"), "has role 'proximal', not 'gradient'"),
        (lambda d: d["stages"][0].update(stage=2), "field stages[0].stage: stages must be numbered 1, 2"),
        (lambda d: d["graphs"]["stage1_gd"]["outputs"][0].update(name="out"), "field graphs.stage1_gd.outputs"),
        (lambda d: d["graphs"]["stage1_gd"].update(opset=18), "field graphs.stage1_gd.opset"),
        (lambda d: d["sampler"].update(noise_shape=[1, 3]), "field sampler.noise_shape"),
        (lambda d: d.update(min_size=15), "field min_size"),
        (
            lambda d: d["graphs"]["stage1_gd"]["variants"].update(fp16=d["graphs"]["stage1_gd"]["variants"]["fp32"]),
            "field graphs.stage1_gd.variants.fp16",
        ),
    ],
)
def test_schema_errors_name_the_field(tiny_export, edit, field: str) -> None:
    data = copy.deepcopy(_raw(tiny_export.artifacts))
    edit(data)
    message = _error(data)
    assert message.startswith("m.json: ")
    assert field in message


def test_another_schema_version_is_refused_with_a_clear_line(tiny_export) -> None:
    data = _raw(tiny_export.artifacts)
    data["schema_version"] = SCHEMA_VERSION + 1
    assert "field schema_version is 2, this runtime reads version 1" in _error(data)


def test_a_manifest_from_another_tool_is_refused(tiny_export) -> None:
    data = _raw(tiny_export.artifacts)
    data["format"] = "someone-else/model"
    assert "not an UnfoldLDM-Edge artifacts manifest" in _error(data)
    assert "not a JSON object" in _error([1, 2])  # type: ignore[arg-type]


def test_an_edited_graph_fails_the_hash_check_naming_file_and_field(artifacts: Path) -> None:
    path = artifacts / "graphs" / "stage1_prox.fp32.onnx"
    proto = onnx.load(str(path))
    weight = proto.graph.initializer[0]
    values = numpy_helper.to_array(weight).copy()
    values.flat[0] += 1.0
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    onnx.save(proto, str(path))
    with pytest.raises(ManifestError) as info:
        load_manifest(artifacts)
    message = str(info.value)
    assert message.startswith(f"{path}: sha256 does not match graphs.stage1_prox.variants.fp32.onnx.sha256")
    assert "re-run build_engines.py" in message
    load_manifest(artifacts, verify=False)  # the schema itself is still fine


def test_a_missing_graph_file_is_named(artifacts: Path) -> None:
    (artifacts / "graphs" / "prior.fp32.onnx").unlink()
    with pytest.raises(
        ManifestError, match=r"prior\.fp32\.onnx: missing \(named by graphs\.prior\.variants\.fp32\.onnx"
    ):
        load_manifest(artifacts)


def test_broken_json_and_missing_folders_are_clear(artifacts: Path, tmp_path: Path) -> None:
    (artifacts / MANIFEST_NAME).write_text('{"format": ')
    with pytest.raises(ManifestError, match=r"manifest.json: not valid JSON \(line 1"):
        load_manifest(artifacts)
    with pytest.raises(ManifestError, match="artifacts folder not found"):
        load_manifest(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match=r"no manifest.json here \(run export/build_engines.py"):
        load_manifest(tmp_path / "empty")


def test_save_refuses_an_invalid_manifest_and_writes_atomically(tiny_export, tmp_path: Path) -> None:
    import dataclasses

    manifest = load_manifest(tiny_export.artifacts)
    target = save_manifest(manifest, tmp_path)
    assert json.loads(target.read_text()) == manifest.to_dict()
    broken = dataclasses.replace(manifest, pad_multiple=0)
    with pytest.raises(ManifestError, match="field pad_multiple"):
        save_manifest(broken, tmp_path / "other")
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_NAME]


def test_sha256_file_matches_the_manifest(tiny_export) -> None:
    manifest = load_manifest(tiny_export.artifacts)
    for name, graph in manifest.graphs.items():
        assert sha256_file(manifest.graph_file(name)) == graph.variants["fp32"].onnx.sha256
