"""How runtime/batch.py scales with actors on this machine, in one run: the same images restored
by 1 actor, then by 2 (1 CPU and 1 thread each), the items/s of each and the efficiency
items/s(2 actors) / (2 x items/s(1 actor)).

    python -m runtime.bench.batch_scaling --artifacts artifacts/edge --count 16 --size 240x160

The images are centre crops of --size from the first --count photos of --images. Each run is a
whole `batch.main` on a fresh local cluster; items/s is over the restoring alone (from the
first batch sent to the last result, as the batch report counts it), not the cluster's start.
docs/BATCH.md holds a measured figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from runtime import batch, cli
from runtime.bench.environment import cpu_name
from runtime.cli import DEFAULT_ARTIFACTS, DEFAULT_DATA
from runtime.errors import InputError, UnfoldError, report_error
from runtime.image_io import Image, centre_crop, list_images, read_image, write_image
from runtime.manifest import REQUESTED_PRECISIONS

ACTORS = (1, 2)


def build_parser() -> argparse.ArgumentParser:
    p = cli.tool_parser("batch_scaling", __doc__)
    p.add_argument(
        "--images",
        type=Path,
        default=DEFAULT_DATA / "val" / "CBSD68",
        metavar="DIR",
        help=f"folder of photos to crop (default: {cli.shown(DEFAULT_DATA / 'val' / 'CBSD68')})",
    )
    p.add_argument("--count", type=cli.positive_int, default=16, metavar="N", help="images per run (default: 16)")
    cli.add_frame_size_argument(p, "--size", (160, 240), "size of the crops")
    cli.add_artifacts_argument(p, DEFAULT_ARTIFACTS)
    p.add_argument("--backend", default="onnxruntime", help="backend of every actor (default: onnxruntime)")
    p.add_argument("--precision", choices=REQUESTED_PRECISIONS, default="auto", help="graph precision (default: auto)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here as JSON")
    return p


def _crops(images: Path, count: int, size: tuple[int, int], folder: Path) -> None:
    photos = list_images(images)[:count]
    if len(photos) < count:
        raise InputError(f"{images}: {len(photos)} images, --count asks for {count}")
    height, width = size
    for photo in photos:
        image = read_image(photo)
        rgb = centre_crop(image.rgb, height, width)
        write_image(folder / f"{photo.stem}.png", Image(rgb=rgb, alpha=None, bit_depth=8, grey=False))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="batch_scaling_") as scratch:
        inputs = Path(scratch) / "in"
        inputs.mkdir()
        _crops(args.images, args.count, args.size, inputs)
        for actors in ACTORS:
            out = Path(scratch) / f"out{actors}"
            flags = ["--actors", str(actors), "--cpus-per-actor", "1", "--threads", "1", "--batch-size", "1"]
            flags += ["--artifacts", str(args.artifacts), "--backend", args.backend, "--precision", args.precision]
            code = batch.main([str(inputs), "-o", str(out), "-q", *flags])
            if code != 0:
                raise InputError(f"the run with {actors} actor(s) ended with status {code}")
            report = json.loads((out / "batch_report.json").read_text())
            runs.append({"actors": actors, **report["summary"], "workers": report["workers"]})
    one, two = runs
    height, width = args.size
    return {
        "images": args.count,
        "size": f"{width}x{height}",
        "backend": args.backend,
        "precision": args.precision,
        "cpu": cpu_name(),
        "runs": runs,
        "efficiency": round(two["items_per_s"] / (2 * one["items_per_s"]), 3),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = measure(args)
        if args.json:
            cli.write_json_report(args.json, result)
    except UnfoldError as exc:
        return report_error(exc, verbose=False)
    print(f"{result['images']} images {result['size']}, {result['backend']} ({result['precision']}), {result['cpu']}")
    for run in result["runs"]:
        print(f"  {run['actors']} actor(s), 1 thread each: {run['items_per_s']:.2f} items/s ({run['wall_s']:.1f} s)")
    print(f"  efficiency items/s(2) / (2 x items/s(1)): {result['efficiency']:.2f}", file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
