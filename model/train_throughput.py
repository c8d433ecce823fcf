"""Training throughput, old code against new, in one run: training pixels per second of model/train.py.

Each variant runs the real `model/train.py` CLI of its source tree (the baseline from a git
revision, checked out into a temporary worktree; the others from this tree) through
`model/train_probe.py`, which times the optimizer steps after a warm-up. Phases run one after
another, variants interleaved, so drift of a shared machine hits all of them alike.

python model/train_throughput.py --baseline e593143 --steps 30
python model/train_throughput.py --variants current,current-ddp2 --batch-size 8 --crop 128

Variants: `baseline` (REV's train.py, one process, --threads = cores), `current` (this tree, one
process, its defaults), `current-ddp2` (this tree under torchrun, 2 processes of 1 thread,
half the batch each: the same global batch of BATCH crops per step).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runtime.cli import DEFAULT_DATA, REPO
from runtime.errors import UnfoldError

PROBE = REPO / "model" / "train_probe.py"
VARIANTS = ("baseline", "current", "current-ddp2")


@dataclass(frozen=True)
class Measurement:
    variant: str
    phase: str
    pixels_per_step: int
    step_seconds: list[float]

    @property
    def pixels_per_second(self) -> float:
        # Median step time: one slow step (a page fault, a neighbour's burst) does not move it.
        return self.pixels_per_step / statistics.median(self.step_seconds)


def _phase_args(phase: str, iters: int) -> list[str]:
    if phase == "phase1":
        return ["--phase1-iters", str(iters), "--warmup-iters", "0", "--joint-iters", "0"]
    return ["--phase1-iters", "0", "--warmup-iters", "0", "--joint-iters", str(iters)]


def _processes(variant: str) -> int:
    return 2 if variant == "current-ddp2" else 1


def _command(variant: str, args: argparse.Namespace, phase: str, out: Path) -> list[str]:
    cores = os.cpu_count() or 1
    procs = _processes(variant)
    if args.batch_size % procs:
        raise UnfoldError(f"--batch-size {args.batch_size} does not split over {procs} processes")
    train_args = [
        "--size",
        args.size,
        "--batch-size",
        str(args.batch_size // procs),
        "--crop",
        str(args.crop),
        "--threads",
        str(max(1, cores // procs)),
        "--val-images",
        "0",
        "--save-every",
        str(10**9),
        "--seed",
        "0",
        "--out",
        str(out),
        *_phase_args(phase, args.warmup + args.steps + 1),
        # Explicit paths: the baseline's own defaults would point beside its temporary worktree.
        "--data",
        str(args.data),
        "--kernels",
        str(args.kernels),
    ]
    probe = [str(PROBE), str(args.warmup), "--", *train_args]
    if procs == 1:
        return [sys.executable, *probe]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
    return [*launcher, *probe]


def _run(variant: str, tree: Path, args: argparse.Namespace, phase: str) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # --threads decides
        env["PYTHONPATH"] = str(tree)
        if _processes(variant) > 1:
            env["OMP_NUM_THREADS"] = "1"  # what torchrun would set; said explicitly
        done = subprocess.run(
            _command(variant, args, phase, Path(tmp)), cwd=tree, env=env, capture_output=True, text=True, check=False
        )
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    if done.returncode != 0 or not lines:
        raise UnfoldError(f"{variant} {phase} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    report = json.loads(lines[-1][len("PROBE ") :])
    if Path(report["tree"]).resolve() != tree.resolve():
        raise UnfoldError(f"{variant} ran the code in {report['tree']}, not {tree}: check PYTHONPATH")
    return Measurement(variant, phase, args.batch_size * args.crop * args.crop, report["step_seconds"])


def _baseline_tree(revision: str, parent: Path) -> Path:
    tree = parent / "baseline"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), revision], check=True, capture_output=True
    )
    return tree


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", default="e593143", help="git revision of the old code (default: e593143)")
    p.add_argument(
        "--variants", default="baseline,current,current-ddp2", help=f"comma-separated, from {', '.join(VARIANTS)}"
    )
    p.add_argument("--phases", default="phase1,phase2_joint", help="comma-separated: phase1, phase2_joint")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per variant and phase (default: 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    p.add_argument("--batch-size", type=int, default=8, help="global batch per step (default: 8)")
    p.add_argument("--crop", type=int, default=64, help="training crop in pixels (default: 64)")
    p.add_argument("--size", default="edge", help="named model size (default: edge; tiny for a smoke test)")
    p.add_argument(
        "--data", type=Path, default=DEFAULT_DATA / "train", help="clean training photos (default: %(default)s)"
    )
    p.add_argument(
        "--kernels",
        type=Path,
        default=DEFAULT_DATA / "kernels" / "npy",
        help="real blur kernels (default: %(default)s)",
    )
    p.add_argument("--json", type=Path, help="also write the measurements here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    variants = args.variants.split(",")
    phases = args.phases.split(",")
    unknown = sorted({*variants} - set(VARIANTS)) + sorted({*phases} - {"phase1", "phase2_joint"})
    if unknown:
        print(f"error: unknown variant or phase: {', '.join(unknown)}", file=sys.stderr)
        return 2
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="throughput-trees-") as tmp:
        trees = {v: REPO for v in variants}
        try:
            if "baseline" in variants:
                trees["baseline"] = _baseline_tree(args.baseline, Path(tmp))
            for phase in phases:
                for variant in variants:
                    m = _run(variant, trees[variant], args, phase)
                    results.append(m)
                    print(
                        f"{phase:13s} {variant:13s} {m.pixels_per_second:9.0f} px/s "
                        f"(median step {statistics.median(m.step_seconds) * 1000:.0f} ms)",
                        flush=True,
                    )
        except UnfoldError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            if "baseline" in variants:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(Path(tmp) / "baseline")],
                    check=False,
                    capture_output=True,
                )
    print(f"\nbatch {args.batch_size}, crop {args.crop}, {args.steps} timed steps; ratio against the first variant")
    for phase in phases:
        rows = [m for m in results if m.phase == phase]
        for m in rows:
            print(
                f"{phase:13s} {m.variant:13s} {m.pixels_per_second:9.0f} px/s  "
                f"{m.pixels_per_second / rows[0].pixels_per_second:5.2f}x"
            )
    if args.json:
        args.json.write_text(
            json.dumps([{**m.__dict__, "pixels_per_second": m.pixels_per_second} for m in results], indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
