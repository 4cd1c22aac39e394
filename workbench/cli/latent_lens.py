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
    from ..core.paths import check_output
    from ..train.latent_lens_index import LatentLensSource, build_latent_lens_index
    from .common import note_limit, quiet_transformers

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
    if out is not None:
        check_output(out, "--out", folder=True)  # before the model loads
    quiet_transformers()
    built = build_latent_lens_index(source)
    index = built.index
    if responses is not None:
        note_limit(limit, len(index.texts), "responses")
    typer.echo(
        f"{built.path}: {len(index)} token states from {len(index.texts)} responses "
        f"(layer {index.layer}, {built.bytes / 1e6:.1f} MB) in {built.seconds:.1f} s"
    )


@latent_lens_app.command()
def info(path: Annotated[Path, typer.Argument(help="Index folder (workbench or latentlens).")]) -> None:
    """Show what a latent index holds (JSON), without loading its backbone."""
    from ..lens.latent import INDEX_FILE, index_summary, is_latentlens_index, latentlens_summary

    if not (path.expanduser() / INDEX_FILE).is_file() and is_latentlens_index(path):
        typer.echo(json.dumps(latentlens_summary(path), indent=2, ensure_ascii=False))
        return
    typer.echo(json.dumps(index_summary(path), indent=2, ensure_ascii=False))


@latent_lens_app.command("export")
def export_index(
    path: Annotated[Path, typer.Argument(help="Workbench index folder.")],
    out: Annotated[Path, typer.Argument(help="Folder to write in the latentlens package's layout.")],
) -> None:
    """Write a workbench index in the latentlens layout (ContextualIndex.from_directory opens it)."""
    from ..core.paths import check_output
    from ..lens.latent import LatentIndex, write_latentlens

    check_output(out, "OUT", folder=True)
    index = LatentIndex.load(path)
    write_latentlens(index, out)
    typer.echo(f"{out}: layer_{index.layer}/embeddings_cache.pt with {len(index)} token states")


@latent_lens_app.command("import")
def import_index(
    path: Annotated[Path, typer.Argument(help="Index folder written by latentlens (layer_N/...).")],
    out: Annotated[Path, typer.Argument(help="Workbench index folder to write.")],
    model: ModelOpt = DEFAULT_BACKBONE,
    layer: Annotated[int | None, typer.Option(help="Its layer to take (default: the model's last).")] = None,
) -> None:
    """Turn a latentlens index into a workbench index (checked against --model, the model it was built on)."""
    from ..core.paths import check_output
    from ..lens.latent import read_latentlens
    from .common import load_model

    check_output(out, "OUT", folder=True)
    index = read_latentlens(path, load_model(model, None, False), layer=layer)
    index.save(out)
    typer.echo(f"{out}: {len(index)} token states of layer {index.layer} from {len(index.texts)} texts")
