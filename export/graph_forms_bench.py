"""Each graph form of model/export_forms.py measured on its own, on the largest graph, in one run.

    python export/graph_forms_bench.py                       # shipped checkpoint, 1280x720
    python export/graph_forms_bench.py --size 640x360 --repeats 7 --threads 1 --json forms.json

The stage-1 proximal graph (the largest: three of them are about 90 % of a frame's time) is
exported once per form, plain (today's graph), each form alone, and all forms together, into a
temporary folder. Each export's output must match the unchanged PyTorch model within
--tolerance. The exported graphs then run interleaved (one pass over every graph, --repeats
times, the first pass dropped as warm-up) on ONNX Runtime's CPU provider and, where installed,
OpenVINO's CPU plugin, so that a shared machine's load falls on every variant alike. Printed:
the median time per variant and backend and the speed-up over the plain graph. `--cpu-time`
times process CPU time instead of wall-clock time (steadier on a loaded machine at one thread).
export/build.py writes the forms listed in `KEPT_FORMS` of model/export_forms.py; this is the
measurement that chose them (docs/BENCHMARKS.md, "Graph forms").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.onnx_export import export_onnx, plan_graphs, sample_inputs
from model.checkpoint import load_model
from model.export_forms import FORMS, export_form
from runtime import cli
from runtime.errors import ExportError
from runtime.shipped import SHIPPED_CHECKPOINT

GRAPH = "stage1_prox"
Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


def variants() -> dict[str, tuple[str, ...]]:
    return {"plain": (), **{form: (form,) for form in FORMS}, "all": FORMS}


def export_variants(checkpoint: Path, folder: Path, tolerance: float) -> tuple[dict[str, Path], int]:
    """One ONNX file per variant, each checked against the unchanged model; the prior size."""
    model, _ = load_model(checkpoint)
    generator = torch.Generator().manual_seed(0)
    v, z = torch.rand(1, 3, 48, 80, generator=generator), torch.randn(1, model.config.prior_dim, generator=generator)
    with torch.no_grad():
        reference = model.proximal_step(0, v, z)
    files = {}
    for name, forms in variants().items():
        form = export_form(model, forms)
        with torch.no_grad():
            error = (form.proximal_step(0, v, z) - reference).abs().max().item()
        if error > tolerance:
            raise ExportError(f"graph form {name!r} differs from the model by {error:.2e} (> {tolerance:.0e})")
        plan = next(p for p in plan_graphs(form) if p.name == GRAPH)
        files[name] = folder / f"{name}.onnx"
        export_onnx(plan, files[name], 17, sample_inputs(plan, model.config.prior_dim, 1, 64, 64, generator))
    return files, model.config.prior_dim


def onnxruntime_runner(path: Path, threads: int | None) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)[0]


def openvino_runner(path: Path, threads: int | None, feeds: dict[str, np.ndarray]) -> Runner:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({name: list(array.shape) for name, array in feeds.items()})
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    request = core.compile_model(model, "CPU", config).create_infer_request()
    return lambda inputs: next(iter(request.infer(inputs).values())).copy()


def openvino_installed() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def run(args: argparse.Namespace) -> dict[str, Any]:
    height, width = args.size
    with tempfile.TemporaryDirectory() as folder:
        files, prior_dim = export_variants(args.checkpoint, Path(folder), args.tolerance)
        rng = np.random.default_rng(0)
        feeds = {
            "v": rng.random((1, 3, height, width), dtype=np.float32),
            "z": rng.standard_normal((1, prior_dim)).astype(np.float32),
        }
        runners: dict[tuple[str, str], Runner] = {}
        for name, path in files.items():
            runners["onnxruntime", name] = onnxruntime_runner(path, args.threads)
            if openvino_installed():
                runners["openvino", name] = openvino_runner(path, args.threads, feeds)
        clock = time.process_time if args.cpu_time else time.perf_counter
        times: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
        for _ in range(args.repeats + 1):
            for key, runner in runners.items():
                start = clock()
                runner(feeds)
                times[key].append(clock() - start)
    rows = []
    for (backend, name), seconds in times.items():
        median = statistics.median(seconds[1:])
        plain = statistics.median(times[backend, "plain"][1:])
        rows.append({"backend": backend, "variant": name, "ms": 1000 * median, "speedup": plain / median})
    return {
        "graph": GRAPH,
        "size": [height, width],
        "threads": args.threads,
        "repeats": args.repeats,
        "clock": "process CPU time" if args.cpu_time else "wall clock",
        "rows": rows,
    }


def report(result: dict[str, Any]) -> str:
    height, width = result["size"]
    lines = [
        f"{result['graph']} at {width}x{height}, threads {result['threads'] or 'default'}, "
        f"median of {result['repeats']} ({result['clock']})",
        f"{'backend':<13}{'variant':<20}{'ms':>9}{'vs plain':>10}",
    ]
    for row in result["rows"]:
        lines.append(f"{row['backend']:<13}{row['variant']:<20}{row['ms']:>9.0f}{row['speedup']:>9.2f}x")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.tool_parser("graph_forms_bench.py", __doc__)
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=SHIPPED_CHECKPOINT,
        help="checkpoint whose weights are exported (default: the shipped model)",
    )
    cli.add_frame_size_argument(parser, "--size", (720, 1280), "input size of the graph")
    parser.add_argument(
        "--repeats", type=cli.positive_int, default=5, help="timed passes after the warm-up (default: 5)"
    )
    parser.add_argument(
        "--tolerance", type=float, default=1e-4, help="largest |form - model| allowed on a 48x80 check (default: 1e-4)"
    )
    parser.add_argument("--cpu-time", action="store_true", help="time process CPU time instead of wall-clock time")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    cli.add_threads_argument(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.verbose)
    return cli.measure_and_report(lambda: run(args), report, args.json, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
