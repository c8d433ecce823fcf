"""Training time that leaves out the time the run was paused, so the training record stays honest.

A background training run is paused for benchmarks. Paused with `kill -TSTP PID` (not
SIGSTOP, which a process cannot see), the run notes when it stopped, stops itself, and on
`kill -CONT PID` adds the pause to the time it does not count. The history's hours are
then hours of training, not hours of waiting.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType


class TrainingClock:
    def __init__(self, seconds_before: float = 0.0) -> None:
        self._start = time.perf_counter() - seconds_before
        self._run_start = time.perf_counter()
        self.paused_seconds = 0.0
        # Signal handlers can only be set from the main thread, and SIGTSTP exists on POSIX only.
        if hasattr(signal, "SIGTSTP") and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTSTP, self._pause)

    def _pause(self, signum: int, frame: FrameType | None) -> None:
        stopped = time.perf_counter()
        os.kill(os.getpid(), signal.SIGSTOP)  # returns once SIGCONT resumes us
        self.paused_seconds += time.perf_counter() - stopped

    def seconds(self) -> float:
        """Training seconds of this schedule, earlier (resumed) runs included, pauses left out."""
        return time.perf_counter() - self._start - self.paused_seconds

    def run_seconds(self) -> float:
        """Training seconds of this process alone, pauses left out (for a time budget)."""
        return time.perf_counter() - self._run_start - self.paused_seconds

    def close(self) -> None:
        if hasattr(signal, "SIGTSTP") and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTSTP, signal.SIG_DFL)
