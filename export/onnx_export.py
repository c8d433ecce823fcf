"""Per-graph export of UnfoldLDM: ONNX files and torch.export programs.

Graphs (docs/ARCHITECTURE.md): per stage k the gradient half `stage{k}_gd` (x, y -> v) and the
proximal half `stage{k}_prox` (v, z -> x); between them the `prior` graph (v, noise, stage ->
z): condition encoder plus the whole T-step sampler, unrolled. Stages are numbered from 1 in
graph names; the prior's `stage` input takes the 0-based index. With `share_stage_weights`
one gd and one prox graph (named after stage 1) serve every stage; without a prior there is
no prior graph. The wrappers below only bind a stage index: all math stays in `model/`.

ONNX: the TorchScript exporter (`dynamo=False`): the dynamo exporter writes opset 18 whatever
is asked (above the 17 of `export/opsets.py`) and stores weights as external data. The opset
actually written is read back and must equal the one requested. Batch, height and width are
dynamic.

torch.export programs: dynamic batch (>= 1) and height/width declared as `pad_multiple * n`
with n >= min_size / pad_multiple. `min_size` (16 px, rounded up to the multiple) exists
because torch.export specialises sizes 0 and 1: three stride-2 convs of the prior encoder turn
anything up to 8 px into a size-1 map, and the decomposed grid of a frame only
`decomposed_scale` px high is one row. Declaring the range from 16 px removes those guards;
smaller frames are padded up to it by the pipeline.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from export.opsets import DEFAULT_OPSET, MAX_OPSET
from model.unfoldldm import UnfoldLDM
from runtime.atomic_io import atomic_target
from runtime.errors import ExportError
from runtime.manifest import BATCH, HEIGHT, ROLE_IO, WIDTH, TensorSpec

MIN_SIZE_PIXELS = 16


class GradientGraph(nn.Module):
    def __init__(self, model: UnfoldLDM, stage: int) -> None:
        super().__init__()
        self.model, self.stage = model, stage

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model.gradient_step(self.stage, x, y)


class PriorGraph(nn.Module):
    def __init__(self, model: UnfoldLDM) -> None:
        super().__init__()
        self.model = model

    def forward(self, v: torch.Tensor, noise: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
        return self.model.prior_step(v, noise, stage)


class ProximalGraph(nn.Module):
    def __init__(self, model: UnfoldLDM, stage: int) -> None:
        super().__init__()
        self.model, self.stage = model, stage

    def forward(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.model.proximal_step(self.stage, v, z)


@dataclass
class GraphPlan:
    """One graph to export: its name, role, the stages it serves (1-based) and its module."""

    name: str
    role: str
    stages: tuple[int, ...]
    module: nn.Module
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def min_size(multiple: int) -> int:
    return -(-MIN_SIZE_PIXELS // multiple) * multiple


def _specs(role: str, prior_dim: int) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    image = (BATCH, 3, HEIGHT, WIDTH)
    shapes = {
        "x": ("float32", image),
        "y": ("float32", image),
        "v": ("float32", image),
        "z": ("float32", (BATCH, prior_dim)),
        "noise": ("float32", (BATCH, prior_dim)),
        "stage": ("int64", (BATCH,)),
    }
    ins, outs = ROLE_IO[role]
    return (
        tuple(TensorSpec(n, shapes[n][0], shapes[n][1]) for n in ins),
        tuple(TensorSpec(n, shapes[n][0], shapes[n][1]) for n in outs),
    )


def plan_graphs(model: UnfoldLDM) -> list[GraphPlan]:
    """The graphs of `model`, in stage order (gd, prior, prox of stage 1 first)."""
    config = model.config
    stages = tuple(range(1, config.stages + 1))
    plans: list[GraphPlan] = []

    def add(name: str, role: str, served: tuple[int, ...], module: nn.Module) -> None:
        ins, outs = _specs(role, config.prior_dim)
        plans.append(GraphPlan(name, role, served, module.eval(), ins, outs))

    for k in stages:
        if config.share_stage_weights and k > 1:
            continue
        served = stages if config.share_stage_weights else (k,)
        add(f"stage{k}_gd", "gradient", served, GradientGraph(model, k - 1))
        if k == 1 and config.use_prior:
            add("prior", "prior", stages, PriorGraph(model))
        add(f"stage{k}_prox", "proximal", served, ProximalGraph(model, k - 1))
    return plans


def sample_inputs(
    plan: GraphPlan, prior_dim: int, batch: int, height: int, width: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, ...]:
    """Random inputs of the right shapes and dtypes (images in [0, 1], vectors ~ N(0, 1))."""
    out: list[torch.Tensor] = []
    for spec in plan.inputs:
        if spec.name == "stage":
            out.append(torch.arange(batch, dtype=torch.long) % max(plan.stages))
        elif spec.name in ("z", "noise"):
            out.append(torch.randn(batch, prior_dim, generator=generator))
        else:
            out.append(torch.rand(batch, 3, height, width, generator=generator))
    return tuple(out)


def written_opset(path: Path) -> int:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    versions = [op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")]
    if not versions:
        raise ExportError(f"{path}: the graph declares no default-domain opset")
    return versions[0]


def check_opset(opset: int) -> None:
    if not DEFAULT_OPSET <= opset <= MAX_OPSET:
        raise ExportError(
            f"opset {opset} is not supported: use {DEFAULT_OPSET} (default, parsed by every supported TensorRT) "
            f"up to {MAX_OPSET} (the highest the TorchScript ONNX exporter writes)"
        )


def export_onnx(plan: GraphPlan, path: Path, opset: int, sample: tuple[torch.Tensor, ...], passes: bool = True) -> int:
    """Write `plan` as ONNX at `path` (atomically); returns the opset found in the written file.

    With `passes`, the exact speed rewrites of `export/graph_passes.py` are applied first.
    """
    check_opset(opset)
    dynamic = {}
    for spec in plan.inputs + plan.outputs:
        dynamic[spec.name] = {i: d for i, d in enumerate(spec.shape) if isinstance(d, str)}
    try:
        with atomic_target(path, suffix=path.suffix) as tmp, warnings.catch_warnings():
            # We chose the TorchScript exporter on purpose (see the module docstring).
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", message=".*feature will be removed.*", category=DeprecationWarning)
            with torch.no_grad():
                torch.onnx.export(
                    plan.module,
                    sample,
                    str(tmp),
                    dynamo=False,
                    opset_version=opset,
                    input_names=[s.name for s in plan.inputs],
                    output_names=[s.name for s in plan.outputs],
                    dynamic_axes=dynamic,
                    do_constant_folding=True,
                )
            if passes:
                import onnx

                from export.graph_passes import channel_mean_as_conv

                proto = onnx.load(str(tmp))
                if channel_mean_as_conv(proto):
                    onnx.save(proto, str(tmp))
            got = written_opset(tmp)
            if got != opset:
                raise ExportError(f"{path.name}: asked for opset {opset}, the exporter wrote {got}")
    except (RuntimeError, ValueError, TypeError, OSError) as exc:
        raise ExportError(
            f"{path}: ONNX export of graph {plan.name!r} failed ({str(exc).strip().splitlines()[0]})"
        ) from exc
    return got


def prune_unused_state(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """The same program without the parameters, buffers and constants its graph never reads.

    The wrappers hold the whole UnfoldLDM (to call its public stage methods), and torch.export
    lifts every tensor of the module, used or not: a gradient graph would carry all stages'
    weights and the training-only GT encoder. Unused placeholders are removed from the graph
    and the signature; the parity check runs on the pruned, saved and reloaded program.
    """
    from torch.export import ExportedProgram
    from torch.export.graph_signature import ExportGraphSignature, InputKind

    state_kinds = (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR)
    nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    keep, dropped = [], set()
    for spec in program.graph_signature.input_specs:
        node = nodes[spec.arg.name]
        if spec.kind in state_kinds and not node.users:
            program.graph.erase_node(node)
            dropped.add(spec.target)
        else:
            keep.append(spec)
    program.graph_module.recompile()
    return ExportedProgram(
        root=program.graph_module,
        graph=program.graph,
        graph_signature=ExportGraphSignature(keep, list(program.graph_signature.output_specs)),
        state_dict={k: v for k, v in program.state_dict.items() if k not in dropped},
        range_constraints=program.range_constraints,
        module_call_graph=program.module_call_graph,
        example_inputs=program.example_inputs,
        constants={k: v for k, v in program.constants.items() if k not in dropped},
        verifiers=program.verifiers,
    )


def export_program(plan: GraphPlan, path: Path, multiple: int, sample: tuple[torch.Tensor, ...]) -> None:
    """Write `plan` as a torch.export program (.pt2) with dynamic batch, height and width."""
    from torch.export import Dim

    batch = Dim("batch", min=1)
    blocks = min_size(multiple) // multiple
    height = multiple * Dim("height_blocks", min=blocks)
    width = multiple * Dim("width_blocks", min=blocks)
    dims = {BATCH: batch, HEIGHT: height, WIDTH: width}
    dynamic = {s.name: {i: dims[d] for i, d in enumerate(s.shape) if isinstance(d, str)} for s in plan.inputs}
    try:
        with torch.no_grad():
            program = prune_unused_state(torch.export.export(plan.module, sample, dynamic_shapes=dynamic, strict=False))
        with atomic_target(path, suffix=path.suffix) as tmp:
            torch.export.save(program, str(tmp))
    except (RuntimeError, ValueError, TypeError, OSError) as exc:
        # torch.export reports unsupported dynamism as UserError/ConstraintViolation (RuntimeError/ValueError).
        raise ExportError(
            f"{path}: torch.export of graph {plan.name!r} failed ({str(exc).strip().splitlines()[0]})"
        ) from exc
