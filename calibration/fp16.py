"""FP16 graphs: each FP32 graph converted to float16, with FP32 islands where FP16 is unsafe.

The islands are calibration/sensitive_ops.py's nodes (norms, softmax, reductions, attention and
decomposed-path matmuls, the output tail). Inputs and outputs stay float32 (`keep_io_types`), so
an FP16 graph is a drop-in replacement and the pipeline chains it exactly like the FP32 one. The
nodes kept in FP32 are returned so the manifest can record them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import onnx

from calibration.sensitive_ops import KEEP_OP_TYPES, check_node_names, higher_precision_nodes


@dataclass(frozen=True)
class Fp16Graph:
    model: onnx.ModelProto
    kept_fp32: tuple[str, ...]  # node names left in FP32, in graph order


def convert_to_fp16(
    model: onnx.ModelProto, extra_fp32: Iterable[str] = (), islands: Iterable[str] | None = None
) -> Fp16Graph:
    """A float16 copy of `model` with float32 inputs/outputs and the FP32 islands above.

    `islands` replaces the sensitive-op rule's choice of FP32 nodes with a given list (the Q/DQ
    graph of calibration/qdq_fp16.py takes its FP16 variant's islands, found on the FP32 graph);
    `extra_fp32` adds nodes to either."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    check_node_names(model.graph)
    keep = higher_precision_nodes(model.graph) if islands is None else list(dict.fromkeys(islands))
    keep += [name for name in extra_fp32 if name not in keep]
    converted = convert_float_to_float16(
        model,
        keep_io_types=True,
        op_block_list=sorted(set(DEFAULT_OP_BLOCK_LIST) | KEEP_OP_TYPES),
        node_block_list=keep,
        disable_shape_infer=False,
    )
    sort_nodes(converted.graph)
    return Fp16Graph(converted, tuple(keep))


def sort_nodes(graph: onnx.GraphProto) -> None:
    """Reorder `graph.node` topologically, in place. The converter appends its Cast nodes at the
    end; ONNX requires topological order and the reference evaluator relies on it."""
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            raise ValueError(f"graph has a cycle or a missing input near node {pending[0].name!r}")
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
        for node in ready:
            ordered.append(node)
            known.update(node.output)
    del graph.node[:]
    graph.node.extend(ordered)
