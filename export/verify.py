"""Checks on exported graphs: onnx.checker, strict shape inference, parity with PyTorch.

Parity feeds every graph the inputs it really gets: a smooth random image with noise goes
through the PyTorch model stage by stage, and each graph (ONNX Runtime session and reloaded
torch.export program) is run on the recorded inputs of every stage it serves and compared to
the PyTorch output. The largest absolute error over all shapes and stages must stay within
the tolerance (1e-4 in FP32), or the build fails with an ExportError naming graph and shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from export.onnx_export import GraphPlan
from model.unfoldldm import UnfoldLDM
from runtime.errors import ExportError
from runtime.manifest import Parity


def check_onnx(path: Path, plan: GraphPlan) -> None:
    """onnx.checker (full check) and strict shape inference; inputs and outputs as planned."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)), check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{path}: ONNX check failed ({str(exc).strip().splitlines()[0]})") from exc
    elem = {"float32": onnx.TensorProto.FLOAT, "int64": onnx.TensorProto.INT64}
    for kind, values, specs in (
        ("input", proto.graph.input, plan.inputs),
        ("output", proto.graph.output, plan.outputs),
    ):
        if [v.name for v in values] != [s.name for s in specs]:
            raise ExportError(f"{path}: {kind} names {[v.name for v in values]}, expected {[s.name for s in specs]}")
        for value, spec in zip(values, specs, strict=True):
            tensor = value.type.tensor_type
            dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
            if tensor.elem_type != elem[spec.dtype] or dims != list(spec.shape):
                raise ExportError(
                    f"{path}: {kind} {spec.name!r} is {dims} (type {tensor.elem_type}), expected {list(spec.shape)}"
                )


@dataclass
class _Record:
    """The inputs one graph received at one stage of the reference run, and its output."""

    graph: str
    inputs: tuple[torch.Tensor, ...]
    output: torch.Tensor


def reference_image(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Smooth random content plus noise, in [0, 1]: closer to a photo than uniform noise."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, max(2, height // 8), max(2, width // 8), generator=gen)
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    return (smooth + 0.08 * torch.randn(batch, 3, height, width, generator=gen)).clamp(0, 1)


def _reference_run(model: UnfoldLDM, plans: Sequence[GraphPlan], y: torch.Tensor, noise: torch.Tensor) -> list[_Record]:
    by_stage: dict[tuple[str, int], str] = {(p.role, s): p.name for p in plans for s in p.stages}
    records: list[_Record] = []
    x = y
    with torch.no_grad():
        for k in range(model.config.stages):
            v = model.gradient_step(k, x, y)
            records.append(_Record(by_stage[("gradient", k + 1)], (x, y), v))
            stage = model.stage_tensor(k, y)
            z = model.prior_step(v, noise, stage)
            if ("prior", k + 1) in by_stage:
                records.append(_Record(by_stage[("prior", k + 1)], (v, noise, stage), z))
            x = model.proximal_step(k, v, z)
            records.append(_Record(by_stage[("proximal", k + 1)], (v, z), x))
    return records


def parity_check(
    model: UnfoldLDM,
    plans: Sequence[GraphPlan],
    onnx_files: dict[str, Path],
    program_files: dict[str, Path],
    shapes: Sequence[tuple[int, int, int]],
    noise: np.ndarray | None,
    tolerance: float = 1e-4,
    threads: int | None = None,
) -> dict[str, Parity]:
    """Max |ONNX Runtime - PyTorch| and |program - PyTorch| per graph over `shapes` (B, H, W)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.log_severity_level = 3
    sessions = {
        name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for name, path in onnx_files.items()
    }
    programs = {name: torch.export.load(str(path)).module() for name, path in program_files.items()}
    worst_ort = {p.name: 0.0 for p in plans}
    worst_prog: dict[str, float] = {name: 0.0 for name in programs}
    for i, (batch, height, width) in enumerate(shapes):
        y = reference_image(batch, height, width, seed=i)
        z_noise = (
            torch.zeros(batch, model.config.prior_dim) if noise is None else torch.from_numpy(noise).expand(batch, -1)
        )
        for record in _reference_run(model, plans, y, z_noise.contiguous()):
            session = sessions[record.graph]
            feeds = {s.name: t.numpy() for s, t in zip(session.get_inputs(), record.inputs, strict=True)}
            got = session.run(None, feeds)[0]
            err = float(np.abs(got - record.output.numpy()).max())
            worst_ort[record.graph] = max(worst_ort[record.graph], err)
            if err > tolerance:
                raise ExportError(
                    f"graph {record.graph!r}: ONNX Runtime differs from PyTorch by {err:.3g} (> {tolerance:g}) "
                    f"at batch {batch}, {height}x{width}"
                )
            if record.graph in programs:
                with torch.no_grad():
                    out = programs[record.graph](*record.inputs)
                err = float((out - record.output).abs().max())
                worst_prog[record.graph] = max(worst_prog[record.graph], err)
                if err > tolerance:
                    raise ExportError(
                        f"graph {record.graph!r}: the torch.export program differs from PyTorch by {err:.3g} "
                        f"(> {tolerance:g}) at batch {batch}, {height}x{width}"
                    )
    recorded = tuple((int(b), int(h), int(w)) for b, h, w in shapes)
    return {p.name: Parity(tolerance, worst_ort[p.name], worst_prog.get(p.name), recorded) for p in plans}
