"""Where the workbench keeps downloaded wheels, extracted GGUF files and dequantised backbones."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import WorkbenchError


def cache_dir() -> Path:
    """The cache root: ``$WORKBENCH_CACHE``, else ``$XDG_CACHE_HOME/llm2vec-gen-workbench``."""
    env = os.environ.get("WORKBENCH_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
        root = root / "llm2vec-gen-workbench"
    root.mkdir(parents=True, exist_ok=True)
    return root


def dequantised_path(label: str, sha256: str) -> Path:
    """The cached dequantised folder of the GGUF called ``label`` whose file has this sha256."""
    return cache_dir() / "backbones" / f"{label}-{sha256[:16]}"


def packaged_checkpoints_dir() -> Path:
    """The folder of trained checkpoints shipped inside the package (one sub-folder per backbone)."""
    return Path(__file__).resolve().parents[1] / "checkpoints"


def require_file(path: str | Path, what: str, fix: str = "check the path") -> Path:
    """``path`` (user-expanded) if it is a file; else a one-line error saying it is missing or a folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise WorkbenchError(
            f"{what} {path} is a folder, not a file", "name a file (for example one inside it)"
        )
    if not path.is_file():
        raise WorkbenchError(f"{what} {path} does not exist", fix)
    return path


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def plain_permissions(path: str | Path) -> None:
    """Give a file or folder the mode a plain ``open()`` or ``mkdir()`` would have given it.

    ``tempfile.mkstemp`` and ``mkdtemp`` make theirs private to the owner (0600, 0700); a file or
    folder built under a temporary name and renamed into place gets 0666 or 0777 less the umask.
    """
    path = Path(path)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~current_umask())


def check_output(path: str | Path, what: str = "output", *, folder: bool = False) -> Path:
    """``path`` (user-expanded) if a command can write it there; else a one-line error, before any work.

    ``folder``: the output is a folder (it may exist), else a file. Refused: a folder where a file is
    expected and the reverse, a parent that is a file, and a nearest existing folder where no file can
    be created (read-only file system, no permission, /proc): that is tried with an empty probe file,
    removed at once. Nothing else is created. A full disk shows only when the writing starts.
    """
    from .errors import expect_output, from_os_error

    path = Path(path).expanduser()
    expect_output(path)  # named if a writer's disk error names no file
    try:
        if folder and path.exists() and not path.is_dir():
            raise WorkbenchError(
                f"{what} {path} is a file, not a folder", "name a folder (a new name is created)"
            )
        if not folder and path.is_dir():
            raise WorkbenchError(
                f"{what} {path} is a folder, not a file", "name a file (for example one inside it)"
            )
        near = path if folder and path.is_dir() else path.parent
        while not near.is_dir():
            if near.exists() or near.is_symlink():
                raise WorkbenchError(
                    f"cannot create {what} {path}: {near} is a file, not a folder",
                    "choose a path whose parent folders are folders",
                )
            near = near.parent
        _probe_folder(near, path)
    except OSError as err:
        translated = from_os_error(err)
        raise (translated or err) from err
    return path


def _probe_folder(folder: Path, target: Path) -> None:
    """Create and remove an empty file in ``folder``: raises the OSError a real write would (naming
    ``target``, the path the user gave)."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".workbench-write-check-")
    except FileNotFoundError:  # the folder is there, yet nothing can be made in it: /proc, /sys
        raise WorkbenchError(
            f"cannot create {target}: {folder} takes no new files (a virtual file system such as /proc)",
            "write under an ordinary folder",
        ) from None
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(target)) from None
    os.close(fd)
    os.unlink(name)
