"""Frame sizes on the command line: always WIDTHxHEIGHT (as in "1280x720"), returned as (h, w).

Shared by the runtime and export CLIs (`export/cli_sizes.py` re-exports it: export may import
runtime, not the other way round).
"""

from __future__ import annotations

import argparse


def frame_size(text: str) -> tuple[int, int]:
    """argparse type: "1280x720" -> (720, 1280)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1280x720, got {text!r}") from exc
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"width and height must be positive, got {text!r}")
    return height, width


def frame_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """argparse type: "256x256,1280x720" -> ((256, 256), (720, 1280)), duplicates dropped."""
    sizes = [frame_size(part.strip()) for part in text.split(",") if part.strip()]
    if not sizes:
        raise argparse.ArgumentTypeError("expected one or more WIDTHxHEIGHT sizes, comma-separated")
    return tuple(dict.fromkeys(sizes))
