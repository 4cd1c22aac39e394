"""``workbench export`` (workbench ⇄ official llm2vec-gen layout) and ``workbench zoo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import quiet_transformers


def export(
    source: Annotated[
        str, typer.Argument(help="Workbench checkpoint folder, registry backbone, or official checkpoint.")
    ],
    out: Annotated[Path, typer.Argument(help="Folder to write.")],
    format: Annotated[
        str,
        typer.Option(
            "--format", "-f", help="official: llm2vec-gen 0.1.3 layout; workbench: safetensors + JSON."
        ),
    ] = "official",
    base_model: Annotated[
        str | None,
        typer.Option(
            help="model_name_or_path written to run_config.yml (default: the backbone's folder or hub id)."
        ),
    ] = None,
    backbone: Annotated[
        str | None, typer.Option(help="Backbone for an official source whose base model is not at hand.")
    ] = None,
    copy_base: Annotated[
        bool,
        typer.Option(
            "--copy-base", help="Copy the backbone into OUT/base, readable by transformers 4.56, and name it."
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """Write a checkpoint in another layout: `workbench export CKPT OUT --format official`."""
    from ..store.convert import export_checkpoint

    quiet_transformers()
    done = export_checkpoint(
        source,
        out,
        format=format,
        base_model=base_model,
        backbone=backbone,
        copy_base=copy_base,
        overwrite=overwrite,
    )
    if done.note:
        typer.echo(done.note, err=True)
    typer.echo(f"wrote {format} checkpoint {done.path}")


def zoo_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as JSON.")] = False,
) -> None:
    """The public LLM2Vec-Gen checkpoints: `workbench.load(NAME)` fetches one when online."""
    from rich.console import Console
    from rich.table import Table

    from ..store.zoo import zoo

    entries = zoo()
    if as_json:
        typer.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    table = Table(title="LLM2Vec-Gen checkpoints (official layout; MTEB(eng, v2) averages from the paper)")
    for col in ("name", "hub id", "base model", "tokens N / C", "MTEB", "teacher"):
        table.add_column(col, no_wrap=col in ("name", "hub id", "base model"))
    for e in entries:
        hub = "unknown" if e.hub_id is None else e.hub_id + ("" if e.hub_verified else " (unverified)")
        table.add_row(
            e.name,
            hub,
            e.base_model,
            f"{e.special_tokens} / {e.compression_tokens}",
            "-" if e.mteb is None else f"{e.mteb:.1f}",
            "-" if e.teacher_mteb is None else f"{e.teacher_mteb:.1f}",
        )
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 140
    console.print(table)
