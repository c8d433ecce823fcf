"""Turn a training checkpoint (`last.pt`, a candidate) into a release: its EMA weights only.

    python model/release.py runs/round4/candidate_step2300.pt model/weights/edge.pt

The release holds what inference and export read (config, EMA weights, step, the training notes
with every round's hours) and drops the optimizer state and raw weights, about a quarter of the
size. Replacing the shipped weights also means re-pinning SHIPPED_SHA256 in runtime/shipped.py;
the sha256 printed here is the one to pin (docs/MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model.checkpoint import load_checkpoint, release_copy, save_checkpoint
from runtime.errors import InputError, UnfoldError, report_error
from runtime.manifest import sha256_file
from runtime.shipped import is_shipped_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="training checkpoint to release (with EMA weights)")
    p.add_argument("out", type=Path, help="where to write the release (written atomically)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.checkpoint.resolve() == args.out.resolve():
            raise InputError(f"{args.out}: the release must not overwrite the checkpoint it is made from")
        ckpt = load_checkpoint(args.checkpoint)
        if ckpt.ema is None and ckpt.optimizer is None:
            print(f"{args.checkpoint}: already a release (no EMA or optimizer state); copying its weights")
        save_checkpoint(args.out, release_copy(ckpt))
    except UnfoldError as exc:
        return report_error(exc, verbose=False, status=2)
    print(f"wrote {args.out}: {ckpt.config.name}, step {ckpt.step}, sha256 {sha256_file(args.out)}")
    if is_shipped_path(args.out):
        print("now pin that sha256 as SHIPPED_SHA256 in runtime/shipped.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
