"""The one exception type users see: a one-line message naming the problem and the fix."""

from __future__ import annotations

import errno
import os
import re


class WorkbenchError(Exception):
    """A user-facing error. ``str(err)`` is a single line: what went wrong, then how to fix it."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        problem = " ".join(problem.split())
        message = problem if fix is None else f"{problem.rstrip('.')}. Fix: {' '.join(fix.split())}"
        super().__init__(message)
        self.problem = problem
        self.fix = fix


# ----------------------------------------------------------------------------- operating-system errors
# What the file system said, as a problem and a fix; ``{path}`` is the file or folder it named.
OS_PROBLEMS: dict[int, tuple[str, str]] = {
    errno.EROFS: (
        "cannot write {path}: the file system is read-only",
        "write to a folder on a writable disk (pass another output path)",
    ),
    errno.ENOSPC: (
        "cannot write {path}: no space left on the disk",
        "free some space (see `df -h`) or write to another disk",
    ),
    errno.EDQUOT: (
        "cannot write {path}: the disk quota is exceeded",
        "free some space in your quota or write to another disk",
    ),
    errno.EFBIG: ("cannot write {path}: the file is too large for this file system", "write to another disk"),
    errno.EISDIR: (
        "{path} is a folder where a file is expected",
        "name a file (for example one inside that folder)",
    ),
    errno.ENOTDIR: (
        "{path}: a part of this path is a file where a folder is expected",
        "choose a path whose parent folders are folders",
    ),
    errno.EEXIST: (
        "{path} already exists and is not a folder",
        "remove it, or choose a path where a folder can be created",
    ),
    errno.EACCES: (
        "permission denied: {path}",
        "choose a location you may write to, or change its permissions",
    ),
    errno.EPERM: (
        "operation not permitted: {path}",
        "choose a location you may write to, or change its permissions",
    ),
    errno.ENOENT: (
        "{path} does not exist, and cannot be created there",
        "check the path: a file to read must exist, an output must go where files can be created "
        "(not under /proc or /sys)",
    ),
    errno.ENAMETOOLONG: ("the path {path} is too long", "use a shorter file or folder name"),
    errno.ELOOP: ("{path} goes through a loop of symbolic links", "fix the links or choose another path"),
    errno.EINVAL: ("{path} is not a valid path here", "choose another file or folder name"),
    errno.EIO: ("input/output error on {path}", "check the disk (dmesg) or write to another disk"),
}

_RUST_IO = re.compile(r"\(os error (\d+)\)")  # tokenizers and safetensors wrap io errors like this
_STRERRORS = {os.strerror(code): code for code in (errno.ENOSPC, errno.EROFS, errno.EDQUOT)}
_TORCH_WRITE_FAILED = ("file write failed", "unexpected pos")  # torch.save's PytorchStreamWriter


_OUTPUTS: list[str] = []  # the outputs the running command checked (core.paths.check_output)


def expect_output(path: object) -> None:
    """Note an output the running command writes, to name it when a writer's error names no path."""
    _OUTPUTS.append(str(path))
    del _OUTPUTS[:-8]  # a long session (a notebook) keeps the latest few


def forget_outputs() -> None:
    """Start a new command: no outputs noted."""
    _OUTPUTS.clear()


def _named_outputs() -> str:
    return " or ".join(dict.fromkeys(_OUTPUTS)) if _OUTPUTS else "the output"


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was explicitly raised from (``raise ... from``), nearest first."""
    seen: list[BaseException] = []
    item: BaseException | None = err
    while item is not None and not any(item is s for s in seen):
        seen.append(item)
        item = item.__cause__
    return seen


def from_os_error(err: BaseException) -> WorkbenchError | None:
    """The one-line error for a failed file-system operation, or None when ``err`` is not one.

    Reads the ``errno`` of an :class:`OSError` (or one it was raised from), the ``(os error N)`` of
    the Rust io errors that tokenizers and safetensors raise as plain exceptions, and torch's
    "file write failed". The path is the one the error names; when it names none, the outputs the
    command checked (:func:`expect_output`), else "the output".
    """
    for item in _chain(err):
        if isinstance(item, OSError) and item.errno is not None:
            return _os_message(item.errno, item.filename, item.strerror)
    text = str(err)
    match = _RUST_IO.search(text)
    if match:
        return _os_message(int(match.group(1)), None, text)
    for strerror, code in _STRERRORS.items():
        if strerror in text:
            return _os_message(code, None, text)
    if isinstance(err, RuntimeError) and any(s in text for s in _TORCH_WRITE_FAILED):
        return WorkbenchError(
            f"writing {_named_outputs()} failed ({' '.join(text.split())[:120]}): the disk is probably full",
            "free some space (see `df -h`) or write to another disk",
        )
    return None


def _os_message(code: int, filename: object, strerror: str | None) -> WorkbenchError:
    path = _named_outputs() if filename is None else str(filename)
    if code in OS_PROBLEMS:
        problem, fix = OS_PROBLEMS[code]
        return WorkbenchError(problem.format(path=path), fix)
    reason = strerror or os.strerror(code)
    return WorkbenchError(f"{path}: {reason}", "check the path, its permissions and the disk")
