"""``workbench lens-index``: build and inspect the latent lens's index of response-token states.

``build`` reads the frozen LLM's responses from a ``workbench respond`` file (``--responses``), or
first lets the LLM answer ``--prompts`` (cached and resumable, evaluation queries refused unless
``--force``), then indexes every response token by its in-context state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..core.errors import WorkbenchError
from .common import DEFAULT_BACKBONE

if TYPE_CHECKING:
    from ..core.model import LLM2VecGen

DEFAULT_PROMPTS = 200

lens_index_app = typer.Typer(
    name="lens-index",
    help="Build and inspect the latent lens's index of response-token states.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _slug(text: str) -> str:
    import hashlib
    import re

    base = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text).name).strip("-.") or "prompts"
    return f"{base}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _answers(
    gen: LLM2VecGen,
    source: str,
    *,
    field: str | None,
    data_dir: Path | None,
    limit: int,
    max_new_tokens: int,
    batch_size: int,
    force: bool,
    quiet: bool,
) -> tuple[list[str], Path]:
    """The LLM's answers to the first ``limit`` prompts of ``source``, through a resumable cache."""
    from ..lens.latent import default_index_path
    from ..train.prompts import load_prompts
    from ..train.responding import read_done, respond

    prompts = load_prompts(source, field=field, data=data_dir, limit=limit, force=force)
    base = default_index_path(gen)
    cache = base.parent / "responses" / f"{base.name}-{_slug(source)}-{max_new_tokens}tok.jsonl"
    respond(
        gen.backbone,
        prompts,
        cache,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        show_progress=not quiet,
    )
    done, _ = read_done(cache)
    by_text = {row["prompt"]: row for row in done.values()}
    rows = [done.get(p.id) or by_text.get(p.text) for p in prompts]
    answers = [
        r["response"] for r in rows if r and isinstance(r.get("response"), str) and r["response"].strip()
    ]
    if not answers:
        raise WorkbenchError(
            f"{gen.backbone.info.name} gave only empty answers to {source} (cached in {cache})",
            "use another backbone or more --max-new-tokens (delete the cache to answer again)",
        )
    return answers, cache


@lens_index_app.command()
def build(
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="Registry backbone, hub id, model folder or checkpoint folder."),
    ] = DEFAULT_BACKBONE,
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
    import time

    from transformers.utils import logging as hf_logging

    from ..lens.latent import build_latent_index, default_index_path
    from ..store.loading import load
    from ..store.textio import read_texts

    if (responses is None) == (prompts is None):
        raise WorkbenchError(
            "name exactly one source of responses",
            "pass --responses FILE (from `workbench respond`) or --prompts SOURCE --limit N",
        )
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    gen = load(model)
    if responses is not None:
        texts = read_texts(responses, field)[:limit]  # None: all
        origin = str(responses)
    else:
        assert prompts is not None
        texts, cache = _answers(
            gen,
            prompts,
            field=prompt_field,
            data_dir=data_dir,
            limit=limit or DEFAULT_PROMPTS,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            force=force,
            quiet=quiet,
        )
        origin = f"{prompts} (answers cached in {cache})"
    target = out.expanduser() if out is not None else default_index_path(gen)
    started = time.perf_counter()
    index = build_latent_index(
        gen,
        texts,
        batch_size=batch_size,
        max_tokens_per_text=max_tokens_per_text,
        layer=layer,
        show_progress=not quiet,
    )
    seconds = time.perf_counter() - started
    index.meta |= {"source": origin, "build_seconds": round(seconds, 2)}
    index.save(target)
    size = sum(f.stat().st_size for f in target.iterdir() if f.is_file())
    typer.echo(
        f"{target}: {len(index)} token states from {len(index.texts)} responses "
        f"(layer {index.layer}, {size / 1e6:.1f} MB) in {seconds:.1f} s"
    )


@lens_index_app.command()
def info(path: Annotated[Path, typer.Argument(help="Index folder.")]) -> None:
    """Show what a latent index holds (JSON), without loading its backbone."""
    from ..lens.latent import LatentIndex

    index = LatentIndex.load(path)
    summary = index.summary() | {
        "bytes": sum(f.stat().st_size for f in Path(path).expanduser().iterdir() if f.is_file())
    }
    typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
