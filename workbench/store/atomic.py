"""Safe writes: a temporary file in the target's folder renamed over it; no silent overwrite of folders."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..core.errors import WorkbenchError


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Let ``write`` fill a temporary file beside ``path``, then rename it over ``path``.

    A crash or interruption leaves the old file (or none), never a half-written one. The file gets
    the permissions a plain ``open`` would give it (``mkstemp`` makes it private to the owner).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def refuse_non_empty(out: Path, overwrite: bool) -> None:
    """Refuse to write into a folder that holds files unless ``overwrite`` is set."""
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise WorkbenchError(
            f"{out} already exists and is not empty", "choose a new folder or pass --overwrite"
        )
