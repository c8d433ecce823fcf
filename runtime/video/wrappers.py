"""Wrappers around a frame-processing callable (`process(frame) -> frame`)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from runtime.errors import InputError


class DelayedProcess:
    """`process` made `delay_s` seconds slower per frame: simulates a slower device.

    Useful to see how a pipeline that keeps up on a desktop GPU behaves on a Jetson that needs
    longer per frame (in `--realtime` mode the loop drops frames, and the summary says how
    many), and in tests of that behaviour. The delay is a sleep after the real work, so it
    holds no CPU and the GIL is free during it.
    """

    def __init__(self, process: Callable[[np.ndarray], np.ndarray], delay_s: float) -> None:
        if not delay_s >= 0:
            raise InputError(f"delay must be >= 0 seconds, got {delay_s}")
        self.process = process
        self.delay_s = float(delay_s)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        result = self.process(frame)
        time.sleep(self.delay_s)
        return result

    def __repr__(self) -> str:
        return f"DelayedProcess({self.process!r}, delay_s={self.delay_s})"
