"""Whole frame or tiles: a frame's peak memory, estimated from the manifest before it runs.

The estimate is the largest graph's activations (graphs run one after another, and the
backend's memory is shared between them) plus the frame-sized arrays the pipeline holds
meanwhile. It depends only on the manifest, the frame size and the budget, never on the
machine's state, so the same input always takes the same path and gives the same output.

Tiled, the gradient and proximal graphs run per tile, but the prior graph still runs once per
stage on the whole frame, and the whole-frame arrays (input, current estimate, blend
accumulators) stay on the host: those set a floor that no tile size goes below.

The process's own memory (libraries, weights: a few hundred MB) is not part of the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.manifest import Manifest

DEFAULT_MAX_MEMORY = 2 * 2**30  # a fixed default, so the choice never depends on free memory
# Largest first: bigger tiles mean fewer seams and less overlap work.
CANDIDATE_TILES = (2048, 1536, 1024, 768, 512, 384, 256, 192, 128)
# One 3-channel float32 frame per pixel.
FRAME_BYTES_PER_PIXEL = 3 * 4
# Frame-sized arrays held while a graph runs on the whole frame: the caller's input, the
# padded NCHW input y, and the graph's image input (x or v); the graph's output is counted
# in its activations. Restoring and writing the output afterwards holds about as many.
WHOLE_FRAME_COPIES = 3
# Tiled, tiles are cut from the caller's input (no y): the input and v while the whole-frame
# prior runs; the input, x or v, and a blend accumulator with its weights (a third of a
# frame) while tiles run.
PRIOR_FRAME_COPIES = 2
TILED_FRAME_COPIES = 3 + 1 / 3


@dataclass(frozen=True)
class TilePlan:
    """How one frame size runs: `tile` None means whole. Byte figures are estimates (None
    where the manifest records no activation sizes)."""

    tile: int | None
    whole_bytes: int | None
    tiled_bytes: int | None = None
    automatic: bool = False  # chosen by the budget, not asked for
    fits: bool = True  # False: even the smallest tile is estimated over the budget


def _activations(manifest: Manifest, graphs: list[str], height: int, width: int) -> int | None:
    records = [manifest.graph(g).activation_bytes for g in graphs]
    if not records or any(r is None for r in records):
        return None
    return max(r.at(height, width) for r in records if r is not None)


def whole_frame_bytes(manifest: Manifest, batch: int, height: int, width: int) -> int | None:
    """Estimated peak bytes of restoring a (padded) height x width batch whole."""
    graphs = _activations(manifest, manifest.graphs_in_use(), height, width)
    if graphs is None:
        return None
    return batch * (graphs + WHOLE_FRAME_COPIES * FRAME_BYTES_PER_PIXEL * height * width)


def tiled_bytes(manifest: Manifest, batch: int, height: int, width: int, tile: int) -> int | None:
    """Estimated peak bytes of restoring a (padded) height x width batch in tile x tile tiles."""
    floor = tiled_floor_bytes(manifest, batch, height, width)
    halves = [name for stage in manifest.stages for name in (stage.gradient, stage.proximal)]
    per_tile = _activations(manifest, halves, min(tile, height), min(tile, width))
    if per_tile is None or floor is None:
        return None
    frame = FRAME_BYTES_PER_PIXEL * height * width
    return max(floor, batch * int(per_tile + TILED_FRAME_COPIES * frame))


def tiled_floor_bytes(manifest: Manifest, batch: int, height: int, width: int) -> int | None:
    """What no tile size goes below: the whole-frame prior beside the input and v."""
    priors = [stage.prior for stage in manifest.stages if stage.prior is not None]
    prior = _activations(manifest, priors, height, width) if priors else 0
    if prior is None:
        return None
    return batch * int(prior + PRIOR_FRAME_COPIES * FRAME_BYTES_PER_PIXEL * height * width)


def candidate_tiles(manifest: Manifest, overlap: int) -> list[int]:
    """CANDIDATE_TILES rounded down to the model multiple, each a valid tile for `overlap`."""
    multiple, smallest = manifest.pad_multiple, manifest.min_size
    tiles = []
    for size in CANDIDATE_TILES:
        tile = size // multiple * multiple
        if tile >= smallest and tile > overlap and tile not in tiles:
            tiles.append(tile)
    return tiles


def plan_tiles_for_budget(
    manifest: Manifest, batch: int, height: int, width: int, budget: int, overlap: int
) -> TilePlan:
    """Whole when the estimate fits `budget`; else the largest candidate tile that fits. When
    the floor (the whole-frame prior) is itself over the budget, no tile can fit: then the
    largest tile that adds nothing above the floor (`fits` False), since smaller tiles would
    cost time and quality for no memory. Whole, too, when the manifest records no activation
    sizes (artifacts exported before they were recorded)."""
    whole = whole_frame_bytes(manifest, batch, height, width)
    floor = tiled_floor_bytes(manifest, batch, height, width)
    if whole is None or floor is None or whole <= budget:
        return TilePlan(None, whole)
    tiles = [t for t in candidate_tiles(manifest, overlap) if t < max(height, width)]
    if not tiles:
        return TilePlan(None, whole, fits=False)
    limit = max(budget, floor)
    for tile in tiles:
        estimate = tiled_bytes(manifest, batch, height, width, tile)
        if estimate is not None and estimate <= limit:
            return TilePlan(tile, whole, estimate, automatic=True, fits=estimate <= budget)
    return TilePlan(tiles[-1], whole, tiled_bytes(manifest, batch, height, width, tiles[-1]), True, fits=False)


def format_bytes(count: float) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def parse_size(text: str) -> int:
    """'2GiB', '1.5G', '512MiB', '512M', '4096' (bytes) -> bytes; ValueError otherwise."""
    units = {"": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
             "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}  # fmt: skip
    cleaned = text.strip().lower().replace(" ", "")
    number = cleaned.rstrip("kmgtib")
    unit = cleaned[len(number) :]
    if unit not in units:
        raise ValueError(f"unknown unit in {text!r} (use B, KiB, MiB, GiB or KB, MB, GB)")
    value = float(number) * units[unit]
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{text!r} is not a positive size")
    return int(value)


def describe_plan(plan: TilePlan, width: int, height: int, budget: int) -> str | None:
    """The one line that says a frame is tiled because of the budget (None when it is not)."""
    if not plan.automatic or plan.tile is None or plan.whole_bytes is None:
        return None
    line = (
        f"{width}x{height} needs about {format_bytes(plan.whole_bytes)} whole, over --max-memory "
        f"{format_bytes(budget)}: restoring it in {plan.tile}x{plan.tile} tiles"
    )
    if plan.tiled_bytes is not None:
        line += f" (about {format_bytes(plan.tiled_bytes)})"
    if not plan.fits:
        line += "; over the budget even so, as the prior runs on the whole frame"
    return line
