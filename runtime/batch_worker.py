"""The body of one batch actor: one `Pipeline`, opened once, that restores the items sent to it.

A plain class, no Ray: runtime/batch_ray.py makes it an actor (`ray.remote(BatchWorker)`), so
it can be tested, and imported, without Ray. Images go through `restore_image_file`, videos
through `restore_video_file`, the very calls runtime/restore.py makes, so the outputs are the
same bytes. Outputs are written atomically by those calls; the driver records them as done.

The crash hook is for tests of Ray's retries (docs/BATCH.md): UNFOLDLDM_BATCH_CRASH="N:MARKER"
makes the first actor that reaches its Nth item create MARKER and end its process at once
(`os._exit`, as a kill would), once per MARKER; the driver reads the variable and hands it to
every actor, so the cluster's environment need not carry it.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from pathlib import Path
from typing import Any

from runtime.batch_items import IMAGE, Item
from runtime.batch_state import DONE, FAILED
from runtime.cli_restore import open_pipeline
from runtime.errors import UnfoldError
from runtime.image_jobs import restore_image_file
from runtime.video.restore_video import restore_video_file

CRASH_HOOK_VARIABLE = "UNFOLDLDM_BATCH_CRASH"


def parse_crash_hook(text: str | None) -> tuple[int, Path] | None:
    """(N, MARKER) from "N:MARKER", None when unset; ValueError for anything else."""
    if not text:
        return None
    count, _, marker = text.partition(":")
    if not count.isdigit() or int(count) < 1 or not marker:
        raise ValueError(f"{CRASH_HOOK_VARIABLE} must be N:MARKER (N >= 1, MARKER a file path), got {text!r}")
    return int(count), Path(marker)


class BatchWorker:
    """Opens the pipeline `args` ask for (the flags of runtime/cli_restore.py) once, then
    restores batches of items; `name` is how the report calls it."""

    def __init__(
        self, args: argparse.Namespace, default_artifacts: Path, name: str, crash_hook: tuple[int, Path] | None = None
    ) -> None:
        self.name = name
        self.crash_hook = crash_hook
        self.started = 0  # items this process has begun
        self.pipeline = open_pipeline(args, default_artifacts)

    def describe(self) -> dict[str, Any]:
        """Where this actor runs and what it runs with (for the report)."""
        return {"host": socket.gethostname(), "pid": os.getpid(), "backend": self.pipeline.backend.describe()}

    def restore(self, items: list[Item]) -> list[dict[str, Any]]:
        """Restore `items` in order; for each: status done or failed, the reason, seconds,
        frames and the output's size."""
        return [self._restore_one(item) for item in items]

    def _restore_one(self, item: Item) -> dict[str, Any]:
        self.started += 1
        self._maybe_crash()
        start = time.perf_counter()
        try:
            item.target.parent.mkdir(parents=True, exist_ok=True)
            if item.kind == IMAGE:
                restore_image_file(self.pipeline, item.source, item.target)
                frames = 1
            else:
                frames = restore_video_file(self.pipeline, item.source, item.target).frames_out
            output_size = item.target.stat().st_size
        except (UnfoldError, OSError) as exc:
            return {"status": FAILED, "reason": str(exc), "worker": self.name}
        except Exception as exc:  # noqa: BLE001 -- one item of an archive (a decoder's own error on
            # an odd file, say) must not stop the million others: it is recorded with its reason
            # in the report, as the batch's contract says (docs/BATCH.md).
            return {"status": FAILED, "reason": f"{type(exc).__name__}: {exc}", "worker": self.name}
        seconds = time.perf_counter() - start
        return {"status": DONE, "seconds": seconds, "frames": frames, "output_size": output_size, "worker": self.name}

    def _maybe_crash(self) -> None:
        if self.crash_hook is None:
            return
        count, marker = self.crash_hook
        if self.started != count:
            return
        try:
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            return  # an actor died here already: the retry goes through
        os._exit(1)

    def close(self) -> None:
        self.pipeline.close()
