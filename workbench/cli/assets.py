"""``workbench backbones``, ``fetch`` and ``info``: what is installed, cached and saved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..core.errors import WorkbenchError
from .common import DEFAULT_BACKBONE, console


def backbones() -> None:
    """List the registry backbones and teachers that install offline."""
    from rich.table import Table

    from ..core.paths import cache_dir
    from ..core.registry import BACKBONES, TEACHERS

    table = Table(title="backbones")
    for col in ("name", "cached", "hub original", "about"):
        table.add_column(col, overflow="fold")
    for spec in BACKBONES.values():
        cached = (cache_dir() / "backbones" / f"{spec.name}-{spec.sha256[:16]}").is_dir()
        table.add_row(spec.name, "yes" if cached else "no", spec.hub_id, spec.description)
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
    from ..core.registry import BACKBONES, TEACHERS

    if name in TEACHERS and name != "self":
        from ..core.teacher import load_teacher

        teacher = load_teacher(name)
        typer.echo(f"teacher {name} ready ({teacher.dim}-d)")
        return
    if name not in BACKBONES:
        raise WorkbenchError(
            f"unknown registry name {name!r}", f"use one of {', '.join([*BACKBONES, *TEACHERS])}"
        )
    from ..core.backbone import load_backbone

    backbone = load_backbone(name)
    typer.echo(
        f"backbone {name} ready: {backbone.info.num_layers} layers, hidden "
        f"{backbone.info.hidden_size}, sha256 {backbone.info.sha256}"
    )


def info(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder (workbench or official).")],
) -> None:
    """Show what a checkpoint folder holds, without loading its backbone."""
    from ..store.official import is_official, read_official

    if is_official(checkpoint):
        ck = read_official(checkpoint)
        shapes = {k: list(v.shape) for k, v in ck.tensors.items()}
        summary = {
            "format": "official llm2vec-gen",
            "base_model": ck.base_model,
            "tokens": {
                "thought": len(ck.special_tokens) - ck.num_compress,
                "compress": ck.num_compress,
                "strings": ck.special_tokens,
            },
            "tensors": shapes,
            "max_length": ck.max_length,
            "dtype": ck.dtype,
            "teacher": ck.teacher,
        }
        typer.echo(json.dumps(summary, indent=2))
        return
    from ..store.checkpoint import read_checkpoint

    data = read_checkpoint(checkpoint)
    typer.echo(
        json.dumps({k: data.meta[k] for k in ("config", "backbone", "tokens", "heads", "trained")}, indent=2)
    )


