"""Render the numbers quoted in the README, the cards and the guides from their JSON sources.

Each quoted result carries a hidden reference (``0.841<!--n figures/x.json#key/path-->``, see
:mod:`workbench.report.numbers`); this rewrites every such number from the committed JSON, in the
format it already has. ``--check`` changes nothing and exits 1 when a number differs from its source
or a result-like number has no reference (what CI runs, through tests/test_doc_numbers.py).

    python analyses/render_docs.py          # or: make docs
    python analyses/render_docs.py --check
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.core.errors import WorkbenchError
from workbench.report.numbers import check, render_files, unreferenced

ROOT = Path(__file__).resolve().parents[1]
DOCS = (
    "README.md",
    "workbench/checkpoints/*/README.md",
    "docs/guides/*.md",
    "figures/README.md",
    "analyses/README.md",
)


def documents() -> list[Path]:
    return sorted({p for pattern in DOCS for p in ROOT.glob(pattern)})


def problems() -> list[str]:
    """Every mismatch and every unreferenced result-like number, one line each."""
    out = []
    for path in documents():
        rel = path.relative_to(ROOT)
        try:
            out += [
                f"{m.file}:{m.line}: quotes {m.quoted}, its source gives {m.rendered} ({m.ref})"
                for m in check(path, ROOT)
            ]
        except WorkbenchError as err:  # a reference to a file or key that is not there
            out.append(f"{rel}: {err}")
        out += [f"{rel}:{line}: {number} has no source reference" for line, number in unreferenced(path)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 on drift")
    args = parser.parse_args(argv)
    if not args.check:
        try:
            for path in render_files(documents(), ROOT):
                print(f"rendered {path.relative_to(ROOT)}")
        except WorkbenchError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    found = problems()
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
