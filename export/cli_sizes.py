"""Frame sizes on the command line: the parser lives in `runtime/cli_sizes.py`, shared with the
runtime CLIs (export may import runtime, not the other way round)."""

from runtime.cli_sizes import frame_size

__all__ = ["frame_size"]
