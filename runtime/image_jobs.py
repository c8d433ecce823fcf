"""The images a restore run reads and writes, checked before the first one is restored.

Restoring a large photo takes minutes on a small device, so everything that can be known
about the outputs beforehand is checked first: the extension, whether the file exists already
(refused unless overwriting), and whether its folder takes a new file at all. What depends on
the image itself (16-bit samples, an alpha channel) is checked as soon as it is read, still
before it is restored (`runtime.image_io.check_output_format`).

`restore_image_file` is the one way an image file becomes a restored file, for
runtime/restore.py and runtime/batch.py alike, so both write the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from runtime.errors import InputError
from runtime.image_io import Image, check_output_folder, check_output_format, list_images, read_image, write_image
from runtime.memory_plan import TilePlan
from runtime.pipeline import Pipeline, Progress


def image_jobs(source: Path, output: Path, overwrite: bool = False) -> list[tuple[Path, Path]]:
    """(input file, output file) pairs for INPUT `source` and OUTPUT `output`; InputError, one
    line, for an unusable INPUT or OUTPUT (see the module docstring)."""
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
        jobs = [(path, output / path.name) for path in images]
    else:
        if output.is_dir():
            output = output / source.name
        if output.resolve() == source.resolve():
            raise InputError(f"{output}: the output is the input file; choose another path so the original is kept")
        jobs = [(source, output)]
    _check_targets([target for _, target in jobs], overwrite)
    if not source.is_dir():
        folder = jobs[0][1].parent
        if not folder.is_dir():
            raise InputError(f"{jobs[0][1]}: output folder {folder} does not exist")
        check_output_folder(folder)
    elif output.is_dir():
        check_output_folder(output)
    return jobs


def _check_targets(targets: list[Path], overwrite: bool) -> None:
    for target in targets:
        check_output_format(target)
    if overwrite:
        return
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing:
        more = f" (and {len(existing) - 1} more of the outputs)" if len(existing) > 1 else ""
        raise InputError(f"{existing[0]}: already exists{more}; pass --overwrite to replace")


def make_output_folder(folder: Path) -> None:
    """Create the output folder of a folder run (parents too) and check it takes files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from exc
    check_output_folder(folder)


def restore_image_file(
    pipeline: Pipeline,
    source: Path,
    target: Path,
    on_plan: Callable[[Image, TilePlan], None] | None = None,
    progress: Progress | None = None,
) -> TilePlan:
    """Read `source`, check `target` can hold it, restore it and write it atomically, at its own
    bit depth, channels and alpha; the tile plan it ran with. `on_plan(image, plan)` is called
    before the restoration starts. InputError, ShapeError or InferenceError for this image."""
    image = read_image(source)
    check_output_format(target, image.bit_depth, image.alpha is not None)
    plan = pipeline.tile_plan(image.height, image.width)
    if on_plan is not None:
        on_plan(image, plan)
    restored = pipeline.restore(image.rgb, progress=progress)
    write_image(target, Image(rgb=restored, alpha=image.alpha, bit_depth=image.bit_depth, grey=image.grey))
    return plan
