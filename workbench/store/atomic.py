"""Safe writes: a temporary file in the target's folder renamed over it; no silent overwrite of folders."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import WorkbenchError
from ..core.paths import plain_permissions


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Let ``write`` fill a temporary file beside ``path``, then rename it over ``path``.

    A crash or interruption leaves the old file (or none), never a half-written one: the temporary
    file is flushed to disk (``fsync``) before the rename, and removed when any step fails, as are
    the folders made for ``path``. The file gets the permissions a plain ``open`` would give it
    (``mkstemp`` makes it private to the owner).
    """
    path = Path(path)
    created = _first_missing(path.parent.absolute())
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(Path(tmp))
        plain_permissions(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
        if created is not None:
            _remove_empty(path.parent.absolute(), created)
        raise


def _fsync(path: str | Path) -> None:
    """Flush a written file's data to the disk (a full disk can surface only here)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _first_missing(path: Path) -> Path | None:
    """The outermost folder on the way to ``path`` (``path`` included) that does not exist yet."""
    missing = None
    for folder in (path, *path.parents):
        if os.path.lexists(folder):
            break
        missing = folder
    return missing


@contextmanager
def undo_on_failure(
    folder: str | Path, prefix: str | None = None, keep: Callable[[], bool] | None = None
) -> Iterator[None]:
    """If the block raises, remove what it added, never what was there before; then re-raise.

    With ``prefix`` None, ``folder`` is the output itself: if it did not exist, it is removed with
    the parent folders made for it. With a ``prefix``, ``folder`` is where outputs named ``prefix...``
    go: the entries of that name that were not there before are removed, then ``folder`` (and the
    parents made for it) if the block created it and it is empty. ``keep()`` returning true (for
    example: a training run has a step checkpoint to resume from) leaves everything in place.
    """
    folder = Path(folder).expanduser()
    created = _first_missing(folder.absolute())
    before = set(os.listdir(folder)) if prefix is not None and folder.is_dir() else set()
    try:
        yield
    except BaseException:
        if keep is None or not keep():
            _undo(folder, prefix, created, before)
        raise


def _undo(folder: Path, prefix: str | None, created: Path | None, before: set[str]) -> None:
    if prefix is not None and folder.is_dir():
        for name in set(os.listdir(folder)) - before:
            if name.startswith(prefix):
                target = folder / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)
    if created is None:
        return
    if prefix is None:
        shutil.rmtree(created, ignore_errors=True)
        return
    _remove_empty(folder.absolute(), created)


def _remove_empty(folder: Path, created: Path) -> None:
    """Remove ``folder`` and its parents up to ``created`` while they are empty."""
    for path in (folder, *folder.parents):
        try:
            path.rmdir()
        except OSError:
            return
        if path == created:
            return


def refuse_non_empty(out: Path, overwrite: bool) -> None:
    """Refuse to write into a folder that holds files unless ``overwrite`` is set."""
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise WorkbenchError(
            f"{out} already exists and is not empty", "choose a new folder or pass --overwrite"
        )
