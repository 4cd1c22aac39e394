"""``workbench export`` (workbench ⇄ official llm2vec-gen layout) and ``workbench zoo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..core.errors import WorkbenchError

FORMATS = ("official", "workbench")


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
    if format not in FORMATS:
        raise WorkbenchError(f"unknown format {format!r}", f"use one of {', '.join(FORMATS)}")
    from transformers.utils import logging as hf_logging

    from ..store.loading import load
    from ..store.official import export_official

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    gen = load(source, backbone=backbone)
    if format == "official":
        path = export_official(gen, out, base_model=base_model, copy_base=copy_base, overwrite=overwrite)
        if gen.backbone.info.source in ("registry", "gguf", "local") and not (copy_base or base_model):
            typer.echo(
                "note: run_config.yml names the backbone's folder; if transformers 5 saved it, the official "
                "package (transformers 4.56) misreads its RoPE settings: --copy-base writes a copy it reads",
                err=True,
            )
    else:
        if out.exists() and any(out.iterdir()) and not overwrite:
            raise WorkbenchError(
                f"{out} already exists and is not empty", "choose a new folder or pass --overwrite"
            )
        path = gen.save(out, exported_from=str(source))
    typer.echo(f"wrote {format} checkpoint {path}")


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
