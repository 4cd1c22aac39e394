"""Execute the notebooks and store them with their outputs: ``python notebooks/execute.py [NAME ...]``
(``--timeout SECONDS`` per cell first, on a busy machine).

Each notebook runs top to bottom in a fresh kernel from this folder (offline, on the default
backbone). What is stored is what a reader on a code host should see: stdout, tables, and each chart
as a PNG plus plotly's interactive mimetype (see :mod:`workbench.report.notebook`). Left out: stderr
(progress bars, warnings), timing metadata, and anything naming a folder of this machine, which is
an error. ``tests/test_notebooks.py`` runs the same execution and compares the outputs' structure
with what is stored (:func:`structure`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CELL_TIMEOUT_S = 300
MACHINE_PATHS = ("/work/", "/root/", "/home/", "/tmp/", "/Users/")
MAX_BYTES = 2_000_000
"""A stored notebook stays under this size (plotly.js is never embedded)."""
OPTIONAL = {"image/png"}
"""Mimetypes that depend on the machine (a PNG needs a Chrome for kaleido)."""


def execute(path: Path, timeout: int = CELL_TIMEOUT_S) -> tuple[Any, float]:
    """The notebook at ``path`` executed in a fresh ``python3`` kernel, and the seconds it took."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    return nb, time.perf_counter() - start


def clean(nb: Any) -> Any:
    """Keep what a reader should see: stdout and rich outputs, no stderr, no timing metadata."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    return nb


def structure(nb: Any) -> list[list[tuple[str, ...]]]:
    """Per code cell, its outputs' kinds: stream name, or output type and mimetypes (stderr and the
    machine-dependent PNG left out; consecutive stdout chunks counted once)."""
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kinds: list[tuple[str, ...]] = []
        for o in cell.get("outputs", []):
            if o["output_type"] == "stream":
                if o["name"] == "stderr" or kinds[-1:] == [("stream", o["name"])]:
                    continue
                kinds.append(("stream", o["name"]))
            elif o["output_type"] in ("display_data", "execute_result"):
                kinds.append((o["output_type"], *sorted(set(o["data"]) - OPTIONAL)))
            else:
                kinds.append((o["output_type"],))
        out.append(kinds)
    return out


def problems(path: Path) -> list[str]:
    """What is wrong with a stored notebook: machine paths, size, an error output, no outputs."""
    text = path.read_text(encoding="utf-8")
    found = [f"names a machine folder ({p})" for p in MACHINE_PATHS if p in text]
    if len(text.encode("utf-8")) > MAX_BYTES:
        found.append(f"{len(text.encode('utf-8')) / 1e6:.1f} MB (limit {MAX_BYTES / 1e6:.0f} MB)")
    if "cdn.plot.ly" in text or "require.config" in text:
        found.append("plotly.js is loaded or embedded (use workbench.report.notebook.show)")
    import nbformat

    nb = nbformat.read(path, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    if any(o.output_type == "error" for o in outputs):
        found.append("an error output")
    if not outputs:
        found.append("stored without outputs")
    return found


def main(args: list[str]) -> int:
    """``[--timeout SECONDS] [NAME ...]``: execute and store the named notebooks (default: all)."""
    import nbformat

    timeout = CELL_TIMEOUT_S
    if args[:1] == ["--timeout"]:
        timeout, args = int(args[1]), args[2:]
    paths = [HERE / f"{n.removesuffix('.ipynb')}.ipynb" for n in args] or sorted(HERE.glob("*.ipynb"))
    bad = 0
    for path in paths:
        nb, seconds = execute(path, timeout)
        nbformat.write(clean(nb), path)
        issues = problems(path)
        size = path.stat().st_size / 1e3
        print(f"{path.name}: {seconds:.0f} s, {size:.0f} kB" + (f"; {'; '.join(issues)}" if issues else ""))
        bad += bool(issues)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
