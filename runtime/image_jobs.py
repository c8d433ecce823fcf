"""The images a restore run reads and writes, checked before the first one is restored.

Restoring a large photo takes minutes on a small device, so everything that can be known
about the outputs beforehand is checked first: the extension, whether the file exists already
(refused unless overwriting), and whether its folder takes a new file at all. What depends on
the image itself (16-bit samples, an alpha channel) is checked as soon as it is read, still
before it is restored (`runtime.image_io.check_output_format`).

`restore_image_file` is the one way an image file becomes a restored file, for
runtime/restore.py and runtime/batch.py alike, so both write the same bytes. An 8-bit colour
image (BGR, or BGRA whose alpha passes through) is restored from its decoded bytes
(`Pipeline.restore_bgr8`, scaled as still images are read): on a CUDA backend with the native
frame kernels it crosses to the device and back as bytes, elsewhere it takes the float path
inside `restore_bgr8`, and the file is the same bytes either way. Grey, 16-bit and other images
take the float path (`Pipeline.restore`), which keeps their channels and bit depth.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from runtime.errors import InputError
from runtime.image_io import (
    Image,
    check_output_folder,
    check_output_format,
    image_from_pixels,
    list_images,
    read_pixels,
    write_image,
    write_pixels,
)
from runtime.memory_plan import TilePlan
from runtime.pipeline import Pipeline, Progress
from runtime.pixels import ScaleRule

# on_plan(width, height, plan): told how an image will run, before it is restored.
PlanCallback = Callable[[int, int, TilePlan], None]


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
    on_plan: PlanCallback | None = None,
    progress: Progress | None = None,
) -> TilePlan:
    """Read `source`, check `target` can hold it, restore it and write it atomically, at its own
    bit depth, channels and alpha; the tile plan it ran with. `on_plan(width, height, plan)` is
    called before the restoration starts. InputError, ShapeError or InferenceError for this image."""
    pixels = read_pixels(source)
    image = None if _is_8bit_colour(pixels) else image_from_pixels(source, pixels)  # checks the sample type
    if image is None:
        check_output_format(target, 8, alpha=pixels.shape[2] == 4)
    else:
        check_output_format(target, image.bit_depth, image.alpha is not None)
    height, width = pixels.shape[:2]
    plan = pipeline.tile_plan(height, width)
    if on_plan is not None:
        on_plan(width, height, plan)
    if image is None:
        write_pixels(target, _restored_8bit_colour(pipeline, pixels, progress))
    else:
        restored = pipeline.restore(image.rgb, progress=progress)
        write_image(target, Image(rgb=restored, alpha=image.alpha, bit_depth=image.bit_depth, grey=image.grey))
    return plan


def _is_8bit_colour(pixels: np.ndarray) -> bool:
    """Whether decoded pixels are 8-bit BGR or BGRA: those are restored from their bytes."""
    return pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] in (3, 4)


def _restored_8bit_colour(pipeline: Pipeline, pixels: np.ndarray, progress: Progress | None) -> np.ndarray:
    """8-bit BGR(A) pixels restored as 8-bit BGR(A), alpha passed through: the bytes the float path
    writes (its alpha, x / 255 quantised back, is x again; its colour is `restore_bgr8`'s NumPy path)."""
    bgr = np.ascontiguousarray(pixels[:, :, :3])
    restored = pipeline.restore_bgr8(bgr, progress=progress, scale_rule=ScaleRule.DIVIDE)
    if pixels.shape[2] == 3:
        return restored
    return np.concatenate([restored, pixels[:, :, 3:]], axis=2)
