"""The engine key: which ONNX graph, built how, for which TensorRT and GPU (docs/ARCHITECTURE.md, "The manifest").

A TensorRT plan only runs on the TensorRT version and GPU it was built for, and only means
the graph and precision it was built from. The key is a short hash of all of that:

    ONNX sha256, precision descriptor, input shapes or profile, TensorRT version, GPU name,
    GPU compute capability

The builder names the plan `<graph>.<key>.plan` and records the key; the runtime recomputes it
with the TensorRT and GPU it finds and refuses (or rebuilds) on a mismatch, never loading a stale
engine. `EngineKeyInputs.mismatches` says which input changed. Pure stdlib: the runtime imports
this on a machine without TensorRT, torch or onnx.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

KEY_LENGTH = 16  # hex digits of sha256: 64 bits, plenty for a handful of engines per folder
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GRAPH = re.compile(r"^[A-Za-z0-9_\-]+$")

# A static shape is a list of ints; a profile entry is [min, opt, max], each a list of ints.
Shape = tuple[int, ...]
ShapeEntry = Shape | tuple[Shape, Shape, Shape]


def _canonical_shape(name: str, value: Any) -> list[int]:
    dims = list(value)
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise ValueError(f"shape of {name!r} must be a non-empty sequence of positive ints, got {value!r}")
    return dims


def canonical_shapes(shapes: Mapping[str, Any]) -> dict[str, Any]:
    """Shapes as plain, sorted JSON data: `name -> [dims]` (static) or `name -> [[min], [opt], [max]]`.

    A static shape and a profile whose min, opt and max are that shape are different engines
    (the profile engine accepts other shapes), so they give different keys.
    """
    if not shapes:
        raise ValueError("an engine key needs the input shapes or profile")
    out: dict[str, Any] = {}
    for name in sorted(shapes):
        value = shapes[name]
        items = list(value)
        if items and all(isinstance(item, Sequence) and not isinstance(item, str) for item in items):
            if len(items) != 3:
                raise ValueError(f"profile of {name!r} must be (min, opt, max), got {value!r}")
            out[name] = [_canonical_shape(name, item) for item in items]
        else:
            out[name] = _canonical_shape(name, items)
    return out


@dataclass(frozen=True)
class EngineKeyInputs:
    """Everything the key hashes; `to_dict` / `from_dict` let a manifest record it."""

    onnx_sha256: str
    precision: str  # the builder's precision descriptor, e.g. "fp16/fp16_weak/fp32=REDUCE,SOFTMAX"
    shapes: Mapping[str, Any]  # see canonical_shapes
    tensorrt_version: str  # tensorrt.__version__, in full: plans do not move between patch releases
    gpu_name: str
    compute_capability: tuple[int, int]

    def __post_init__(self) -> None:
        if not _SHA256.fullmatch(self.onnx_sha256):
            raise ValueError(f"onnx_sha256 must be 64 lower-case hex digits, got {self.onnx_sha256!r}")
        if not self.precision or not self.tensorrt_version or not self.gpu_name:
            raise ValueError("precision, tensorrt_version and gpu_name must be non-empty")
        cc = tuple(self.compute_capability)
        if len(cc) != 2 or not all(isinstance(v, int) and v >= 0 for v in cc):
            raise ValueError(f"compute_capability must be (major, minor), got {self.compute_capability!r}")
        object.__setattr__(self, "compute_capability", cc)
        object.__setattr__(self, "shapes", canonical_shapes(self.shapes))

    def canonical(self) -> str:
        """The exact text that is hashed (stable across Python versions and dict orders)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def key(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:KEY_LENGTH]

    def to_dict(self) -> dict[str, Any]:
        return {
            "onnx_sha256": self.onnx_sha256,
            "precision": self.precision,
            "shapes": canonical_shapes(self.shapes),
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": list(self.compute_capability),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineKeyInputs:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(names - set(data))
        if unknown or missing:
            raise ValueError(f"engine key inputs: unknown keys {unknown}, missing keys {missing}")
        values = dict(data)
        values["compute_capability"] = tuple(values["compute_capability"])
        return cls(**values)

    def mismatches(self, other: EngineKeyInputs) -> list[str]:
        """What differs between the inputs an engine was built with (self) and `other`, in words."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"{name}: built for {mine[name]!r}, now {theirs[name]!r}" for name in mine if mine[name] != theirs[name]
        ]


def engine_key(
    *,
    onnx_sha256: str,
    precision: str,
    shapes: Mapping[str, Any],
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
) -> str:
    """The short hash that names a plan; any change of any input changes it."""
    return EngineKeyInputs(
        onnx_sha256=onnx_sha256,
        precision=precision,
        shapes=shapes,
        tensorrt_version=tensorrt_version,
        gpu_name=gpu_name,
        compute_capability=compute_capability,
    ).key


def plan_filename(graph: str, key: str) -> str:
    """`<graph>.<key>.plan`, the file name under `<artifacts>/engines/`."""
    if not _GRAPH.fullmatch(graph):
        raise ValueError(f"graph name {graph!r} must be letters, digits, '_' or '-'")
    if not re.fullmatch(rf"[0-9a-f]{{{KEY_LENGTH}}}", key):
        raise ValueError(f"engine key must be {KEY_LENGTH} lower-case hex digits, got {key!r}")
    return f"{graph}.{key}.plan"
