"""Export a model into an artifacts folder and verify it: step 1 of export/build_engines.py (the command).

Not engines: export/engines.py builds an artifacts folder's TensorRT engines, each with
export/trt_builder.py.

Steps: plan the graphs; per graph write the ONNX file (opset checked), run onnx.checker and
strict shape inference, write the torch.export program; run every graph against PyTorch
(parity); run the whole exported pipeline through `runtime/` on a frame of odd size (padding
included) with ONNX Runtime and the torch backend; write `manifest.json` last; read it back
with every sha256 checked.

The folder is claimed first (`export/artifacts_folder.py`): a non-empty folder that is not an
artifacts folder of ours is refused before anything is written, unless `allow_non_empty`. The
old manifest is then removed, so an interrupted build leaves a folder that the runtime refuses
("no manifest.json: run build_engines.py"), never a manifest whose files were half replaced.
At the end only files an earlier manifest of ours named, and the new one does not, are
removed. Every file is written under a temporary name and renamed.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from export.activation_sizes import measure_activation_bytes
from export.artifacts_folder import GRAPHS_DIR, REFERENCE_DIR, REFERENCE_FILES, check_folder, claim_folder, remove_stale
from export.cpu_timing import time_cpu_backends
from export.manifest_writer import build_manifest
from export.onnx_export import (
    DEFAULT_OPSET,
    GraphPlan,
    check_opset,
    export_onnx,
    export_program,
    min_size,
    plan_graphs,
    sample_inputs,
)
from export.verify import check_onnx, parity_check, reference_image
from model.checkpoint import load_model
from model.config import ModelConfig
from model.export_forms import KEPT_FORMS, export_form
from model.unfoldldm import UnfoldLDM
from runtime.atomic_io import atomic_write_bytes
from runtime.backends.select import create_backend
from runtime.errors import ExportError
from runtime.manifest import (
    MANIFEST_NAME,
    FileRef,
    Manifest,
    PipelineCheck,
    ReferenceFrame,
    Source,
    load_manifest,
    save_manifest,
    sha256_file,
)
from runtime.pipeline import Pipeline, sampler_noise


@dataclass(frozen=True)
class ExportOptions:
    opset: int = DEFAULT_OPSET
    torch_programs: bool = True
    # exact speed rewrites: the graph forms of model/export_forms.py and export/graph_passes.py
    graph_passes: bool = True
    # (height, width) at which the CPU backends are timed for the default order (export/cpu_timing.py);
    # None: not timed, the default order keeps ONNX Runtime first.
    cpu_timing_size: tuple[int, int] | None = None
    # (batch, height, width) for parity; None: a batch of two small frames and one 256x256,
    # rounded to the model multiple.
    parity_shapes: tuple[tuple[int, int, int], ...] | None = None
    tolerance: float = 1e-4
    # Frame (height, width) of the end-to-end pipeline check; None: an odd size (padding is
    # exercised) of about 2 x 3 times the smallest graph size.
    pipeline_size: tuple[int, int] | None = None
    threads: int | None = None
    progress: bool = True
    # Write into a non-empty folder that is not an artifacts folder of ours (keeping its files).
    allow_non_empty: bool = False


def default_parity_shapes(multiple: int) -> tuple[tuple[int, int, int], ...]:
    def up(n: int) -> int:
        return -(-n // multiple) * multiple

    return ((2, up(48), up(80)), (1, up(256), up(256)))


def checkpoint_source(path: Path, phase: str, step: int, interim: bool) -> Source:
    return Source(path.name, sha256_file(path), phase, step, interim)


def _pipeline_checks(
    model: UnfoldLDM,
    manifest: Manifest,
    size: tuple[int, int],
    tolerance: float,
    threads: int | None,
    backends: Sequence[str],
) -> tuple[tuple[PipelineCheck, ...], ReferenceFrame]:
    """The exported pipeline (padding and all) against the PyTorch model on an odd-size frame;
    that frame and the model's output are kept in the folder as the manifest's reference."""
    height, width = size
    frame = reference_image(1, height, width, seed=99)
    multiple, smallest = manifest.pad_multiple, manifest.min_size
    ph, pw = (max(-(-n // multiple) * multiple, smallest) for n in (height, width))
    padded = torch.from_numpy(
        np.pad(frame.numpy(), ((0, 0), (0, 0), (0, ph - height), (0, pw - width)), mode="reflect")
    )
    noise = sampler_noise(manifest)
    z_noise = torch.zeros(1, manifest.prior_dim) if noise is None else torch.from_numpy(noise)
    with torch.no_grad():
        expected = model(padded, z_noise)[:, :, :height, :width].clamp(0, 1).permute(0, 2, 3, 1).numpy()
    checks = []
    for name in backends:
        backend = create_backend(name, manifest, "cpu", threads=threads).open()
        with Pipeline(manifest, backend) as pipeline:
            got = pipeline.restore_batch(np.ascontiguousarray(frame.permute(0, 2, 3, 1).numpy()))
        err = float(np.abs(got - expected).max())
        if err > tolerance:
            raise ExportError(
                f"the exported pipeline on {name} differs from PyTorch by {err:.3g} (> {tolerance:g}) "
                f"on a {width}x{height} frame"
            )
        checks.append(PipelineCheck(name, "cpu", (1, height, width), err))
    pixels = np.ascontiguousarray(frame.permute(0, 2, 3, 1).numpy())
    return tuple(checks), _write_reference(manifest.root, pixels, np.ascontiguousarray(expected, dtype=np.float32))


def _write_reference(out: Path, frame: np.ndarray, restored: np.ndarray) -> ReferenceFrame:
    refs = []
    for name, array in zip(REFERENCE_FILES, (frame, restored), strict=True):
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        path = out / REFERENCE_DIR / name
        try:
            path.parent.mkdir(exist_ok=True)
            atomic_write_bytes(path, buffer.getvalue())
        except OSError as exc:
            raise ExportError(f"{path}: cannot write the reference frame ({exc.strerror or exc})") from exc
        refs.append(FileRef(path.relative_to(out).as_posix(), sha256_file(path)))
    return ReferenceFrame(*refs)


def build_artifacts(
    model: UnfoldLDM, source: Source, out: Path, name: str, options: ExportOptions = ExportOptions()
) -> Manifest:
    """Export `model` into the artifacts folder `out` (the folder that will hold manifest.json)."""
    check_opset(options.opset)
    model = model.eval()
    config = model.config
    multiple = config.pad_multiple
    shapes = options.parity_shapes or default_parity_shapes(multiple)
    for b, h, w in shapes:
        if b < 1 or h % multiple or w % multiple or min(h, w) < min_size(multiple):
            raise ExportError(
                f"parity shape {b}x{h}x{w}: batch must be >= 1 and height/width multiples of {multiple}, "
                f"at least {min_size(multiple)}"
            )
    # The graphs are written from the CPU-friendlier forms of the same weights (model/export_forms.py);
    # the parity check below compares them with `model` itself. export_form deep-copies the model,
    # so it is called only when a form is kept.
    forms = KEPT_FORMS if options.graph_passes else ()
    plans: list[GraphPlan] = plan_graphs(export_form(model, forms) if forms else model)
    owned = claim_folder(out, [p.name for p in plans], options.allow_non_empty)
    graphs_dir = out / GRAPHS_DIR
    try:
        graphs_dir.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST_NAME).unlink(missing_ok=True)
    except OSError as exc:
        raise ExportError(f"{out}: cannot prepare the artifacts folder ({exc.strerror or exc})") from exc

    onnx_files: dict[str, Path] = {}
    program_files: dict[str, Path] = {}
    activations = {}
    smallest = min_size(multiple)
    sample_h, sample_w = 2 * smallest, 3 * smallest
    bar = tqdm(plans, desc="export", unit="graph", disable=not options.progress)
    for plan in bar:
        bar.set_postfix_str(plan.name)
        sample = sample_inputs(plan, config.prior_dim, 2, sample_h, sample_w, torch.Generator().manual_seed(0))
        onnx_path = graphs_dir / f"{plan.name}.fp32.onnx"
        export_onnx(plan, onnx_path, options.opset, sample, options.graph_passes)
        check_onnx(onnx_path, plan)
        onnx_files[plan.name] = onnx_path
        activations[plan.name] = measure_activation_bytes(onnx_path, multiple, smallest, options.threads)
        if options.torch_programs:
            program_path = graphs_dir / f"{plan.name}.pt2"
            export_program(plan, program_path, multiple, sample)
            program_files[plan.name] = program_path

    parity = parity_check(
        model, plans, onnx_files, program_files, shapes, _noise_for(config), options.tolerance, options.threads
    )
    manifest = build_manifest(
        model,
        source,
        name,
        out,
        plans,
        onnx_files,
        program_files,
        parity,
        options.opset,
        graph_passes=options.graph_passes,
        activations=activations,
    )
    size = options.pipeline_size or (2 * smallest + multiple + 1, 3 * smallest + 2 * multiple - 1)
    backends = ["onnxruntime", "torch"] if options.torch_programs else ["onnxruntime"]
    checks, reference = _pipeline_checks(model, manifest, size, options.tolerance, options.threads, backends)
    timing = None
    if options.cpu_timing_size:
        timing = time_cpu_backends(manifest, options.cpu_timing_size, threads=options.threads)
    manifest = dataclasses.replace(manifest, pipeline_checks=checks, reference=reference, cpu_timing=timing)
    save_manifest(manifest, out)
    written = load_manifest(out, verify=True)  # read back what we wrote, hashes included
    remove_stale(out, owned, written)
    return written


def _noise_for(config: ModelConfig) -> np.ndarray | None:
    """The runtime's noise (NOISE_RULE), from the config: the manifest does not exist yet."""
    if not config.use_prior:
        return None
    return np.random.default_rng(config.noise_seed).standard_normal((1, config.prior_dim), dtype=np.float32)


def build_from_checkpoint(
    checkpoint: str | os.PathLike[str], out: Path, name: str, options: ExportOptions = ExportOptions()
) -> Manifest:
    check_opset(options.opset)  # before the (slow) checkpoint load
    check_folder(Path(out), options.allow_non_empty)
    checkpoint = Path(checkpoint)
    model, ckpt = load_model(checkpoint)
    source = checkpoint_source(checkpoint, ckpt.phase, ckpt.step, ckpt.interim)
    return build_artifacts(model, source, out, name, options)
