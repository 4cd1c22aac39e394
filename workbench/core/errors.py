"""The one exception type users see: a one-line message naming the problem and the fix."""

from __future__ import annotations


class WorkbenchError(Exception):
    """A user-facing error. ``str(err)`` is a single line: what went wrong, then how to fix it."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        problem = " ".join(problem.split())
        message = problem if fix is None else f"{problem.rstrip('.')}. Fix: {' '.join(fix.split())}"
        super().__init__(message)
        self.problem = problem
        self.fix = fix
