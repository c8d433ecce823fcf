"""Restore whole archives (folders of images, videos, lists of paths) on a Ray cluster.

    python runtime/batch.py archive/ -o restored/
    python runtime/batch.py films/ scans.txt -o restored/ --actors 2 --threads 1
    python runtime/batch.py /nfs/archive -o /nfs/restored --address auto --gpus-per-actor 1 --backend tensorrt

Without --address a local Ray cluster is started on this machine; with it, the run joins a
cluster (`auto`: the one `ray start` made here; `ray://HEAD:10001`: a remote one). INPUTS and
OUT must then lie at the same paths on every node (a shared file system), and the project must
be installed there (pip install -e .[ray]); docs/BATCH.md tells the set-up.

Inputs: folders (searched recursively; hidden files are skipped), image files, video files and
text lists (.txt, one path a line). Each item keeps its relative path under OUT; a video in a
container the sinks cannot write becomes .mkv. Images go to the actors in batches, a video is
one unit of work on one actor (its frames stay in order). Each actor opens the pipeline once,
with the same flags as runtime/restore.py, and writes the same bytes restore.py writes.

Resumable: outputs are written atomically, and OUT/.batch_done.jsonl lists the items done; a
re-run skips an item whose source (size, modification time), settings and output are
unchanged, and does the rest. An item that cannot be read or restored is recorded with its
reason and the run goes on; an actor that dies is restarted and its batch re-run (--retries).
Ctrl-C stops the actors: finished outputs are kept, nothing is left half-written.

The JSON report (--report, default OUT/batch_report.json) lists every item (done, skipped,
failed with its reason, not run), its time, and items/s per actor. Exit status: 0, 1 when any
item failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from runtime import cli, cli_restore
from runtime.batch_items import IMAGE, Item, find_items
from runtime.batch_state import (
    DONE,
    FAILED,
    NOT_RUN,
    REPORT_NAME,
    SKIPPED,
    BatchReport,
    DoneList,
    ItemResult,
    settings_fingerprint,
)
from runtime.cli import DEFAULT_ARTIFACTS
from runtime.errors import InputError, UnfoldError, report_error
from runtime.image_jobs import make_output_folder
from runtime.manifest import load_manifest

EXIT_INTERRUPTED = 130  # as runtime/restore.py


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = cli.tool_parser("batch.py", __doc__)
    p.add_argument(
        "inputs",
        metavar="INPUTS",
        nargs="+",
        type=Path,
        help="folders of images and videos (searched recursively), image or video files, and .txt lists of paths",
    )
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="output folder (created if missing)")
    r = p.add_argument_group("cluster")
    r.add_argument(
        "--address",
        metavar="auto|ray://HOST:PORT",
        help="the Ray cluster to run on: auto (the one `ray start` made on this machine) or a Ray client "
        "address (default: start a local cluster on this machine, every core)",
    )
    r.add_argument(
        "--actors",
        type=cli.positive_int,
        metavar="N",
        help="actors, each holding one pipeline (default: as many as the cluster's GPUs hold with "
        "--gpus-per-actor, else its CPUs with --cpus-per-actor)",
    )
    r.add_argument(
        "--cpus-per-actor",
        type=_positive_float,
        default=1.0,
        metavar="F",
        help="CPUs Ray reserves per actor; a fraction (0.5) lets more actors share cores (default: 1)",
    )
    r.add_argument(
        "--gpus-per-actor",
        type=_positive_float,
        metavar="F",
        help="GPUs per actor on GPU nodes (1: one pipeline per GPU; 0.5: two share one); each actor then "
        "sees only its own GPU (default: none, CPU actors)",
    )
    r.add_argument(
        "--batch-size",
        type=cli.positive_int,
        default=4,
        metavar="N",
        help="images sent to an actor at a time (a video is always sent alone) (default: 4)",
    )
    r.add_argument(
        "--retries",
        type=cli.int_at_least(0),
        default=2,
        metavar="N",
        help="times Ray restarts a dead actor and re-runs its batch before its items fail (default: 2)",
    )
    p.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help=f"JSON report of every item and the throughput per actor (default: OUT/{REPORT_NAME})",
    )
    cli.add_artifacts_argument(p, DEFAULT_ARTIFACTS)  # this module's name: tests point it elsewhere
    cli_restore.add_pipeline_arguments(p)
    cli.add_threads_argument(
        p, help="CPU threads of each actor's backend (default: its --cpus-per-actor, rounded down, at least 1)"
    )
    cli.add_backend_option_argument(p)
    cli.add_verbosity_arguments(
        p,
        quiet="no progress bar, no Ray start-up lines and no summary line (failed items are still listed)",
        verbose="show tracebacks and Ray's own log lines",
    )
    return p


def pixel_settings(args: argparse.Namespace) -> dict[str, object]:
    """The settings that change an output's pixels: a re-run with others does every item again."""
    return {
        "backend": args.backend,
        "device": args.device,
        "precision": args.precision,
        "tile": args.tile,
        "tile_overlap": args.tile_overlap,
        "max_memory": args.max_memory,
        **cli.options_setting(args.backend_options),
    }


def batches(items: list[Item], size: int) -> list[list[Item]]:
    """Images `size` at a time, in order; each video alone."""
    out: list[list[Item]] = []
    images: list[Item] = []
    for item in items:
        if item.kind == IMAGE:
            images.append(item)
            if len(images) == size:
                out.append(images)
                images = []
        else:
            out.append([item])
    if images:
        out.append(images)
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.verbose)
    if args.threads is None:
        args.threads = max(1, int(args.cpus_per_actor))  # one actor per core must not take every core
    try:
        items = find_items(args.inputs, args.output)
        cli.require_export(args.artifacts, DEFAULT_ARTIFACTS)
        load_manifest(args.artifacts, verify=False)  # a wrong folder is one line here, not one per actor
        make_output_folder(args.output)
        fingerprint = settings_fingerprint(args.artifacts, pixel_settings(args))
        done_list = DoneList(args.output)
    except UnfoldError as exc:
        return report_error(exc, args.verbose)
    report = BatchReport(items, {"artifacts": str(args.artifacts), "threads": args.threads, **pixel_settings(args)})
    todo = []
    for item in items:
        if done_list.is_done(item, fingerprint):
            report.record(ItemResult(item, SKIPPED, "restored by an earlier run"))
        else:
            todo.append(item)
    try:
        if todo:
            _run(todo, args, report, lambda done: done_list.add(done, fingerprint))
    except UnfoldError as exc:
        return report_error(exc, args.verbose)
    except KeyboardInterrupt:
        report.interrupted = True  # Ctrl-C while Ray was starting: nothing had run
    return _finish(args, report)


def _run(todo: list[Item], args: argparse.Namespace, report: BatchReport, on_done) -> None:
    start = time.perf_counter()
    try:
        from runtime import batch_ray  # Ray only here: the single-machine tools never import it
    except ModuleNotFoundError as exc:
        if exc.name != "ray" and not (exc.name or "").startswith("ray."):
            raise
        raise InputError("runtime/batch.py needs Ray: pip install -e '.[ray]'") from exc
    started_ray = batch_ray.connect(args.address, quiet=not args.verbose)
    report.startup_s = time.perf_counter() - start
    try:
        batch_ray.restore_on_ray(batches(todo, args.batch_size), args, DEFAULT_ARTIFACTS, report, on_done)
    finally:
        if started_ray:
            batch_ray.disconnect()


def _finish(args: argparse.Namespace, report: BatchReport) -> int:
    """Write the report, list the failed items, print the summary; the exit status."""
    path = args.report or args.output / REPORT_NAME
    try:
        cli.write_json_report(path, report.to_dict())
    except InputError as exc:
        report_error(exc, args.verbose)
        return 1
    failed = [r for r in report.results.values() if r.status == FAILED]
    for result in failed:
        reason = result.reason or "failed"
        shown = reason if str(result.item.source) in reason else f"{result.item.source}: {reason}"
        print(f"error: {shown}", file=sys.stderr)
    summary = report.to_dict()["summary"]
    if not args.quiet:
        rate = f"; {summary['items_per_s']} items/s, {summary['frames_per_s']} frames/s" if summary[DONE] else ""
        stopped = f", {summary[NOT_RUN]} not run (interrupted)" if report.interrupted else ""
        print(
            f"batch: {summary['items']} items: {summary[DONE]} done, {summary[SKIPPED]} skipped, "
            f"{summary[FAILED]} failed{stopped}{rate}; report: {path}",
            file=sys.stderr,
        )
    if report.interrupted:
        return EXIT_INTERRUPTED
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
