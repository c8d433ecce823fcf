"""Engine records as `export/engines.py` writes them, for tests that need engines in a manifest."""

from __future__ import annotations

from runtime.engine_key import EngineKeyInputs, plan_filename
from runtime.gpu_info import GpuInfo
from runtime.manifest import Engine, FileRef, Manifest, ShapeRange, TensorSpec


def at_size(tensor: TensorSpec, size: tuple[int, int]) -> tuple[int, ...]:
    """A graph tensor's shape at batch 1 and `size` (H, W)."""
    values = {"batch": 1, "height": size[0], "width": size[1]}
    return tuple(values[d] if isinstance(d, str) else d for d in tensor.shape)


def engine_record(
    manifest: Manifest,
    graph: str,
    *,
    version: str,
    gpu: GpuInfo,
    size: tuple[int, int],
    plan: FileRef | None = None,
    dla_core: int | None = None,
) -> Engine:
    """The record of a static fp32 engine of `graph` at `size`; `plan` defaults to an unhashed name.
    `dla_core`: built for that DLA core (with GPU fallback), as the key's descriptor says."""
    shapes = {t.name: at_size(t, size) for t in manifest.graph(graph).inputs}
    inputs = EngineKeyInputs(
        onnx_sha256=manifest.graph(graph).variants["fp32"].onnx.sha256,
        precision="fp32/fp32" + (f"/dla{dla_core}+gpu" if dla_core is not None else ""),
        shapes=shapes,
        tensorrt_version=version,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
    )
    return Engine(
        graph=graph,
        precision="fp32",
        key=inputs.key,
        plan=plan or FileRef(f"engines/{plan_filename(graph, inputs.key)}", "0" * 64),
        tensorrt_version=version,
        device_name=gpu.name,
        compute_capability=gpu.compute_capability_str,
        profile={n: ShapeRange(s, s, s) for n, s in shapes.items()},
        key_inputs=inputs.to_dict(),
        dla_core=dla_core,
    )
