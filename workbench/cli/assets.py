"""``workbench backbones``, ``fetch`` and ``info``: what is installed, cached and saved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import DEFAULT_BACKBONE, console


def backbones() -> None:
    """List the registry backbones and teachers that install offline."""
    from rich.table import Table

    from ..core.assets import is_cached
    from ..core.registry import BACKBONES, TEACHERS

    table = Table(title="backbones")
    for col in ("name", "cached", "hub original", "about"):
        table.add_column(col, overflow="fold")
    for spec in BACKBONES.values():
        table.add_row(spec.name, "yes" if is_cached(spec.name) else "no", spec.hub_id, spec.description)
    teachers = Table(title="teachers")
    for col in ("name", "dim", "about"):
        teachers.add_column(col, overflow="fold")
    for t in TEACHERS.values():
        teachers.add_row(t.name, "hidden size" if t.dim < 0 else str(t.dim), t.description)
    out = console()
    out.print(table)
    out.print(teachers)


def fetch(
    name: Annotated[str, typer.Argument(help="Registry backbone or teacher name.")] = DEFAULT_BACKBONE,
) -> None:
    """Download, verify and dequantise a registry backbone (or fetch a teacher) into the cache."""
    from ..core.assets import fetch_asset

    typer.echo(fetch_asset(name))


def info(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder (workbench or official).")],
) -> None:
    """Show what a checkpoint folder holds, without loading its backbone."""
    from ..store.describe import describe_checkpoint

    typer.echo(json.dumps(describe_checkpoint(checkpoint), indent=2))
