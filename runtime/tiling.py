"""Overlapped tiles and weighted blending, numpy only.

Tiles have one fixed size (so a static engine per tile size serves every frame) and start at
multiples of the model's pad multiple, so the U-Net, Haar and decomposed grids line up with
the whole-frame grid. On each axis the fewest tiles that overlap by at least `overlap` pixels
are spread evenly from the frame's start to its end. Outputs are blended with a weight mask that ramps
linearly across each interior overlap and is 1 elsewhere (frame borders included), then
normalised by the summed weights, so the cross-fade sums to one exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.errors import InputError


@dataclass(frozen=True)
class Tile:
    top: int
    left: int
    height: int
    width: int

    @property
    def rows(self) -> slice:
        return slice(self.top, self.top + self.height)

    @property
    def cols(self) -> slice:
        return slice(self.left, self.left + self.width)


def check_tiling(tile: int, overlap: int, multiple: int, min_size: int) -> None:
    """Tile and overlap must keep every tile a valid graph input; InputError otherwise."""
    if tile < min_size or tile % multiple:
        raise InputError(f"tile size {tile} must be a multiple of {multiple} and at least {min_size}")
    if overlap < 0 or overlap % multiple or overlap >= tile:
        raise InputError(f"tile overlap {overlap} must be a multiple of {multiple} between 0 and the tile size {tile}")


def tile_starts(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Start offsets covering [0, length) with the fewest tiles of `tile` that overlap by >=
    `overlap`, spread evenly, each a multiple of `multiple` (length and tile are multiples)."""
    if tile >= length:
        return [0]
    span = length - tile
    count = -(-(length - overlap) // (tile - overlap))
    while True:
        starts = sorted({min(span, (i * span // (count - 1)) // multiple * multiple) for i in range(count)})
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        if starts[-1] == span and max(gaps) <= tile - overlap:
            return starts
        count += 1  # rounding to the grid widened a gap: one more tile


def plan_tiles(height: int, width: int, tile: int, overlap: int, multiple: int = 1) -> list[Tile]:
    th, tw = min(tile, height), min(tile, width)
    return [
        Tile(top, left, th, tw)
        for top in tile_starts(height, tile, overlap, multiple)
        for left in tile_starts(width, tile, overlap, multiple)
    ]


def _ramp(length: int, start: int, full: int, overlap: int) -> np.ndarray:
    """1-D weights of one tile along one axis: ramps only on sides that border another tile."""
    weights = np.ones(length, dtype=np.float32)
    if overlap == 0:
        return weights
    ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / np.float32(overlap)
    n = min(overlap, length)
    if start > 0:
        weights[:n] = np.minimum(weights[:n], ramp[:n])
    if start + length < full:
        weights[length - n :] = np.minimum(weights[length - n :], ramp[:n][::-1])
    return weights


class Blender:
    """Accumulates weighted tile outputs (N, C, h, w) into a frame (N, C, H, W)."""

    def __init__(self, batch: int, channels: int, height: int, width: int, overlap: int) -> None:
        self.height, self.width, self.overlap = height, width, overlap
        self.total = np.zeros((batch, channels, height, width), dtype=np.float32)
        self.weight = np.zeros((height, width), dtype=np.float32)

    def add(self, tile: Tile, values: np.ndarray) -> None:
        mask = np.outer(
            _ramp(tile.height, tile.top, self.height, self.overlap),
            _ramp(tile.width, tile.left, self.width, self.overlap),
        )
        self.total[:, :, tile.rows, tile.cols] += values * mask
        self.weight[tile.rows, tile.cols] += mask

    def result(self) -> np.ndarray:
        """The blended frame, normalised in place (no second frame-sized array); the blender is
        spent afterwards."""
        if not np.all(self.weight > 0):
            raise AssertionError("tiles do not cover the frame")  # a planning bug, never user input
        np.divide(self.total, self.weight, out=self.total)
        return self.total
