"""What a batch run knows about its items: the done list kept in OUT, and the run's report.

The done list (`OUT/.batch_done.jsonl`, one JSON line per restored item, appended and flushed
by the driver as results come back) is what makes a run resumable: an item is skipped when
its line says the same source (size and modification time), the same settings (everything
that changes the pixels: the artifacts' manifest, backend, device, precision, tiling, memory
budget, backend options) and an output of the recorded size that still exists. An output is
written atomically before its line is appended, so a line never names a partial file; a
line cut short by a kill is ignored, and its item is simply done again. No Ray here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.batch_items import Item
from runtime.errors import InputError
from runtime.manifest import MANIFEST_NAME, sha256_file

DONE_LIST_NAME = ".batch_done.jsonl"
REPORT_NAME = "batch_report.json"

DONE = "done"
SKIPPED = "skipped"
FAILED = "failed"
NOT_RUN = "not_run"  # the run was interrupted first


def settings_fingerprint(artifacts: Path, settings: Mapping[str, Any]) -> str:
    """A short hash of the artifacts' manifest and the settings that change the output pixels."""
    described = {"manifest_sha256": sha256_file(artifacts / MANIFEST_NAME), **settings}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:16]


class DoneList:
    """The items of OUT restored by earlier runs (and by this one, as it goes)."""

    def __init__(self, out: Path) -> None:
        self.path = out / DONE_LIST_NAME
        self.records: dict[str, dict[str, Any]] = {}
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace") if self.path.is_file() else ""
        except OSError as exc:
            raise InputError(f"{self.path}: cannot be read ({exc.strerror or exc})") from exc
        if text:
            for line in text.splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # cut short by a kill: that item is done again
                if isinstance(record, dict) and isinstance(record.get("output"), str):
                    self.records[record["output"]] = record

    def is_done(self, item: Item, fingerprint: str) -> bool:
        record = self.records.get(item.relative)
        if record is None or item.size < 0:
            return False
        try:
            output_size = item.target.stat().st_size
        except OSError:
            return False
        return (
            record.get("size") == item.size
            and record.get("mtime_ns") == item.mtime_ns
            and record.get("settings") == fingerprint
            and record.get("output_size") == output_size
        )

    def add(self, done: list[tuple[Item, int]], fingerprint: str) -> None:
        """Record (item, output size) pairs, flushed to disk before returning."""
        lines = []
        for item, output_size in done:
            record = {
                "output": item.relative,
                "source": str(item.source),
                "size": item.size,
                "mtime_ns": item.mtime_ns,
                "settings": fingerprint,
                "output_size": output_size,
            }
            self.records[item.relative] = record
            lines.append(json.dumps(record) + "\n")
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.writelines(lines)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise InputError(f"{self.path}: cannot be written ({exc.strerror or exc})") from exc


@dataclass
class ItemResult:
    """How one item ended; `worker` names the actor that restored it."""

    item: Item
    status: str
    reason: str | None = None
    seconds: float = 0.0
    frames: int = 0
    worker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "input": str(self.item.source),
            "output": self.item.relative,
            "kind": self.item.kind,
            "status": self.status,
        }
        if self.reason is not None:
            entry["reason"] = self.reason
        if self.status == DONE:
            entry.update(seconds=round(self.seconds, 4), frames=self.frames, worker=self.worker)
        return entry


@dataclass
class BatchReport:
    """Every item's result, in the order the items were found, and the throughput figures."""

    items: list[Item]
    settings: dict[str, Any]
    results: dict[str, ItemResult] = field(default_factory=dict)
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> what the actor said at start
    startup_s: float = 0.0  # connecting and opening every actor's pipeline
    wall_s: float = 0.0  # from the first batch sent to the last result: what items/s is over
    interrupted: bool = False

    def record(self, result: ItemResult) -> None:
        self.results[result.item.relative] = result

    def count(self, status: str) -> int:
        return sum(1 for r in self.results.values() if r.status == status)

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.results.values() if r.status == DONE)

    def per_worker(self) -> list[dict[str, Any]]:
        """Items, frames and busy time per actor; items/s over the time it spent restoring."""
        rows: dict[str, dict[str, Any]] = {}
        for result in self.results.values():
            if result.status != DONE or result.worker is None:
                continue
            row = rows.setdefault(result.worker, {"worker": result.worker, "items": 0, "frames": 0, "busy_s": 0.0})
            row["items"] += 1
            row["frames"] += result.frames
            row["busy_s"] += result.seconds
        for name, row in rows.items():
            row.update(self.workers.get(name, {}))
            busy = row["busy_s"]
            row["busy_s"] = round(busy, 3)
            row["items_per_s"] = round(row["items"] / busy, 3) if busy > 0 else None
        return sorted(rows.values(), key=lambda r: r["worker"])

    def to_dict(self) -> dict[str, Any]:
        done = self.count(DONE)
        rate = self.wall_s if self.wall_s > 0 else None
        summary = {
            "items": len(self.items),
            DONE: done,
            SKIPPED: self.count(SKIPPED),
            FAILED: self.count(FAILED),
            NOT_RUN: len(self.items) - len(self.results),
            "frames": self.frames,
            "startup_s": round(self.startup_s, 3),
            "wall_s": round(self.wall_s, 3),
            "items_per_s": round(done / rate, 3) if rate else None,
            "frames_per_s": round(self.frames / rate, 3) if rate else None,
            "interrupted": self.interrupted,
        }
        results = [self.results[i.relative].to_dict() for i in self.items if i.relative in self.results]
        not_run = [
            {"input": str(i.source), "output": i.relative, "kind": i.kind, "status": NOT_RUN}
            for i in self.items
            if i.relative not in self.results
        ]
        return {"settings": self.settings, "summary": summary, "workers": self.per_worker(), "items": results + not_run}
