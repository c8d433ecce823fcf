"""A paused training run does not count the pause as training time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="SIGSTOP is POSIX only")
def test_time_paused_with_sigstop_is_left_out() -> None:
    code = textwrap.dedent(
        """
        import sys, time
        from model.training_clock import TrainingClock
        clock = TrainingClock(seconds_before=100.0)
        print("ready", flush=True)
        sys.stdin.readline()  # the test pauses us for 3.5 s, resumes us, then writes a line
        print(f"{clock.seconds():.3f} {clock.run_seconds():.3f} {clock.paused_seconds:.3f}", flush=True)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    os.kill(child.pid, signal.SIGSTOP)
    time.sleep(3.5)
    os.kill(child.pid, signal.SIGCONT)
    out, _ = child.communicate("go\n", timeout=30)
    elapsed = time.perf_counter() - started
    total, run, paused = map(float, out.split())
    assert child.returncode == 0
    assert paused >= 3.0  # the pause was seen (less up to one tick)
    assert run < elapsed - 3.0  # and left out of this run's time
    assert total == pytest.approx(100.0 + run, abs=0.05)  # earlier runs' seconds carried over
