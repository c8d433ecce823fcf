"""Atomic file writes: a temporary name in the target folder, then `os.replace`.

The rename is atomic on one file system, so a reader (or a later run) sees the old file or the
whole new one, never half of it. Used for manifests, graphs, programs and restored images.
Errors are plain `OSError`s; callers wrap them in the error type of their domain. The error a
caller sees is always the write's own: removing the temporary file afterwards never raises
(on a read-only file system even unlinking a file that was never made fails with EROFS).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def discard(path: Path) -> None:
    """Remove a temporary file if it exists; a failure is logged, never raised, so that it
    cannot hide the error that made the clean-up necessary."""
    if not os.path.lexists(path):
        return
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("could not remove the temporary file %s (%s)", path, exc.strerror or exc)


def temporary_sibling(path: Path) -> Path:
    """A unique hidden name next to `path` (same folder, so the final rename is atomic)."""
    return path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"


@contextmanager
def atomic_target(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on any error it is removed.

    For writers that insist on a file name (torch.onnx.export, torch.export.save)::

        with atomic_target(out) as tmp:
            torch.onnx.export(..., str(tmp))
    """
    path = Path(path)
    temporary = temporary_sibling(path)
    if suffix:  # for writers that check the extension (torch.export.save wants ".pt2")
        temporary = temporary.with_name(temporary.name + suffix)
    try:
        yield temporary
        if not temporary.is_file():
            raise FileNotFoundError(f"the writer did not create {temporary}")
        os.replace(temporary, path)
    finally:
        discard(temporary)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically, flushed to disk before the rename."""
    with atomic_target(path) as temporary:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
