"""Restore an image, or a folder of images, with an exported UnfoldLDM model.

    python runtime/restore.py noisy.png -o clean.png
    python runtime/restore.py photos/ -o restored/ --backend onnxruntime --tile 512

INPUT is an image file or a folder of images (not searched recursively; hidden files and
other extensions are ignored). With a file, OUTPUT is the file to write (or an existing
folder to write it into under the same name). With a folder, OUTPUT is a folder that receives
only the restored images, under the same file names. 8- and 16-bit, grey, RGB and RGBA
images are kept as they came: same bit depth and channels, alpha passed through untouched.
Files that cannot be restored are listed, one line each; the others are still restored, and
the exit status is 1. Every output is written whole or not at all.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from pathlib import Path

from tqdm import tqdm

from runtime.backends.select import BACKEND_NAMES
from runtime.errors import InferenceError, InputError, ManifestError, ShapeError, UnfoldError
from runtime.image_io import Image, list_images, read_image, write_image
from runtime.manifest import MANIFEST_NAME
from runtime.pipeline import DEFAULT_TILE_OVERLAP, Pipeline

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ARTIFACTS = REPO / "artifacts" / "edge"
# Per-image problems: the image is skipped and listed, the rest of the folder goes on.
IMAGE_ERRORS = (InputError, ShapeError, InferenceError)


def _shown(path: Path) -> str:
    """`path` relative to the repository when it is inside it (for help texts)."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _backends(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    bad = [n for n in names if n not in BACKEND_NAMES]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"choose from {', '.join(BACKEND_NAMES)} (comma-separated for a fallback order)"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="restore.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("input", type=Path, metavar="INPUT", help="an image file, or a folder of images")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUTPUT",
        help="output image file (INPUT is a file) or output folder (INPUT is a folder; created if missing)",
    )
    p.add_argument(
        "--artifacts",
        type=Path,
        default=DEFAULT_ARTIFACTS,
        metavar="DIR",
        help=f"folder holding {MANIFEST_NAME} and graphs/, written by export/build_engines.py "
        f"(default: the shipped model's, {_shown(DEFAULT_ARTIFACTS)}/)",
    )
    p.add_argument(
        "--backend",
        type=_backends,
        metavar="|".join(BACKEND_NAMES),
        help="backend to run the graphs with; a comma-separated list is a fallback order, tried once at "
        "start (default: tensorrt, then onnxruntime, then torch, GPU before CPU)",
    )
    p.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        help="run on this device only (default: CUDA when the backend can use it, else the CPU)",
    )
    p.add_argument(
        "--tile",
        type=int,
        default=0,
        metavar="N",
        help="restore frames larger than N x N in overlapping N x N tiles (N a multiple of the model's "
        "pad multiple); the prior is still computed once per stage on the whole frame and shared by the "
        "tiles; lowers peak memory at a small cost in quality (default: 0, whole frames)",
    )
    p.add_argument(
        "--tile-overlap",
        type=int,
        default=DEFAULT_TILE_OVERLAP,
        metavar="N",
        help=f"overlap between neighbouring tiles in pixels (default: {DEFAULT_TILE_OVERLAP})",
    )
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for the backend (default: one per core)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary line")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and which backend was chosen")
    return p


def _restore_file(pipeline: Pipeline, source: Path, target: Path) -> None:
    image = read_image(source)
    restored = pipeline.restore(image.rgb)
    write_image(target, Image(rgb=restored, alpha=image.alpha, bit_depth=image.bit_depth, grey=image.grey))


def _jobs(source: Path, output: Path) -> list[tuple[Path, Path]]:
    """(input file, output file) pairs; InputError for an unusable INPUT or OUTPUT."""
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    if source.is_dir():
        if output.exists() and not output.is_dir():
            raise InputError(f"{output}: INPUT is a folder, so OUTPUT must be a folder, not a file")
        if output.resolve() == source.resolve():
            raise InputError(f"{output}: the output folder is the input folder; choose another so originals are kept")
        images = list_images(source)
        if not images:
            raise InputError(f"{source}: no images in this folder")
        return [(path, output / path.name) for path in images]
    if output.is_dir():
        output = output / source.name
    if output.resolve() == source.resolve():
        raise InputError(f"{output}: the output is the input file; choose another path so the original is kept")
    return [(source, output)]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        jobs = _jobs(args.input, args.output)
        if args.artifacts == DEFAULT_ARTIFACTS and not (DEFAULT_ARTIFACTS / MANIFEST_NAME).is_file():
            raise ManifestError(
                f"{DEFAULT_ARTIFACTS}: the shipped model has not been exported yet; "
                "run `python export/build_engines.py` first (or pass --artifacts DIR)"
            )
        if args.threads is not None and args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        pipeline = Pipeline.from_manifest(
            args.artifacts,
            backend=args.backend,
            device=args.device,
            threads=args.threads,
            tile=args.tile or None,
            tile_overlap=args.tile_overlap,
        )
    except UnfoldError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1

    failed: list[str] = []
    folder = args.input.is_dir()
    with pipeline:
        if folder:
            try:
                args.output.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                print(f"error: {args.output}: cannot create the output folder ({exc.strerror or exc})", file=sys.stderr)
                return 1
        bar = tqdm(jobs, desc="restore", unit="image", disable=args.quiet or len(jobs) == 1)
        for source, target in bar:
            try:
                _restore_file(pipeline, source, target)
            except IMAGE_ERRORS as exc:
                if args.verbose:
                    traceback.print_exc()
                message = str(exc) if str(source) in str(exc) else f"{source}: {exc}"
                failed.append(message)
                tqdm.write(f"error: {message}", file=sys.stderr)
    if not args.quiet and folder:
        print(f"restored {len(jobs) - len(failed)} of {len(jobs)} images into {args.output}", file=sys.stderr)
    if failed:
        if folder:
            print(f"error: {len(failed)} of {len(jobs)} images failed (listed above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
