"""What the video loop runs per frame (`process(rgb) -> rgb`), and wrappers around it.

`process` takes float32 HxWx3 RGB frames in [0, 1] and returns the same shape. A process that can
also restore the 8-bit BGR frames a source decodes as they are (e.g.
`runtime.video.restore_video.FrameRestorer`) says so with a true `takes_bgr8` and offers
`process_bgr8(bgr8, scale_rule) -> bgr8`, which must return what
`rgb_float_to_bgr8(process(bgr8_to_rgb_float(bgr8, scale_rule)))` would: the loop then hands it
those bytes and its 8-bit output goes to the sinks as bytes, so no float copy of the frame is
made around it (docs/VIDEO.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from runtime.errors import InputError
from runtime.pixels import ScaleRule

# process(rgb) -> rgb, on float32 HxWx3 RGB frames in [0, 1].
Process = Callable[[np.ndarray], np.ndarray]


def bgr8_entry(process: Process) -> Callable[[np.ndarray, ScaleRule], np.ndarray] | None:
    """`process.process_bgr8` where the process takes 8-bit BGR frames (`takes_bgr8`), else None."""
    if getattr(process, "takes_bgr8", False):
        return process.process_bgr8  # type: ignore[attr-defined]
    return None


class DelayedProcess:
    """`process` made `delay_s` seconds slower per frame: simulates a slower device.

    Useful to see how a pipeline that keeps up on a desktop GPU behaves on a Jetson that needs
    longer per frame (in `--realtime` mode the loop drops frames, and the summary says how
    many), and in tests of that behaviour. The delay is a sleep after the real work, so it
    holds no CPU and the GIL is free during it. It takes 8-bit frames where `process` does.
    """

    def __init__(self, process: Process, delay_s: float) -> None:
        if not delay_s >= 0:
            raise InputError(f"delay must be >= 0 seconds, got {delay_s}")
        self.process = process
        self.delay_s = float(delay_s)

    @property
    def takes_bgr8(self) -> bool:
        return bgr8_entry(self.process) is not None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        result = self.process(frame)
        time.sleep(self.delay_s)
        return result

    def process_bgr8(self, bgr8: np.ndarray, scale_rule: ScaleRule) -> np.ndarray:
        entry = bgr8_entry(self.process)
        if entry is None:
            raise InputError(f"{self.process!r} takes float RGB frames only")
        result = entry(bgr8, scale_rule)
        time.sleep(self.delay_s)
        return result

    def __repr__(self) -> str:
        return f"DelayedProcess({self.process!r}, delay_s={self.delay_s})"
