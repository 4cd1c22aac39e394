"""``workbench latent-lens``: build and inspect the latent lens's index of response-token states.

``build`` reads the frozen LLM's responses from a ``workbench respond`` file (``--responses``), or
first lets the LLM answer ``--prompts`` (cached and resumable, evaluation queries refused unless
``--force``), then indexes every response token by its in-context state; the work is
:func:`workbench.train.latent_lens_index.build_latent_lens_index`. ``workbench lens-index`` is the
old name: a hidden alias that still works and says so on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import DEFAULT_BACKBONE, ModelOpt

latent_lens_app = typer.Typer(
    name="latent-lens",
    help="Build and inspect the latent lens's index of response-token states.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


LENS_INDEX_HELP = "Old name of `workbench latent-lens` (deprecated): build and inspect a latent-lens index."


def lens_index_deprecated() -> None:
    """The old command name ``lens-index``: a one-line note on stderr, then the same commands."""
    typer.echo(
        "note: `workbench lens-index` is now `workbench latent-lens`; the old name goes away in 0.3",
        err=True,
    )


@latent_lens_app.command()
def build(
    model: ModelOpt = DEFAULT_BACKBONE,
    responses: Annotated[
        Path | None,
        typer.Option(help="Responses file written by `workbench respond` (.jsonl) or a .txt file."),
    ] = None,
    field: Annotated[str, typer.Option(help="Text field of the responses file.")] = "response",
    prompts: Annotated[
        str | None, typer.Option(help="Or: a prompt source (nq-open, a file, ...) the LLM answers first.")
    ] = None,
    prompt_field: Annotated[str | None, typer.Option(help="Text field of a prompt file.")] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="Prompts to answer (default 200) or responses to use (default all)."),
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder of the public data sets.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Answer length when answering --prompts.")] = 64,
    out: Annotated[Path | None, typer.Option(help="Index folder (default: the cache, per backbone).")] = None,
    max_tokens_per_text: Annotated[int, typer.Option(min=1, help="Tokens indexed per response.")] = 64,
    layer: Annotated[int | None, typer.Option(help="Layer read (default: the last, post-norm).")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    force: Annotated[bool, typer.Option(help="Allow evaluation queries as prompts.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Index the LLM's response tokens by their in-context states (for `workbench lens --latent`)."""
    from ..train.latent_lens_index import LatentLensSource, build_latent_lens_index
    from .common import quiet_transformers

    source = LatentLensSource(
        model=model,
        responses=responses,
        field=field,
        prompts=prompts,
        prompt_field=prompt_field,
        limit=limit,
        data_dir=data_dir,
        max_new_tokens=max_new_tokens,
        out=out,
        max_tokens_per_text=max_tokens_per_text,
        layer=layer,
        batch_size=batch_size,
        force=force,
        quiet=quiet,
    )
    quiet_transformers()
    built = build_latent_lens_index(source)
    index = built.index
    typer.echo(
        f"{built.path}: {len(index)} token states from {len(index.texts)} responses "
        f"(layer {index.layer}, {built.bytes / 1e6:.1f} MB) in {built.seconds:.1f} s"
    )


@latent_lens_app.command()
def info(path: Annotated[Path, typer.Argument(help="Index folder.")]) -> None:
    """Show what a latent index holds (JSON), without loading its backbone."""
    from ..lens.latent import index_summary

    typer.echo(json.dumps(index_summary(path), indent=2, ensure_ascii=False))
