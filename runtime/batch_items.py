"""What a batch run restores: the items found in its INPUTS, each with the output it writes.

INPUTS are folders (searched recursively), image files, video files and text lists (.txt: one
path a line; blank lines and lines starting with # are skipped; relative paths are relative to
the list's folder). Each item keeps its relative path under OUT: relative to the folder given,
or to the list's folder; a single file, or a listed path outside the list's folder, keeps its
name (a listed absolute path its whole path below the root, so that two lists cannot collide
by accident). Two items that would write the same output are an error before anything runs.

A video keeps its name when its container is one the video sinks write (.mp4, .mov, .avi,
.mkv, ...); any other video (.webm, .mpg, ...) is written as lossless .mkv under the same stem.
Hidden files and folders (names starting with '.') are skipped: editor, OS or our own
temporary files, as in `runtime.image_io.list_images`. No Ray here: the driver finds the
items, the workers only get them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePath

from runtime.errors import InputError
from runtime.image_io import IMAGE_EXTENSIONS
from runtime.video.sinks import FOURCC_BY_EXTENSION

# Containers OpenCV's FFmpeg reads that a folder scan takes as videos (the writable ones first).
VIDEO_EXTENSIONS: tuple[str, ...] = (*FOURCC_BY_EXTENSION, ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp")
LIST_EXTENSION = ".txt"
# Written for a video whose own container the sinks cannot write: lossless (FFV1).
FALLBACK_VIDEO_EXTENSION = ".mkv"

IMAGE = "image"
VIDEO = "video"


@dataclass(frozen=True)
class Item:
    """One unit of work: an image, or a whole video (its frames stay in order on one worker)."""

    kind: str  # IMAGE or VIDEO
    source: Path  # absolute
    relative: str  # the output's path under OUT, POSIX style
    target: Path  # OUT / relative
    size: int  # bytes of the source when found: with mtime_ns, how a re-run knows it is unchanged
    mtime_ns: int


def kind_of(path: Path) -> str | None:
    """IMAGE, VIDEO, or None for a file a batch run does not restore."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return IMAGE
    if suffix in VIDEO_EXTENSIONS:
        return VIDEO
    return None


def output_relative(kind: str, relative: PurePath) -> str:
    """The output's path under OUT for a source at `relative`: the same, except for the container
    of a video the sinks cannot write (see the module docstring)."""
    if kind == VIDEO and relative.suffix.lower() not in FOURCC_BY_EXTENSION:
        relative = relative.with_suffix(FALLBACK_VIDEO_EXTENSION)
    return relative.as_posix()


def _hidden(relative: PurePath) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _walk(folder: Path) -> list[Path]:
    """Files under `folder` a batch run restores, sorted, hidden ones left out."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(root) / name
            if not name.startswith(".") and kind_of(path) is not None:
                found.append(path)
    return sorted(found)


def _read_list(path: Path) -> list[tuple[Path, PurePath]]:
    """(source, relative) for each path in the text list `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: the list cannot be read ({exc})") from exc
    base = path.parent.absolute()
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        source = Path(os.path.normpath(base / line))  # absolute entries replace `base`
        if source.is_relative_to(base):
            relative = PurePath(source.relative_to(base))
        elif Path(line).is_absolute():
            relative = PurePath(*source.parts[1:])
        else:
            relative = PurePath(source.name)
        entries.append((source, relative))
    return entries


def _sources(spec: Path) -> list[tuple[Path, PurePath]]:
    """(source, relative) pairs INPUT `spec` stands for."""
    if spec.is_dir():
        base = spec.absolute()
        return [(path, PurePath(path.relative_to(base))) for path in _walk(base)]
    if spec.suffix.lower() == LIST_EXTENSION and spec.is_file():
        return _read_list(spec)
    if not spec.exists():
        raise InputError(f"{spec}: no such file or folder")
    if kind_of(spec) is None:
        extensions = ", ".join((*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS, LIST_EXTENSION))
        raise InputError(f"{spec}: not an image, video or list of paths (use one of {extensions})")
    return [(spec.absolute(), PurePath(spec.name))]


def find_items(inputs: list[Path], output: Path) -> list[Item]:
    """Every item of `inputs` with its output under `output`, in a stable order; InputError for
    an INPUT that does not exist, a listed path that is neither an image nor a video, an output
    that would be written twice, or no item at all. A listed file that is missing is an item
    still: it fails on its own, in the report."""
    items: list[Item] = []
    written: dict[str, Path] = {}
    out = output.absolute()
    for spec in inputs:
        for source, relative in _sources(spec):
            kind = kind_of(source)
            if kind is None and spec.is_file():  # a listed path: the list is wrong, say so before the work
                raise InputError(f"{spec}: {source} is not an image or a video")
            if kind is None or _hidden(relative):
                continue
            try:
                stat = source.stat()
                size, mtime_ns = stat.st_size, stat.st_mtime_ns
            except OSError:
                size, mtime_ns = -1, -1  # a listed file that is gone: its item fails, with the reason, in the report
            target_relative = output_relative(kind, relative)
            if target_relative in written:
                raise InputError(
                    f"{source} and {written[target_relative]} would both be written to {out / target_relative}"
                )
            if source.resolve() == (out / target_relative).resolve():
                raise InputError(f"{source}: its output is the input itself; choose another OUT")
            written[target_relative] = source
            items.append(Item(kind, source, target_relative, out / target_relative, size, mtime_ns))
    if not items:
        raise InputError(f"no image or video in {', '.join(map(str, inputs))}")
    return items
