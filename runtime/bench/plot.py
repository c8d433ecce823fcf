"""The benchmark figure: where a frame's time goes, and how much it varies.

Left: one horizontal bar per cell (backend, device, precision, size), stacked by graph (mean
time per frame; gradient graphs in blues, the prior in orange, proximal graphs in greens, the
rest of the frame in grey). Right: the end-to-end latency distribution of the same cells (box:
p25-p75 with the median, whiskers p1-p99, every frame as a dot). matplotlib is imported here,
only when a plot is asked for, with the Agg backend (no display needed).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from runtime.atomic_io import atomic_write_bytes
from runtime.bench.report import cell_label, environment_line
from runtime.errors import InputError

PLOT_FORMATS = ("png", "svg", "pdf")
_ROLE_COLOURS = {"gradient": "Blues", "prior": "Oranges", "proximal": "Greens"}


def _graph_colours(cells: list[dict[str, Any]]) -> dict[str, Any]:
    import matplotlib

    roles: dict[str, str] = {}
    for cell in cells:
        roles.update({g: entry["role"] for g, entry in cell["graphs"].items()})
    colours: dict[str, Any] = {}
    for role, cmap_name in _ROLE_COLOURS.items():
        names = [g for g, r in roles.items() if r == role]
        cmap = matplotlib.colormaps[cmap_name]
        for i, g in enumerate(names):
            colours[g] = cmap(0.45 + 0.45 * i / max(1, len(names) - 1)) if len(names) > 1 else cmap(0.6)
    return colours


def render(result: dict[str, Any], image_format: str = "png") -> bytes:
    """The figure as bytes in `image_format` (png, svg, pdf: what matplotlib writes)."""
    cells = result["results"]
    if not cells:
        raise InputError("nothing was measured, so there is nothing to plot (every cell was skipped)")
    try:
        import matplotlib
    except ImportError as exc:
        raise InputError("--plot needs matplotlib (pip install matplotlib)") from exc

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    labels = [cell_label(c) for c in cells]
    graphs = list(dict.fromkeys(g for c in cells for g in c["graphs"]))
    colours = _graph_colours(cells)
    ys = np.arange(len(cells))
    fig, (bars, dist) = plt.subplots(
        1,
        2,
        layout="constrained",
        figsize=(14, 2.2 + 0.55 * len(cells)),
        sharey=True,
        gridspec_kw={"width_ratios": [1.25, 1]},
    )
    left = np.zeros(len(cells))
    for g in graphs:
        widths = np.array([c["graphs"][g]["per_frame_ms"] if g in c["graphs"] else 0.0 for c in cells])
        calls = max(c["graphs"][g]["calls_per_frame"] for c in cells if g in c["graphs"])
        name = g if calls == 1 else f"{g} (x{calls:g} per frame)"
        bars.barh(ys, widths, left=left, color=colours[g], label=name, edgecolor="white", linewidth=0.5)
        left += widths
    other = np.array([max(0.0, c["unattributed_ms"]) for c in cells])
    bars.barh(ys, other, left=left, color="0.75", label="rest of the frame (pad, copies, Python)")
    for y, cell in zip(ys, cells, strict=True):
        mean = cell["end_to_end"]["mean_ms"]
        bars.text(max(left[y] + other[y], mean), y, f" {mean:.0f} ms, {cell['throughput_fps']:.3g} fps", va="center")
    bars.set_xlabel("mean latency per frame (ms), by graph")
    bars.set_title("Where a frame's time goes")
    bars.set_xlim(0, float(max(left + other).max()) * 1.35)
    handles, names = bars.get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=min(4, len(names)), fontsize="small")

    samples = [np.asarray(c["end_to_end"]["samples_ms"]) for c in cells]
    # `orientation` replaced `vert` in matplotlib 3.10 (and `vert` warns from 3.11).
    sideways = {"orientation": "horizontal"} if matplotlib.__version_info__ >= (3, 10) else {"vert": False}
    dist.boxplot(samples, positions=ys, whis=(1, 99), showfliers=False, widths=0.5, **sideways)
    rng = np.random.default_rng(0)
    for y, s in zip(ys, samples, strict=True):
        dist.scatter(s, y + rng.uniform(-0.18, 0.18, s.size), s=9, color="tab:red", alpha=0.5, zorder=3)
    lo, hi = min(s.min() for s in samples), max(s.max() for s in samples)
    if hi > 8 * lo:
        dist.set_xscale("log")
        plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
        dist.xaxis.set_major_formatter(plain)
        dist.xaxis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2, 3, 5)))  # few labels, no overlap
        dist.xaxis.set_minor_formatter(plain)
    dist.set_xlabel("end-to-end latency per frame (ms); box p25-p75, whiskers p1-p99, dots: frames")
    dist.set_title("Latency distribution")
    dist.grid(axis="x", alpha=0.3)
    bars.set_yticks(ys, labels)  # after the box plot, which sets its own ticks on the shared axis
    bars.set_ylim(len(cells) - 0.5, -0.5)  # first cell on top
    settings = result["settings"]
    fig.suptitle(
        f"UnfoldLDM-Edge benchmark: {result['model']}, {settings['iters']} frames after {settings['warmup']} "
        f"warm-up\n{environment_line(result['environment'])}",
        fontsize="medium",
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format=image_format, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def write_plot(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Render the figure and write it to `path` atomically, in the format its suffix names."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        raise InputError(f"{path}: the plot file must end in {', '.join('.' + f for f in PLOT_FORMATS)}")
    data = render(result, suffix)
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the plot ({exc.strerror or exc})") from exc
