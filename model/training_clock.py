"""Training time that leaves out the time the run was paused, so the training record stays honest.

A background training run is paused for benchmarks with `kill -STOP` and resumed with
`kill -CONT`. A process cannot see SIGSTOP, but it can see its effect: a heartbeat thread
that wakes every quarter second finds, after a pause, that much more time has passed than it
slept. Such gaps (longer than `PAUSE_GAP` seconds: load on a busy machine delays a wake-up by
milliseconds, not seconds) are left out of the hours, so the history's hours are hours of
training, not of waiting. A pause of a second or two is counted as training time.
"""

from __future__ import annotations

import threading
import time

TICK = 0.25
PAUSE_GAP = 2.0


class TrainingClock:
    def __init__(self, seconds_before: float = 0.0) -> None:
        self._start = time.perf_counter() - seconds_before
        self._run_start = time.perf_counter()
        self._paused = 0.0
        self._last = time.perf_counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, name="training-clock", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(TICK):
            with self._lock:
                self._paused += self._pending_gap(time.perf_counter())
                self._last = time.perf_counter()

    def _pending_gap(self, now: float) -> float:
        gap = now - self._last - TICK
        return gap if gap > PAUSE_GAP else 0.0

    @property
    def paused_seconds(self) -> float:
        # A pause that ended moments ago is counted even before the heartbeat has woken up to it.
        with self._lock:
            return self._paused + self._pending_gap(time.perf_counter())

    def seconds(self) -> float:
        """Training seconds of this schedule, earlier (resumed) runs included, pauses left out."""
        return time.perf_counter() - self._start - self.paused_seconds

    def run_seconds(self) -> float:
        """Training seconds of this process alone, pauses left out (for a time budget)."""
        return time.perf_counter() - self._run_start - self.paused_seconds

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
