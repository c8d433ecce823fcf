"""Frame sizes on the command line: the parser lives in `runtime/cli_sizes.py`, shared with the
runtime CLIs (export may import runtime, not the other way round); the export's size defaults are
here, so a CLI can name them without importing the modules that use them."""

from runtime.cli_sizes import frame_size

# (height, width) at which export/cpu_timing.py times the CPU backends: large enough that
# per-graph overheads do not decide.
DEFAULT_CPU_TIMING_SIZE = (360, 640)

__all__ = ["DEFAULT_CPU_TIMING_SIZE", "frame_size"]
