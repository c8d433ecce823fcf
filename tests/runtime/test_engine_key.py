"""The engine key: stable for the same inputs, different when any input changes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.engine_key import KEY_LENGTH, EngineKeyInputs, canonical_shapes, engine_key, plan_filename

BASE = dict(
    onnx_sha256="ab" * 32,
    precision="fp16/fp16_weak/fp32=NORMALIZATION,REDUCE,SOFTMAX",
    shapes={"x": (1, 3, 256, 256), "noise": (1, 256)},
    tensorrt_version="10.3.0.30",
    gpu_name="Orin (nvgpu)",
    compute_capability=(8, 7),
)
# The key of BASE, written out: if the key's format changes, every engine already built is
# rebuilt (or refused), so the format changes on purpose only.
BASE_KEY = "4f7f333ea66df1cc"


def test_key_is_short_hex_and_the_same_from_both_entry_points() -> None:
    assert len(BASE_KEY) == KEY_LENGTH
    assert EngineKeyInputs(**BASE).key == BASE_KEY
    assert engine_key(**BASE) == BASE_KEY


def test_key_is_stable_across_processes_and_dict_orders() -> None:
    reordered = dict(BASE, shapes={"noise": [1, 256], "x": [1, 3, 256, 256]})
    assert engine_key(**reordered) == BASE_KEY
    code = (
        "from runtime.engine_key import engine_key\n"
        f"print(engine_key(**{BASE!r}))\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert out.stdout.strip() == BASE_KEY


@pytest.mark.parametrize(
    "field, value",
    [
        ("onnx_sha256", "ac" * 32),
        ("precision", "fp16/strongly_typed"),
        ("precision", "fp16/fp16_weak/fp32=NORMALIZATION,REDUCE,SOFTMAX/dla0+gpu"),
        ("shapes", {"x": (1, 3, 256, 320), "noise": (1, 256)}),
        ("shapes", {"x": (1, 3, 256, 256)}),
        ("shapes", {"x": ((1, 3, 256, 256),) * 3, "noise": (1, 256)}),  # a profile, even min = opt = max
        ("tensorrt_version", "10.3.0.31"),
        ("tensorrt_version", "8.6.2.3"),
        ("gpu_name", "NVIDIA GeForce RTX 4090"),
        ("compute_capability", (8, 6)),
        ("compute_capability", (9, 7)),
    ],
)
def test_changing_any_input_changes_the_key(field: str, value: object) -> None:
    changed = EngineKeyInputs(**dict(BASE, **{field: value}))
    assert changed.key != BASE_KEY
    assert changed.mismatches(EngineKeyInputs(**BASE))[0].startswith(f"{field}:")


def test_round_trip_and_mismatch_report() -> None:
    inputs = EngineKeyInputs(**BASE)
    again = EngineKeyInputs.from_dict(inputs.to_dict())
    assert again == inputs and again.key == BASE_KEY
    assert inputs.mismatches(again) == []
    here = dataclasses.replace(inputs, tensorrt_version="10.13.3.9", gpu_name="Thor")
    report = inputs.mismatches(here)
    assert [line.split(":")[0] for line in report] == ["tensorrt_version", "gpu_name"]
    assert "'10.3.0.30'" in report[0] and "'10.13.3.9'" in report[0]


@pytest.mark.parametrize(
    "data, message",
    [
        (dict(BASE, extra=1), "unknown keys"),
        ({k: v for k, v in BASE.items() if k != "gpu_name"}, "missing keys"),
    ],
)
def test_from_dict_rejects_unknown_and_missing_keys(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EngineKeyInputs.from_dict(data)


@pytest.mark.parametrize(
    "field, value",
    [
        ("onnx_sha256", "AB" * 32),
        ("onnx_sha256", "ab" * 31),
        ("precision", ""),
        ("shapes", {}),
        ("shapes", {"x": (1, 0, 4)}),
        ("shapes", {"x": ((1, 2), (1, 2))}),
        ("compute_capability", (8,)),
    ],
)
def test_bad_inputs_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError):
        EngineKeyInputs(**dict(BASE, **{field: value}))


def test_canonical_shapes_tells_static_from_profile() -> None:
    assert canonical_shapes({"b": (1, 2), "a": [(1, 2), (1, 3), (1, 4)]}) == {
        "a": [[1, 2], [1, 3], [1, 4]],
        "b": [1, 2],
    }


def test_plan_filename() -> None:
    assert plan_filename("stage1_gd", BASE_KEY) == f"stage1_gd.{BASE_KEY}.plan"
    with pytest.raises(ValueError):
        plan_filename("../x", BASE_KEY)
    with pytest.raises(ValueError):
        plan_filename("prior", "xyz")
