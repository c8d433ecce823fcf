"""Which artifacts folders, and which files in them, a build may touch.

A build writes into a folder the user names (`--out`), so it must never remove or replace a
file it did not write. A folder is ours when it holds the marker file `MARKER_NAME`, or when
its `manifest.json` is a manifest of this toolkit (folders built before the marker existed).
An empty or missing folder becomes ours. Any other non-empty folder is refused unless the
caller allows it (`allow_non_empty`), and even then no existing file is replaced that a build
would write under the same name.

The marker is written first, before the old manifest is removed, and it lists every file the
old manifest named: an interrupted build leaves a folder with the marker and no manifest, and
the next build still knows the folder and its files are ours. After a build only files listed
there (or by the old manifest) and no longer named by the new manifest are removed; anything
else in the folder is left as it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from runtime.atomic_io import atomic_write_bytes
from runtime.errors import ExportError, ManifestError
from runtime.manifest import MANIFEST_NAME, PRECISIONS, Manifest, file_refs, manifest_from_dict

MARKER_NAME = "unfoldldm-artifacts.json"
MARKER_FORMAT = "unfoldldm-edge/artifacts-folder"
GRAPHS_DIR = "graphs"
# The export's reference frame and the PyTorch FP32 output for it (manifest.reference).
REFERENCE_DIR = "reference"
REFERENCE_FILES = ("input.npy", "output_fp32.npy")


def _read_marker(folder: Path) -> set[str] | None:
    """The files the marker lists, or None when there is no marker of ours."""
    path = folder / MARKER_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT or not isinstance(data.get("files"), list):
        return None
    return {f for f in data["files"] if isinstance(f, str) and _inside(f)}


def _read_own_manifest(folder: Path) -> Manifest | None:
    """The folder's manifest when it is one of ours (read without checking file hashes), else None."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return manifest_from_dict(data, folder, str(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ManifestError):
        return None


def _inside(relative: str) -> bool:
    pure = PurePosixPath(relative)
    return bool(relative) and not pure.is_absolute() and ".." not in pure.parts and "\\" not in relative


def _write_marker(folder: Path, files: Iterable[str]) -> None:
    data = {
        "format": MARKER_FORMAT,
        "about": "an UnfoldLDM-Edge artifacts folder; a rebuild removes only the files listed here",
        "files": sorted(set(files)),
    }
    try:
        atomic_write_bytes(folder / MARKER_NAME, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    except OSError as exc:
        raise ExportError(f"{folder}: cannot write {MARKER_NAME} ({exc.strerror or exc})") from exc


def names_a_build_writes(graph_names: Iterable[str]) -> list[str]:
    """Paths (relative to the folder) the export, FP16 and INT8 steps write under fixed names."""
    names = [MANIFEST_NAME, *(f"{REFERENCE_DIR}/{name}" for name in REFERENCE_FILES)]
    for graph in graph_names:
        names += [f"{GRAPHS_DIR}/{graph}.{precision}.onnx" for precision in PRECISIONS]
        names.append(f"{GRAPHS_DIR}/{graph}.pt2")
    return names


def check_folder(folder: Path, allow_non_empty: bool) -> None:
    """Raise ExportError, changing nothing, when a build may not write into `folder`."""
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder}: exists and is not a folder; choose a folder for the artifacts")
    if not folder.is_dir() or allow_non_empty:
        return
    if _read_marker(folder) is not None or _read_own_manifest(folder) is not None:
        return
    if any(folder.iterdir()):
        raise ExportError(
            f"{folder}: not empty and not an artifacts folder of ours (no {MARKER_NAME}, no manifest of ours); "
            "choose a new or empty folder, or pass --allow-non-empty to add the artifacts beside its files"
        )


def claim_folder(folder: Path, graph_names: Iterable[str], allow_non_empty: bool) -> set[str]:
    """Make `folder` ours before anything else is written; returns the files known to be ours.

    Raises ExportError, having changed nothing, for a folder that is not ours and not empty
    (unless `allow_non_empty`), or when a file a build writes already exists and is not ours.
    """
    check_folder(folder, allow_non_empty)
    marker = _read_marker(folder)
    manifest = _read_own_manifest(folder)
    owned = set(marker or ())
    if manifest is not None:
        owned |= {ref.path for _, ref in file_refs(manifest)}
    if folder.is_dir() and marker is None and manifest is None:
        # Empty, or allowed though not empty: the build may add files but replace none.
        taken = [MARKER_NAME, *names_a_build_writes(graph_names)]
        clashes = [name for name in taken if (folder / name).exists() or (folder / name).is_symlink()]
        if clashes:
            raise ExportError(
                f"{folder / clashes[0]}: exists and was not written by this toolkit; the build would replace it "
                "(move it away, or choose another folder)"
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{folder}: cannot make the artifacts folder ({exc.strerror or exc})") from exc
    _write_marker(folder, owned)
    return owned


def remove_stale(folder: Path, owned: set[str], manifest: Manifest) -> list[str]:
    """Remove the files in `owned` the new `manifest` no longer names; record the new list.

    Returns the removed paths (relative). Files that are not in `owned` are never touched.
    """
    kept = {ref.path for _, ref in file_refs(manifest)}
    removed = []
    for relative in sorted(owned - kept):
        path = folder / relative
        if path.is_file() and not path.is_symlink():
            try:
                path.unlink()
            except OSError as exc:
                raise ExportError(f"{path}: cannot remove this stale file ({exc.strerror or exc})") from exc
            removed.append(relative)
    _write_marker(folder, kept)
    return removed
