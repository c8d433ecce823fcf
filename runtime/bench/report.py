"""The printed form of a benchmark result: environment line, latency table, per-graph table."""

from __future__ import annotations

from typing import Any

MIB = 1024 * 1024


def cell_label(cell: dict[str, Any]) -> str:
    return f"{cell['backend']}/{cell['device']} {cell['precision']} {cell['width']}x{cell['height']}"


def environment_line(env: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {env[k]}" for k in ("python", "numpy", "onnxruntime", "torch", "tensorrt") if env[k])
    threads = env["threads"] if env["threads"] is not None else "default"
    load = env["load_average_1min"]
    line = f"{env['cpu']} ({env['cpu_cores']} cores, threads: {threads}"
    line += f", load average {load:.2f})" if load is not None else ")"
    if env["gpu"]:
        line += f", GPU {env['gpu']}"
    return f"{line} | {versions}"


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Aligned columns: the first (labels) left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = [lambda text, w=w, i=i: text.ljust(w) if i == 0 else text.rjust(w) for i, w in enumerate(widths)]
    return ["  ".join(f(t) for f, t in zip(fmt, row, strict=True)) for row in [header, *rows]]


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:.1f}"


def format_report(result: dict[str, Any]) -> str:
    lines = [environment_line(result["environment"])]
    cells = result["results"]
    if cells:
        settings = result["settings"]
        if settings.get("backend_options"):  # absent from results made without options
            options = ", ".join(f"{k}={v}" for k, v in settings["backend_options"].items())
            lines.append(f"backend options: {options}")
        lines.append(f"end to end, ms per frame ({settings['iters']} frames after {settings['warmup']} warm-up):")
        header = ["cell", "mean", "p50", "p90", "p99", "fps", "peak RSS +MiB", "device ms", "host ms"]
        rows = []
        for cell in cells:
            e2e, device = cell["end_to_end"], cell["device_time"]
            rows.append(
                [
                    cell_label(cell),
                    *(f"{e2e[k]:.1f}" for k in ("mean_ms", "p50_ms", "p90_ms", "p99_ms")),
                    f"{cell['throughput_fps']:.2f}",
                    _mib(cell["memory"]["host_peak_rss_delta_bytes"]),
                    "-" if device is None else f"{device['mean_ms']:.2f}",
                    "-" if cell["host_overhead_ms"] is None else f"{cell['host_overhead_ms']:.2f}",
                ]
            )
        lines += text_table(header, rows)
        graphs = list(dict.fromkeys(g for cell in cells for g in cell["graphs"]))
        calls = {g: max(c["graphs"][g]["calls_per_frame"] for c in cells if g in c["graphs"]) for g in graphs}
        lines.append("per graph, mean ms per frame (a graph called n times per frame shows xn):")
        header = ["cell", *(g if calls[g] == 1 else f"{g} x{calls[g]:g}" for g in graphs), "other"]
        rows = [
            [
                cell_label(cell),
                *(f"{cell['graphs'][g]['per_frame_ms']:.1f}" if g in cell["graphs"] else "-" for g in graphs),
                f"{cell['unattributed_ms']:.1f}",
            ]
            for cell in cells
        ]
        lines += text_table(header, rows)
    # One line per (backend, device, precision, reason), listing the sizes it covers.
    grouped: dict[tuple[str, str], list[str]] = {}
    for skip in result["skipped"]:
        key = (f"{skip['backend']}/{skip['device']} {skip['precision']}", skip["reason"])
        grouped.setdefault(key, []).append(f"{skip['width']}x{skip['height']}")
    for (what, reason), sizes in grouped.items():
        lines.append(f"skipped {what} ({', '.join(sizes)}): {reason}")
    return "\n".join(lines)
