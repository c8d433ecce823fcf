"""What every backend that reads the manifest's ONNX files checks and reports the same way:
the inputs and outputs a graph file really has against those the manifest declares, and a
library's exception reduced to the one line a CLI prints."""

from __future__ import annotations

from collections.abc import Sequence

from runtime.errors import ManifestError
from runtime.manifest import Manifest

# (name, dtype as in the manifest, shape: ints where fixed, anything else where symbolic)
PortInfo = tuple[str, str, Sequence[object]]


def check_graph_io(manifest: Manifest, graph: str, path: str, inputs: list[PortInfo], outputs: list[PortInfo]) -> None:
    """The graph file at `path` must have exactly the inputs and outputs the manifest declares:
    the same names, dtypes and ranks, and the same size wherever both fix one (a graph of another
    model dropped into the folder is refused here, not at its first frame)."""
    spec = manifest.graph(graph)
    for kind, declared, actual in (("input", spec.inputs, inputs), ("output", spec.outputs, outputs)):
        got = [(name, dtype, len(shape)) for name, dtype, shape in actual]
        want = [(s.name, s.dtype, len(s.shape)) for s in declared]
        if got != want:
            raise ManifestError(f"{path}: graph {kind}s {got} do not match manifest graphs.{graph}.{kind}s {want}")
        for s, (_, _, shape) in zip(declared, actual, strict=True):
            for i, (d, g) in enumerate(zip(s.shape, shape, strict=True)):
                if isinstance(d, int) and isinstance(g, int) and d != g:
                    raise ManifestError(
                        f"{path}: {kind} {s.name!r} dimension {i} is {g} in the graph but {d} in manifest "
                        f"graphs.{graph} (graph from another model?)"
                    )


def first_line(exc: BaseException, skip: tuple[str, ...] = ()) -> str:
    """The first line of `exc`'s message that starts with none of `skip` (a library's location
    headers), else its type's name."""
    for line in str(exc).splitlines():
        text = line.strip()
        if text and not text.startswith(skip):
            return text
    return type(exc).__name__
