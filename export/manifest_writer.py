"""Fill in the manifest schema (owned by `runtime/manifest.py`) from an export."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path

from export.onnx_export import GraphPlan, min_size
from model.drldm import diffusion_schedule
from model.export_forms import KEPT_FORMS
from model.unfoldldm import UnfoldLDM
from runtime.manifest import (
    FORMAT,
    SCHEMA_VERSION,
    ActivationBytes,
    FileRef,
    Graph,
    Manifest,
    Parity,
    PipelineCheck,
    Sampler,
    Source,
    Stage,
    Variant,
    sha256_file,
)
from runtime.pipeline import NOISE_RULE

EXPORTER = "torch.onnx.export(dynamo=False) for ONNX; torch.export.export + torch.export.save for .pt2"
REWRITES = (
    f"; graph forms: {', '.join(KEPT_FORMS)}" if KEPT_FORMS else ""
) + "; ONNX graph passes: channel_mean_as_conv"


def toolchain() -> dict[str, str]:
    import numpy
    import onnx
    import onnxruntime
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }


def file_ref(root: Path, path: Path) -> FileRef:
    return FileRef(path.relative_to(root).as_posix(), sha256_file(path))


def build_manifest(
    model: UnfoldLDM,
    source: Source,
    name: str,
    root: Path,
    plans: list[GraphPlan],
    onnx_files: dict[str, Path],
    program_files: dict[str, Path],
    parity: dict[str, Parity],
    opset: int,
    pipeline_checks: tuple[PipelineCheck, ...] = (),
    graph_passes: bool = True,
    activations: dict[str, ActivationBytes] | None = None,
) -> Manifest:
    config = model.config
    stages = []
    for k in range(1, config.stages + 1):
        served = {p.role: p.name for p in plans if k in p.stages}
        stages.append(Stage(k, served["gradient"], served.get("prior"), served["proximal"], k - 1))
    graphs = {
        p.name: Graph(
            role=p.role,
            stages=p.stages,
            inputs=p.inputs,
            outputs=p.outputs,
            opset=opset,
            variants={"fp32": Variant("fp32", file_ref(root, onnx_files[p.name]))},
            torch_program=file_ref(root, program_files[p.name]) if p.name in program_files else None,
            parity=parity.get(p.name),
            activation_bytes=(activations or {}).get(p.name),
        )
        for p in plans
    }
    sampler = None
    if config.use_prior:
        sampler = Sampler(
            steps=config.diffusion_steps,
            beta_start=config.beta_start,
            beta_end=config.beta_end,
            alpha_bars=tuple(diffusion_schedule(config.diffusion_steps, config.beta_start, config.beta_end)),
            prediction="x0",
            noise_seed=config.noise_seed,
            noise_shape=(1, config.prior_dim),
            noise_rule=NOISE_RULE,
        )
    return Manifest(
        format=FORMAT,
        schema_version=SCHEMA_VERSION,
        name=name,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        model_config=json.loads(json.dumps(config.to_dict())),  # tuples as JSON lists, as read back
        source=source,
        toolchain=toolchain(),
        exporter=EXPORTER + (REWRITES if graph_passes else ""),
        opset=opset,
        pad_multiple=config.pad_multiple,
        min_size=min_size(config.pad_multiple),
        layout="NCHW",
        color="RGB",
        value_range=(0.0, 1.0),
        prior_dim=config.prior_dim,
        sampler=sampler,
        stages=tuple(stages),
        graphs=graphs,
        pipeline_checks=pipeline_checks,
        root=root,
    )
