"""The video loop: capture, inference and output in three threads joined by bounded queues.

```
source --capture--> [to_infer: queue_size] --inference--> [to_output: queue_size] --output--> sinks
```

`process` is any callable `process(rgb) -> rgb` on float32 HxWx3 frames in [0, 1] that returns
the same shape (the restoration pipeline, or anything else). It runs in one thread, so frames
come out in order, and it must not change its input in place (the input also goes to the sinks,
e.g. `SideBySide`). A process that takes 8-bit BGR frames too (`takes_bgr8`, see
runtime/video/wrappers.py; `FrameRestorer`) gets the bytes the source decoded, and the sinks get
its 8-bit output (`FrameSink.write_bgr8`): no float copy of the frame is made in the loop, and a
CUDA backend moves bytes (docs/VIDEO.md). Frames the source delivers as floats only (16-bit, a
resized live frame) go through `process(rgb)`. For any other process, frames are converted to
float in the capture thread, as they always were.

- Default (files): capture blocks while `to_infer` is full, so no frame is lost.
- `realtime=True`: when `to_infer` is full the OLDEST queued frame is dropped and counted, so
  the output follows the source with bounded delay. A non-live source (a file, a sequence) is
  then read at its own frame rate, as a camera would deliver it.
- Ctrl-C in the calling thread (or a KeyboardInterrupt raised inside a worker, e.g. inside
  `process`), or a sink asking to stop (preview 'q'): capture stops, the frame being restored is
  finished, everything already restored is written, every sink is closed (files are finalised)
  and the summary is returned with `end_reason` saying why. A second Ctrl-C stops writing too
  (sinks are still closed).
- An exception in a worker stops every thread the same way and is raised once they are done;
  frames already restored are still written unless it was the output itself that failed.

The source and the sinks belong to `run_video` once handed in: it closes them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from runtime.errors import InputError, ShapeError
from runtime.video.sinks import FrameSink
from runtime.video.sources import Frame, FrameSource
from runtime.video.wrappers import DelayedProcess, Process, bgr8_entry

__all__ = ["Controller", "DelayedProcess", "VideoSummary", "run_video"]

log = logging.getLogger(__name__)

# How often a blocked thread looks at the stop flags (seconds).
_POLL_S = 0.05
# How long to wait for the capture and inference threads once the output has finished.
_JOIN_TIMEOUT_S = 5.0
_END = object()  # end-of-stream marker passed down the queues

END_OF_INPUT = "end of input"
INTERRUPTED = "interrupted"
STOPPED_BY_SINK = "stopped by a sink (preview closed)"
SOURCE_LOST = "live source lost (reconnect attempts used up)"


class Controller(Protocol):
    """Told, after every restored frame, how far behind the loop is.

    Called from the inference thread (the one that calls `process`), so it may change how
    `process` works (e.g. fewer stages) without locks. `seconds` is the time from capture to
    the end of that frame's processing; `queue_depth` is how many frames wait for inference.
    """

    def on_latency(self, seconds: float, queue_depth: int) -> None: ...


@dataclass(frozen=True)
class VideoSummary:
    """What a video run did. Latencies are capture -> written; None when no frame was written.

    `frames_in == frames_out + dropped + discarded`: `dropped` are real-time drops, `discarded`
    frames were captured but not restored because the run stopped early.
    `process_ms_mean` is the time inside `process` alone, to compare video throughput with
    pure inference throughput.
    """

    frames_in: int
    frames_out: int
    dropped: int
    discarded: int
    reconnects: int
    decode_errors: int
    wall_s: float
    fps: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    process_ms_mean: float | None
    realtime: bool
    end_reason: str

    @property
    def interrupted(self) -> bool:
        return self.end_reason == INTERRUPTED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """A readable multi-line summary."""
        frames = f"{self.frames_in} in, {self.frames_out} out, {self.dropped} dropped"
        if self.discarded:
            frames += f", {self.discarded} not restored (stopped early)"
        if self.latency_p50_ms is None or self.latency_p99_ms is None:
            latency = "n/a (no frame written)"
        else:
            latency = f"p50 {self.latency_p50_ms:.1f} ms, p99 {self.latency_p99_ms:.1f} ms (capture to written)"
        if self.process_ms_mean is None:
            processing = "n/a (no frame restored)"
        else:
            pure_fps = 1000.0 / self.process_ms_mean if self.process_ms_mean > 0 else float("inf")
            processing = f"{self.process_ms_mean:.1f} ms per frame ({pure_fps:.1f} fps of pure processing)"
        mode = "real-time" if self.realtime else "every frame"
        return "\n".join(
            [
                f"frames      {frames}",
                f"source      {self.decode_errors} decode errors, {self.reconnects} reconnects",
                f"time        {self.wall_s:.2f} s, {self.fps:.1f} fps out ({mode})",
                f"latency     {latency}",
                f"processing  {processing}",
                f"ended       {self.end_reason}",
            ]
        )


@dataclass(eq=False)
class _Item:
    frame: Frame
    captured_at: float  # time.perf_counter() when the frame left the source
    output: np.ndarray | None = None
    output_is_bgr8: bool = False  # restored from frame.bgr8 into 8-bit BGR, else float RGB


class _Run:
    """State shared by the three threads of one `run_video` call."""

    def __init__(
        self,
        source: FrameSource,
        process: Process,
        sinks: Sequence[FrameSink],
        realtime: bool,
        queue_size: int,
        controller: Controller | None,
        bar: tqdm | None,
    ) -> None:
        self.source = source
        self.process = process
        self.process_bgr8 = bgr8_entry(process)
        self.sinks = list(sinks)
        self.realtime = realtime
        self.controller = controller
        self.bar = bar
        self.to_infer: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.to_output: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.stop = threading.Event()  # finish the frame in hand, write what is restored, end
        self.abort = threading.Event()  # the output is gone: every thread leaves now
        self.lock = threading.Lock()
        self.errors: list[BaseException] = []
        self.interrupted = False
        self.stopped_by_sink = False
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0
        self.latencies_s: list[float] = []
        self.process_s: list[float] = []
        self.output_done_at: float | None = None

    # ----------------------------------------------------------------- control

    def request_stop(self) -> None:
        self.stop.set()
        self.source.request_stop()

    def fail(self, exc: BaseException, fatal: bool = False) -> None:
        with self.lock:
            if isinstance(exc, KeyboardInterrupt):
                self.interrupted = True
            else:
                self.errors.append(exc)
        if fatal:
            self.abort.set()
        self.request_stop()

    def put(self, target: queue.Queue[Any], item: object, honour_stop: bool) -> bool:
        """Blocking put that gives up on abort (and on stop when `honour_stop`)."""
        while not self.abort.is_set():
            if honour_stop and self.stop.is_set():
                return False
            try:
                target.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def put_dropping_oldest(self, item: _Item) -> None:
        """Real-time put: make room by dropping the oldest queued frame. Only capture puts here."""
        try:
            self.to_infer.put_nowait(item)
        except queue.Full:
            try:
                self.to_infer.get_nowait()
                self.dropped += 1
            except queue.Empty:  # inference took it meanwhile: there is room now
                pass
            self.to_infer.put_nowait(item)

    # ----------------------------------------------------------------- threads

    def capture(self) -> None:
        pace = self.realtime and not self.source.is_live
        clock_zero: float | None = None
        try:
            for frame in self.source:
                if self.stop.is_set():
                    return
                if pace:
                    # Deliver a file as a camera would: frame n at clock_zero + its timestamp.
                    if clock_zero is None:
                        clock_zero = time.perf_counter() - frame.timestamp_s
                    wait = clock_zero + frame.timestamp_s - time.perf_counter()
                    if wait > 0 and self.stop.wait(wait):
                        return
                if self.process_bgr8 is None or frame.bgr8 is None:
                    frame.to_rgb()  # a float process: the float copy is made here, off the inference thread
                item = _Item(frame, time.perf_counter())
                self.frames_in += 1
                if self.realtime:
                    self.put_dropping_oldest(item)
                elif not self.put(self.to_infer, item, honour_stop=True):
                    return
            self.put(self.to_infer, _END, honour_stop=True)
        except BaseException as exc:
            self.fail(exc)
        finally:
            # Released in the thread that read from it (see FrameSource.close).
            self.source.close()

    def infer(self) -> None:
        try:
            while not self.stop.is_set() and not self.abort.is_set():
                try:
                    item = self.to_infer.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                self.restore(item)
                if self.controller is not None:
                    self.controller.on_latency(time.perf_counter() - item.captured_at, self.to_infer.qsize())
                if not self.put(self.to_output, item, honour_stop=False):
                    return
        except BaseException as exc:
            self.fail(exc)
        finally:
            self.put(self.to_output, _END, honour_stop=False)

    def restore(self, item: _Item) -> None:
        """Run the process on the item's frame, timed; its output goes into the item."""
        frame, process_bgr8 = item.frame, self.process_bgr8
        as_bgr8 = process_bgr8 is not None and frame.bgr8 is not None
        given = frame.bgr8 if as_bgr8 else frame.rgb
        started = time.perf_counter()
        output = process_bgr8(given, frame.scale_rule) if as_bgr8 else self.process(given)
        self.process_s.append(time.perf_counter() - started)
        if not isinstance(output, np.ndarray) or output.shape != given.shape:
            got = output.shape if isinstance(output, np.ndarray) else type(output).__name__
            raise ShapeError(f"process returned {got} for a frame of shape {given.shape}; it must keep the shape")
        if as_bgr8 and output.dtype != np.uint8:
            raise ShapeError(f"process_bgr8 returned {output.dtype} for an 8-bit frame; it must return uint8")
        item.output_is_bgr8 = as_bgr8
        item.output = output if as_bgr8 or output.dtype == np.float32 else output.astype(np.float32)

    def write(self, item: _Item) -> None:
        """Hand a restored item to every sink, as 8-bit BGR or float RGB, as it was restored."""
        assert item.output is not None
        for sink in self.sinks:
            if item.output_is_bgr8:
                assert item.frame.bgr8 is not None
                sink.write_bgr8(item.output, item.frame.bgr8)
            else:
                sink.write(item.output, item.frame.rgb)

    def output(self) -> None:
        try:
            while not self.abort.is_set():
                try:
                    item = self.to_output.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                self.write(item)
                self.latencies_s.append(time.perf_counter() - item.captured_at)
                self.frames_out += 1
                if self.bar is not None:
                    self.update_bar()
                if any(sink.wants_stop for sink in self.sinks) and not self.stop.is_set():
                    log.info("a sink asked to stop")
                    self.stopped_by_sink = True
                    self.request_stop()
        except BaseException as exc:
            self.fail(exc, fatal=True)
        finally:
            self.output_done_at = time.perf_counter()
            self.close_sinks()

    def update_bar(self) -> None:
        """Count written and dropped frames, so that the bar of a real-time run still ends full."""
        assert self.bar is not None
        dropped = self.dropped
        self.bar.update(self.frames_out + dropped - self.bar.n)
        if dropped:
            self.bar.set_postfix(dropped=dropped, refresh=False)

    def close_sinks(self) -> None:
        try:
            with ExitStack() as stack:  # closes every sink even when one close raises
                for sink in self.sinks:
                    stack.callback(sink.close)
        except BaseException as exc:
            self.fail(exc, fatal=True)


class _Worker:
    """A daemon thread that sets `done` when its target has returned (or raised)."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self.name = name
        self.done = threading.Event()
        self.started = False
        self._target = target
        self._thread = threading.Thread(target=self._body, name=name, daemon=True)

    def _body(self) -> None:
        try:
            self._target()
        finally:
            self.done.set()

    def start(self) -> None:
        self._thread.start()
        self.started = True


def run_video(
    source: FrameSource,
    process: Process,
    sinks: Sequence[FrameSink],
    realtime: bool = False,
    queue_size: int = 4,
    controller: Controller | None = None,
    progress: bool = True,
) -> VideoSummary:
    """Restore every frame of `source` with `process` and hand the results to `sinks`, in order.

    See the module docstring for threads, dropping and stopping. Returns the summary (also
    after Ctrl-C: `end_reason == "interrupted"`); raises the first worker exception after all
    threads have stopped and every sink is closed. A tqdm bar is shown when `progress` and the
    source knows its frame count.
    """
    if not isinstance(queue_size, int) or queue_size < 1:
        raise InputError(f"queue_size must be a positive integer, got {queue_size!r}")
    if not callable(process):
        raise InputError(f"process must be callable, got {type(process).__name__}")
    bar = None
    if progress and source.frame_count is not None:
        bar = tqdm(total=source.frame_count, unit="frame", desc="video", dynamic_ncols=True)
    run = _Run(source, process, sinks, realtime, queue_size, controller, bar)
    # The calling thread waits on "done" events, never in Thread.join: in CPython 3.10 and 3.11 a
    # KeyboardInterrupt that lands inside join() marks the joined thread as stopped while it
    # still runs (the bpo-45274 clean-up), and we would return before the sinks are closed.
    workers = [
        _Worker(run.output, "video-output"),  # started first: it is the one that closes the sinks
        _Worker(run.infer, "video-inference"),
        _Worker(run.capture, "video-capture"),
    ]
    output_worker, infer_worker, capture_worker = workers
    interrupts = 0

    def on_interrupt(fatal: bool) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1 and not fatal:
            log.warning("interrupted: finishing the frames already restored (Ctrl-C again to stop writing)")
        run.fail(KeyboardInterrupt(), fatal=fatal or interrupts > 1)

    def wait_for(worker: _Worker, timeout_s: float | None) -> bool:
        """Wait until `worker` has finished, staying responsive to Ctrl-C; False on timeout."""
        deadline = None if timeout_s is None else time.perf_counter() + timeout_s
        while deadline is None or time.perf_counter() < deadline:
            try:
                if worker.done.wait(_POLL_S):
                    return True
            except KeyboardInterrupt:
                on_interrupt(fatal=False)
        return False

    started = time.perf_counter()
    try:
        try:
            for worker in workers:
                worker.start()
        except KeyboardInterrupt:
            on_interrupt(fatal=True)  # not every thread may run: leave at once
        if not output_worker.started:
            run.close_sinks()
        if not capture_worker.started:
            source.close()
        # The output thread ends last; the others end on their own once it has.
        if output_worker.started:
            wait_for(output_worker, None)
        for worker in (infer_worker, capture_worker):
            if worker.started and not wait_for(worker, _JOIN_TIMEOUT_S):
                log.warning("%s is still blocked (in the source or in process); leaving it behind", worker.name)
    finally:
        if bar is not None:
            bar.close()

    if run.errors:
        for extra in run.errors[1:]:
            log.error("also failed: %r", extra)
        raise run.errors[0]

    wall_s = (run.output_done_at or time.perf_counter()) - started
    latencies_ms = np.asarray(run.latencies_s) * 1000.0
    p50, p99 = (float(v) for v in np.percentile(latencies_ms, [50, 99])) if latencies_ms.size else (None, None)
    if run.interrupted:
        end_reason = INTERRUPTED
    elif run.stopped_by_sink:
        end_reason = STOPPED_BY_SINK
    elif source.lost:
        end_reason = SOURCE_LOST
    else:
        end_reason = END_OF_INPUT
    return VideoSummary(
        frames_in=run.frames_in,
        frames_out=run.frames_out,
        dropped=run.dropped,
        discarded=run.frames_in - run.frames_out - run.dropped,
        reconnects=source.reconnects,
        decode_errors=source.decode_errors,
        wall_s=wall_s,
        fps=run.frames_out / wall_s if wall_s > 0 else 0.0,
        latency_p50_ms=p50,
        latency_p99_ms=p99,
        process_ms_mean=float(np.mean(run.process_s)) * 1000.0 if run.process_s else None,
        realtime=realtime,
        end_reason=end_reason,
    )
