"""The training record of a checkpoint: its rounds, and validation PSNR against training hours.

    python model/training_record.py runs/edge/history.jsonl --checkpoint runs/edge/model.pt \
        --plot docs/training_curve.png

`history.jsonl` is written by training, one line per validation (model/training.py). Rounds
fine-tuned with --init-from carry `hours_total`, the hours of every earlier round included, so
one curve spans them. Phase-1 points use the GT-aware prior (an oracle figure); phase-2 points
run as inference does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from model.checkpoint import Checkpoint, load_checkpoint
from model.training import earlier_seconds, training_rounds
from runtime.errors import InputError, UnfoldError, report_error


def read_history(path: Path) -> list[dict[str, Any]]:
    """The validation records of one history.jsonl, in training order."""
    if not path.is_file():
        raise InputError(f"{path}: no such history file")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not {"step", "phase", "hours", "val_psnr"} <= set(record):
            raise InputError(f"{path}:{number}: a validation record needs step, phase, hours and val_psnr")
        records.append(record)
    if not records:
        raise InputError(f"{path}: no validation records")
    return records


def total_hours(record: dict[str, Any]) -> float:
    return float(record.get("hours_total", record["hours"]))


def format_rounds(ckpt: Checkpoint) -> str:
    """One line per training round of a checkpoint, the last being its own run."""
    rounds = training_rounds(ckpt)
    lines = []
    for i, r in enumerate(rounds, start=1):
        iters = r.get("iters") or ["?"] * 3
        lines.append(
            f"round {i}: phase 1 {iters[0]}, warm-up {iters[1]}, joint {iters[2]} iterations; "
            f"batch {r.get('batch_size')}, lr {r.get('lr')}; {float(r.get('seconds') or 0) / 3600:.2f} h"
        )
    lines.append(f"total: {earlier_seconds(rounds) / 3600:.2f} h of training wall time")
    return "\n".join(lines)


def plot_curve(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    for phase, marker in (("phase1", "o"), ("phase2_warmup", "s"), ("phase2_joint", "^")):
        points = [(total_hours(r), r["val_psnr"]) for r in records if r["phase"] == phase]
        if points:
            label = {
                "phase1": "phase 1 (GT-aware prior, oracle)",
                "phase2_warmup": "phase 2 warm-up (sampled prior)",
                "phase2_joint": "phase 2 joint (sampled prior)",
            }[phase]
            ax.plot(*zip(*points, strict=True), marker=marker, linestyle="-", label=label)
    inputs = [r["val_input_psnr"] for r in records if "val_input_psnr" in r]
    if inputs:
        ax.axhline(inputs[-1], color="grey", linestyle=":", label="noisy input")
    ax.set_xlabel("training hours (2-core CPU, all rounds)")
    ax.set_ylabel("validation PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("history", type=Path, help="history.jsonl of the training run")
    p.add_argument("--checkpoint", type=Path, help="print this checkpoint's rounds (config, iterations, hours) too")
    p.add_argument("--plot", type=Path, help="draw validation PSNR against hours to this .png/.svg")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        records = read_history(args.history)
        for r in records:
            print(f"{total_hours(r):7.2f} h  step {r['step']:>6}  {r['phase']:<14} val {r['val_psnr']:.2f} dB")
        if args.checkpoint is not None:
            ckpt = load_checkpoint(args.checkpoint)
            print(f"{args.checkpoint.name}: {ckpt.config.name} ({ckpt.config.to_dict()})")
            print(format_rounds(ckpt))
        if args.plot is not None:
            plot_curve(records, args.plot)
            print(f"wrote {args.plot}")
    except UnfoldError as exc:
        return report_error(exc, verbose=False, status=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
