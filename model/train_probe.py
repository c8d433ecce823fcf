"""Times the real `model/train.py` of whichever source tree is first on the import path.

Run by `model/train_throughput.py`, once per tree and phase, so the code before a change and the
code after it are measured by the same harness in one run. It installs a global optimizer
step hook (the one place every version of the training loop passes through once per step),
runs `model.train.main` with the given arguments and prints one JSON line on rank 0:
the step timestamps after warm-up, the world size and the source tree it ran.

python model/train_probe.py WARMUP -- TRAIN_ARGS...      (under torchrun for several processes)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from torch.optim.optimizer import register_optimizer_step_post_hook


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("warmup", type=int, help="optimizer steps left out of the timing")
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="-- and then the arguments of model/train.py")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    warmup = args.warmup
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    stamps: list[float] = []
    register_optimizer_step_post_hook(lambda *_: stamps.append(time.perf_counter()))

    import model.train as train_cli  # imported after the hook so nothing escapes it

    status = train_cli.main(train_args)
    if status != 0:
        return status
    if int(os.environ.get("RANK", 0)) == 0:
        timed = stamps[warmup:]
        report = {
            "tree": os.path.dirname(os.path.dirname(os.path.abspath(train_cli.__file__))),
            "world_size": int(os.environ.get("WORLD_SIZE", 1)),
            "step_seconds": [b - a for a, b in zip(timed, timed[1:], strict=False)],
        }
        print("PROBE " + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
