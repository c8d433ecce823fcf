"""How many bytes of intermediate tensors a graph holds at its peak, as a function of frame size.

The runtime decides before a frame runs whether it fits a memory budget whole or must be tiled,
and it has neither `onnx` nor the model code, so the export records the answer in the manifest
(`ActivationBytes`, per graph). It is measured, not guessed:

1. Every intermediate tensor of the ONNX graph is made a graph output and the graph is run with
   ONNX Runtime, optimisations off (so every tensor exists), at several small frame sizes.
2. Each tensor's size is fitted exactly by a polynomial in the frame's height h and width w
   (h*w, h^2, w^2, h, w, 1: feature maps grow with h*w, the decomposed path's row and column
   operators with h^2 and w^2). Sizes are multiples of 8 times the pad multiple, so strided
   layers divide them exactly and the fit has no rounding to absorb.
3. The graph's nodes are walked in order, each tensor alive from the node that makes it to the
   last node that reads it (graph outputs to the end); the coefficients of the live sum are
   taken at every node, and the recorded polynomial is their coefficient-wise maximum, an upper
   bound of the peak at any size.

Graph inputs are not included: the pipeline counts the frames it holds itself. ONNX Runtime's
fused kernels need less than the unfused graph measured here, so the estimate errs high.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from runtime.errors import ExportError
from runtime.manifest import ActivationBytes

# (rows, columns) in units of lcm(pad multiple, 8): eight sizes for six unknowns, no two alike in shape.
_SIZE_UNITS = ((2, 2), (2, 3), (3, 2), (3, 3), (4, 2), (2, 4), (4, 5), (6, 3))


def _monomials(height: int, width: int) -> list[float]:
    return [height * width, height * height, width * width, height, width, 1.0]


def feeds_at(session, height: int, width: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs for every input of `session` (batch 1) at a height x width frame."""
    feeds = {}
    for spec in session.get_inputs():
        shape = [1 if d == "batch" else height if d == "height" else width if d == "width" else d for d in spec.shape]
        if spec.type == "tensor(int64)":
            feeds[spec.name] = np.zeros(shape, dtype=np.int64)
        else:
            feeds[spec.name] = rng.random(shape, dtype=np.float32)
    return feeds


def every_tensor_session(path: Path, threads: int | None = None):
    """(graph, session, names): an ONNX Runtime session of the graph at `path` in which every
    intermediate tensor is also an output (`names`: the graph's outputs first), optimisations
    off so that every tensor exists; `graph` is the unmodified graph."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    graph = onnx.GraphProto()
    graph.CopyFrom(model.graph)
    names = [o.name for o in model.graph.output]
    for node in model.graph.node:
        for name in node.output:
            if name and name not in names:
                names.append(name)
                model.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = threads or 0
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return graph, session, names


def measure_activation_bytes(path: Path, multiple: int, min_size: int, threads: int | None = None) -> ActivationBytes:
    """The peak bytes of intermediate tensors of the ONNX graph at `path`, per batch item."""
    graph, session, outputs = every_tensor_session(path, threads)
    unit = math.lcm(multiple, 8)
    while 2 * unit < min_size:
        unit *= 2
    sizes = [(a * unit, b * unit) for a, b in _SIZE_UNITS]
    rng = np.random.default_rng(0)
    measured = np.zeros((len(sizes), len(outputs)))
    for row, (height, width) in enumerate(sizes):
        values = session.run(outputs, feeds_at(session, height, width, rng))
        measured[row] = [np.asarray(v).nbytes for v in values]
    basis = np.array([_monomials(h, w) for h, w in sizes])
    coefficients, *_ = np.linalg.lstsq(basis, measured, rcond=None)  # (6, tensors)
    worst = float(np.abs(basis @ coefficients - measured).max())
    if worst > 0.5:
        raise ExportError(f"{path.name}: tensor sizes are not polynomial in height and width (off by {worst:.0f} B)")
    per_tensor = dict(zip(outputs, np.maximum(coefficients, 0.0).T, strict=True))
    return _peak_bound(graph, per_tensor, [o.name for o in graph.output])


def _peak_bound(graph, per_tensor: dict[str, np.ndarray], graph_outputs: list[str]) -> ActivationBytes:
    last_use: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            if name:
                last_use[name] = index
    live: dict[str, np.ndarray] = {}
    current = np.zeros(6)
    bound = np.zeros(6)
    for index, node in enumerate(graph.node):
        for name in node.output:
            if name in per_tensor and name not in live:
                live[name] = per_tensor[name]
                current = current + live[name]
        bound = np.maximum(bound, current)
        for name in set(node.input):
            if name in live and last_use.get(name) == index and name not in graph_outputs:
                current = current - live.pop(name)
    # Round up to whole bytes (per coefficient) so the record never under-states what was measured.
    return ActivationBytes(*(float(math.ceil(c - 1e-6)) if c > 0 else 0.0 for c in bound))
