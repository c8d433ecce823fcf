"""Where a frame's CPU time goes, by operator type: ONNX Runtime's and OpenVINO's own profilers.

    python export/op_profile.py                          # artifacts/edge/, 1280x720, both backends
    python export/op_profile.py --backends onnxruntime --size 640x360 --json profile.json

One synthetic frame is run through the FP32 pipeline (ONNX Runtime, calibration/replay.py) to
record what every graph really receives; each graph call is then re-run, --repeats times after a
warm-up, in a session with the backend's profiler on:
- ONNX Runtime: `SessionOptions.enable_profiling`; the trace's `Node` events (`<node>_kernel_time`,
  `args.op_name`) are the kernel times, summed by operator type;
- OpenVINO: the `PERF_COUNT` property and `InferRequest.profiling_info`, summed by the original
  operator type (`node_type`); its fused nodes are attributed to the type OpenVINO names.
The table gives per type: milliseconds per frame, share of the frame's kernel time and the node
count; convolutions' share is what the issue of CPU-shaped graphs is about (docs/BENCHMARKS.md).
Graph settings (threads, arena, optimisation level) follow the runtime's backends where it
matters for time: ONNX Runtime at ORT_ENABLE_ALL, OpenVINO with the f32 hint and one stream.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from calibration.replay import GraphFeeds, replay
from runtime import cli
from runtime.bench.measure import synthetic_frame
from runtime.errors import BackendUnavailable
from runtime.manifest import Manifest, load_manifest

BACKENDS = ("onnxruntime", "openvino")
OpTimes = dict[str, float]  # operator type -> milliseconds


def ort_op_times(path: Path, calls: Sequence[GraphFeeds], repeats: int, threads: int | None) -> OpTimes:
    """Kernel milliseconds by operator type over `repeats` passes of `calls` (after a warm-up)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for feeds in calls:  # warm-up, outside the profile
        session.run(None, feeds)
    with tempfile.TemporaryDirectory() as folder:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(repeats):
            for feeds in calls:
                session.run(None, feeds)
        trace = json.loads(Path(session.end_profiling()).read_text())
    times: Counter[str] = Counter()
    for event in trace:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            times[event["args"]["op_name"]] += event["dur"] / 1000.0
    return {op: ms / repeats for op, ms in times.items()}


def openvino_op_times(path: Path, calls: Sequence[GraphFeeds], repeats: int, threads: int | None) -> OpTimes:
    """OpenVINO's per-node real time by operator type, per pass of `calls` (after a warm-up)."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise BackendUnavailable("OpenVINO is not installed (pip install -e .[openvino])") from exc

    core = ov.Core()
    model = core.read_model(str(path))
    times: Counter[str] = Counter()
    for feeds in calls:
        model.reshape({name: list(array.shape) for name, array in feeds.items()})
        config: dict[str, Any] = {
            "PERF_COUNT": True,
            "INFERENCE_PRECISION_HINT": "f32",
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        request = core.compile_model(model, "CPU", config).create_infer_request()
        request.infer(feeds)  # warm-up
        for _ in range(repeats):
            request.infer(feeds)
            for node in request.profiling_info:
                times[node.node_type] += node.real_time.total_seconds() * 1000.0
    return {op: ms / repeats for op, ms in times.items()}


def profile(
    manifest: Manifest,
    size: tuple[int, int],
    backends: Sequence[str],
    repeats: int,
    threads: int | None,
    progress: bool,
) -> dict[str, Any]:
    """Per backend: op type -> ms per frame, and the node counts of the FP32 graphs."""
    frame = synthetic_frame(*size)
    records, _ = replay(manifest, [frame], threads, progress)
    files = {name: manifest.graph_file(name) for name in records}
    measure = {"onnxruntime": ort_op_times, "openvino": openvino_op_times}
    result: dict[str, Any] = {"size": list(size), "repeats": repeats, "threads": threads, "backends": {}}
    for backend in backends:
        total: Counter[str] = Counter()
        per_graph: dict[str, float] = {}
        for graph, calls in records.items():
            times = measure[backend](files[graph], calls, repeats, threads)
            total.update(times)
            per_graph[graph] = sum(times.values())
        result["backends"][backend] = {"op_ms": dict(total.most_common()), "graph_ms": per_graph}
    result["node_counts"] = node_counts(files.values(), records)
    return result


def node_counts(paths: Any, records: Mapping[str, Any]) -> dict[str, int]:
    """Nodes by operator type over the graph calls of one frame (each graph counted per call)."""
    import onnx

    counts: Counter[str] = Counter()
    for path in paths:
        graph = Path(path).name.split(".")[0]
        model = onnx.load(str(path), load_external_data=False)
        calls = len(records.get(graph, ()))
        for node in model.graph.node:
            counts[node.op_type] += calls
    return dict(counts)


def report(result: Mapping[str, Any], top: int = 12) -> str:
    height, width = result["size"]
    lines = [
        f"kernel time by operator type, one {width}x{height} frame, FP32 graphs "
        f"(threads: {result['threads'] or 'default'}, {result['repeats']} passes)"
    ]
    for backend, data in result["backends"].items():
        op_ms: dict[str, float] = data["op_ms"]
        frame_ms = sum(op_ms.values())
        lines.append(f"\n{backend}: {frame_ms:.0f} ms of kernel time per frame")
        lines.append(f"  {'operator':<28}{'ms':>10}{'share':>9}{'nodes':>8}")
        for op, ms in list(op_ms.items())[:top]:
            nodes = result["node_counts"].get(op, "")
            lines.append(f"  {op:<28}{ms:>10.1f}{100 * ms / frame_ms:>8.1f}%{nodes!s:>8}")
        rest = sum(list(op_ms.values())[top:])
        lines.append(f"  {'(other types)':<28}{rest:>10.1f}{100 * rest / frame_ms:>8.1f}%")
        lines.append("  per graph (ms): " + ", ".join(f"{g} {ms:.0f}" for g, ms in data["graph_ms"].items()))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.tool_parser("op_profile.py", __doc__)
    cli.add_artifacts_argument(parser)
    cli.add_frame_size_argument(parser, "--size", (720, 1280), "frame size to profile")
    parser.add_argument(
        "--backends",
        type=cli.name_list(BACKENDS, "backend"),
        default=BACKENDS,
        help="comma-separated CPU backends to profile (default: onnxruntime,openvino)",
    )
    parser.add_argument(
        "--repeats", type=cli.positive_int, default=2, help="profiled passes per graph call (default: 2)"
    )
    parser.add_argument(
        "--top", type=cli.positive_int, default=12, help="operator types listed per backend (default: 12)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the full profile as JSON")
    cli.add_threads_argument(parser)
    cli.add_verbosity_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.verbose)

    def measure() -> dict[str, Any]:
        cli.require_export(args.artifacts)
        manifest = load_manifest(args.artifacts)
        return profile(manifest, args.size, args.backends, args.repeats, args.threads, not args.quiet)

    return cli.measure_and_report(measure, lambda result: report(result, args.top), args.json, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
