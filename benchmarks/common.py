"""Pieces shared by the benchmark scripts: machine facts, token counting, the result table."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any


def token_counter(tokenizer: Any) -> Callable[[str], int]:
    """Tokens of a text as the encoder tokenizes it (tokenizer defaults, no specials appended)."""
    return lambda text: len(tokenizer(text)["input_ids"])


def peak_rss_mb() -> float:
    """This process's peak resident set in MB: ``VmHWM`` of ``/proc/self/status`` where there is one.

    ``ru_maxrss`` is not used on Linux: a process started from a large one reports at least the
    parent's resident set at the fork (the high-water mark survives fork and exec); ``VmHWM`` belongs
    to the process's own memory map."""
    import resource

    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def machine_info() -> dict[str, Any]:
    """Library versions, threads and platform."""
    import nnsight
    import torch
    import transformers

    import workbench

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "nnsight": nnsight.__version__,
        "workbench": workbench.__version__,
        "git_commit": commit or None,
    }


def print_table(title: str, rows: list[tuple[str, str, str, bool | None]]) -> None:
    """A rich table of (measurement, value, target, passed)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col, justify in (
        ("measurement", "left"),
        ("value", "right"),
        ("target", "right"),
        ("result", "center"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, value, target, ok in rows:
        result = "" if ok is None else ("[green]pass[/]" if ok else "[red]FAIL[/]")
        table.add_row(name, value, target, result)
    Console().print(table)
