"""The Ray part of runtime/batch.py: the cluster, the pool of actors and the loop that feeds them.

Ray core actors rather than Ray Data: a video is one long unit of work whose frames must stay
in order on one worker, and each item's result (done, or failed with its reason) must come back
to the driver to be recorded; a pool of actors fed batches of items by one loop gives both, and
Ray's own actor restarts (`max_restarts`) and task retries (`max_task_retries`) re-run the batch
of an actor that died. docs/BATCH.md tells the whole design.

Only runtime/batch.py imports this module, inside its `main`, so that Ray is never imported by
the single-machine tools (the import-linter contract in pyproject.toml holds it).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from tqdm import tqdm

from runtime.batch_items import Item
from runtime.batch_state import DONE, FAILED, BatchReport, ItemResult
from runtime.batch_worker import CRASH_HOOK_VARIABLE, BatchWorker, parse_crash_hook
from runtime.errors import InputError, UnfoldError

log = logging.getLogger(__name__)


class ClusterError(UnfoldError):
    """The cluster could not be reached, or its actors could not start."""


def connect(address: str | None, quiet: bool) -> bool:
    """Join the cluster at `address`, or start a local one on this machine; True when this call
    started Ray (so the caller shuts it down). A Ray already initialised in this process (a test's
    cluster, a notebook's) is used as it is."""
    if ray.is_initialized():
        return False
    level = logging.WARNING if quiet else logging.INFO
    try:
        # "local" starts a new local cluster even where `ray start` left one running.
        ray.init(address=address or "local", include_dashboard=False, logging_level=level, log_to_driver=not quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc}") from exc
    return True


def disconnect() -> None:
    """Shut down the Ray this process started (a local cluster ends with it)."""
    ray.shutdown()


def actor_count(args: argparse.Namespace, batches: int) -> int:
    """--actors, else as many as the cluster's GPUs (with --gpus-per-actor) or CPUs hold; never
    more than there are batches."""
    if args.actors:
        return min(args.actors, batches)
    resources = ray.cluster_resources()
    if args.gpus_per_actor:
        fits = resources.get("GPU", 0.0) / args.gpus_per_actor
    else:
        fits = resources.get("CPU", 1.0) / args.cpus_per_actor
    return max(1, min(int(math.floor(fits + 1e-9)), batches))


def _start_actors(args: argparse.Namespace, default_artifacts: Path, count: int, report: BatchReport) -> list[Any]:
    try:
        crash_hook = parse_crash_hook(os.environ.get(CRASH_HOOK_VARIABLE))
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    remote = ray.remote(BatchWorker).options(
        num_cpus=args.cpus_per_actor,
        num_gpus=args.gpus_per_actor or 0,
        max_restarts=args.retries,
        max_task_retries=args.retries,
    )
    names = [f"actor-{i}" for i in range(count)]
    actors = [remote.remote(args, default_artifacts, name, crash_hook) for name in names]
    try:
        described = ray.get([actor.describe.remote() for actor in actors])
    except ray.exceptions.RayError as exc:
        _stop(actors)
        raise ClusterError(f"the actors could not open the pipeline: {_reason(exc)}") from exc
    report.workers.update(zip(names, described, strict=True))
    return actors


def _reason(exc: BaseException) -> str:
    """The last line of a Ray error: the original error's message, without Ray's traceback."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _stop(actors: list[Any]) -> None:
    for actor in actors:
        ray.kill(actor, no_restart=True)


def restore_on_ray(
    batches: list[list[Item]],
    args: argparse.Namespace,
    default_artifacts: Path,
    report: BatchReport,
    on_done: Callable[[list[tuple[Item, int]]], None],
) -> None:
    """Restore `batches` on a pool of actors, recording every item's result in `report` and
    handing the restored ones to `on_done` as they come back. Ctrl-C kills the actors and marks
    the report interrupted (outputs are atomic, so nothing is left half-written)."""
    opening = time.perf_counter()
    count = actor_count(args, len(batches))
    actors = _start_actors(args, default_artifacts, count, report)
    report.startup_s += time.perf_counter() - opening
    todo: deque[list[Item]] = deque(batches)
    idle = list(actors)
    running: dict[Any, tuple[Any, list[Item]]] = {}
    bar = tqdm(total=sum(map(len, batches)), unit="item", desc="batch", disable=args.quiet, dynamic_ncols=True)
    started = time.perf_counter()
    try:
        while todo or running:
            while idle and todo:
                actor, batch = idle.pop(), todo.popleft()
                running[actor.restore.remote(batch)] = (actor, batch)
            if not running:  # every actor is gone: what is left cannot run
                for batch in todo:
                    _fail(report, batch, "no actor left (each died more often than --retries allows)")
                todo.clear()
                break
            (ref,), _ = ray.wait(list(running), num_returns=1)
            actor, batch = running.pop(ref)
            try:
                results = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                # Ray restarted it and re-ran the batch --retries times already: it is gone for good.
                _fail(report, batch, f"the actor died while restoring this batch ({_reason(exc)})")
            except ray.exceptions.RayError as exc:
                _fail(report, batch, _reason(exc))
                idle.append(actor)
            else:
                _record(report, batch, results, on_done)
                idle.append(actor)
            bar.update(len(batch))
            elapsed = time.perf_counter() - started
            bar.set_postfix(frames_per_s=f"{report.frames / elapsed:.2f}" if elapsed > 0 else "-", refresh=False)
    except KeyboardInterrupt:
        report.interrupted = True
        log.warning("interrupted: stopping the actors; finished items are kept, the rest run next time")
    finally:
        report.wall_s = time.perf_counter() - started
        bar.close()
        _stop(actors)


def _fail(report: BatchReport, batch: list[Item], reason: str) -> None:
    for item in batch:
        report.record(ItemResult(item, FAILED, reason))


def _record(
    report: BatchReport,
    batch: list[Item],
    results: list[dict[str, Any]],
    on_done: Callable[[list[tuple[Item, int]]], None],
) -> None:
    done = []
    for item, result in zip(batch, results, strict=True):
        if result["status"] == DONE:
            report.record(ItemResult(item, DONE, None, result["seconds"], result["frames"], result["worker"]))
            done.append((item, result["output_size"]))
        else:
            report.record(ItemResult(item, FAILED, result["reason"], worker=result["worker"]))
    if done:
        on_done(done)
