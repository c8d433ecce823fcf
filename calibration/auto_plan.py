"""The `auto` plan per backend target: which precision variant `--precision auto` runs per graph.

The runtime reads the plan from the manifest's `auto_precision` and decides nothing itself;
this module is the only place that decides it (docs/ARCHITECTURE.md, "Precision"):

- TensorRT (`tensorrt/cuda`): INT8 where the graph passed the INT8 gate, else FP16 where the
  artifacts have an FP16 variant (it passed the FP16 gate), else FP32. TensorRT's speed cannot
  be measured where the plan is made (no GPU needed to build artifacts), so accuracy decides.
- ONNX Runtime CUDA (`onnxruntime/cuda`): FP16 where present; INT8 is not planned there.
- ONNX Runtime CPU (`onnxruntime/cpu`): the `int8-cpu` flavour only where calibration measured
  it faster than FP32 and the CPU pipeline with it passed the gate; never FP16.

FP16 is planned whether or not INT8 ran. Only non-FP32 entries are written: a graph a plan does
not name runs FP32.
"""

from __future__ import annotations

from collections.abc import Mapping

from runtime.manifest import Manifest

TENSORRT = "tensorrt/cuda"
ONNXRUNTIME_CUDA = "onnxruntime/cuda"
ONNXRUNTIME_CPU = "onnxruntime/cpu"


def auto_plans(
    manifest: Manifest, tensorrt_int8: Mapping[str, str], cpu_int8: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """The plans for `manifest`'s variants, given what passed INT8 calibration (graph -> variant)
    for TensorRT and for ONNX Runtime CPU."""
    fp16 = sorted(g for g, entry in manifest.graphs.items() if "fp16" in entry.variants)
    tensorrt = {g: tensorrt_int8.get(g, "fp16") for g in manifest.graphs if g in tensorrt_int8 or g in fp16}
    plans = {TENSORRT: tensorrt, ONNXRUNTIME_CUDA: {g: "fp16" for g in fp16}, ONNXRUNTIME_CPU: dict(cpu_int8)}
    return {target: plan for target, plan in plans.items() if plan}


def earlier_int8_plans(manifest: Manifest) -> tuple[dict[str, str], dict[str, str]]:
    """What an earlier calibration of `manifest` planned in INT8 (TensorRT, ONNX Runtime CPU):
    kept when the INT8 step does not run again."""
    tensorrt = {g: p for g, p in manifest.auto_precision.get(TENSORRT, {}).items() if p.startswith("int8")}
    return tensorrt, dict(manifest.auto_precision.get(ONNXRUNTIME_CPU, {}))
