"""TensorRT's INT8 graph is the FP16 graph with Q/DQ pairs: FP16 outside the FP32 islands and the
Q/DQ pairs, opset 17, float32 into every QuantizeLinear; the CPU flavour stays FP32."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from calibration.int8 import Int8Settings
from calibration.precision import PrecisionResult, build_precision
from calibration.qdq import quantize_graph
from calibration.replay import replay
from calibration.sources import BUILTIN, BUILTIN_HELDOUT, load_frames
from export.reference_check import run_reference
from runtime.errors import CalibrationError
from runtime.manifest import Manifest, load_manifest
from runtime.metrics import psnr

QDQ = ("QuantizeLinear", "DequantizeLinear")


@pytest.fixture(scope="module")
def calibrated(export_tiny, tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, PrecisionResult]:
    """The tiny model's FP16 and INT8 variants, as export/build_engines.py makes them (gates
    lowered so that every graph gets both: this is about the graphs' types, not their accuracy)."""
    root = tmp_path_factory.mktemp("int8_fp16") / "art"
    shutil.copytree(export_tiny().artifacts, root)
    frames = load_frames(BUILTIN, 2, (48, 64), seed=0)
    heldout = load_frames(BUILTIN_HELDOUT, 1, (48, 64), seed=0)
    settings = Int8Settings(frames, heldout, "builtin", method="minmax", gate_db=10.0, graph_screen_db=10.0,
                            max_gt_loss_db=30.0)  # fmt: skip
    result = build_precision(root, fp16_heldout=heldout, int8=settings, fp16_gate_db=10.0, threads=1, progress=False)
    return load_manifest(root), result


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor of `model`, from ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    types.update({i.name: i.data_type for i in graph.initializer})
    return types


def _both(manifest: Manifest) -> list[str]:
    graphs = [g for g, e in manifest.graphs.items() if {"fp16", "int8"} <= set(e.variants)]
    assert graphs, "no graph has both an FP16 and an INT8 variant"
    return graphs


def test_tensorrt_int8_graph_computes_in_fp16_outside_the_fp32_islands(calibrated) -> None:
    manifest, result = calibrated
    for graph in _both(manifest):
        model = onnx.load(str(manifest.graph_file(graph, "int8")))
        onnx.checker.check_model(model, full_check=True)
        assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]  # TensorRT 8.6 on JetPack 6.0
        types = _elem_types(model)
        islands = set(manifest.graphs[graph].variants["fp16"].kept_higher)
        fp16_nodes = 0
        for node in model.graph.node:
            outputs = [types[o] for o in node.output if o]
            if node.op_type == "QuantizeLinear":  # opset 17 quantizes float32 only
                assert types[node.input[0]] == TensorProto.FLOAT and outputs == [TensorProto.INT8], node.name
            elif node.op_type == "DequantizeLinear":
                assert outputs == [TensorProto.FLOAT], node.name
            elif node.name in islands:
                assert TensorProto.FLOAT16 not in outputs, node.name
            elif node.op_type != "Cast":
                assert TensorProto.FLOAT not in outputs, f"{graph}: {node.op_type} {node.name} computes in FP32"
                fp16_nodes += TensorProto.FLOAT16 in outputs
        convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name not in islands]
        assert convs and fp16_nodes > len(convs)  # the layers between convolutions, not only these
        assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) > 0
        assert TensorProto.FLOAT16 not in {types[i.name] for i in [*model.graph.input, *model.graph.output]}
        assert result.int8 is not None and result.int8.graphs[graph].made_from == "fp16"
    assert manifest.calibration is not None and "made from the FP16 graph" in manifest.calibration.method


def test_cpu_int8_flavour_stays_fp32(calibrated) -> None:
    manifest, _ = calibrated
    cpu = [g for g, e in manifest.graphs.items() if "int8-cpu" in e.variants]
    assert cpu
    for graph in cpu:
        types = _elem_types(onnx.load(str(manifest.graph_file(graph, "int8-cpu"))))
        assert TensorProto.FLOAT16 not in types.values(), graph


def test_tensorrt_int8_graph_stays_close_to_fp32_computed_in_fp16(calibrated) -> None:
    """On real replayed inputs, close to the FP32 graph both in ONNX Runtime (what the gate
    runs; its fused x86 INT8 kernels lose more than the Q/DQ arithmetic itself) and in ONNX's
    reference evaluator, which computes every FP16 node in FP16 and Q/DQ exactly."""
    import onnxruntime as ort

    manifest, _ = calibrated
    frame = load_frames(BUILTIN_HELDOUT, 1, (48, 64), seed=1)[0].image
    records, _ = replay(manifest, [frame], threads=1, progress=False)
    for graph in _both(manifest):
        feeds = records[graph][0]
        fp32 = ort.InferenceSession(str(manifest.graph_file(graph)), providers=["CPUExecutionProvider"])
        int8_path = manifest.graph_file(graph, "int8")
        int8 = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
        want = fp32.run(None, feeds)[0]
        got = int8.run(None, feeds)[0]
        reference = run_reference(onnx.load(str(int8_path)), feeds)[0]
        span = float(np.ptp(want)) or 1.0
        assert np.isfinite(got).all() and np.isfinite(reference).all(), graph
        assert psnr(got, want, data_range=span) > 30.0, graph
        assert psnr(reference.astype(np.float32), want, data_range=span) > 45.0, graph


def test_only_the_tensorrt_flavour_takes_fp16_islands(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="int8-cpu flavour stays FP32"):
        quantize_graph(tmp_path / "g.onnx", tmp_path / "q.onnx", [{}], "int8-cpu", fp16_islands=())
