"""``workbench respond``: the frozen LLM answers training prompts into a resumable JSONL cache.

Sources: ``nq-open``, ``gsm8k``, ``self-instruct`` (read from ``--data-dir``, default
``$WORKBENCH_DATA`` or ``../shared/data``), a ``.jsonl``/``.json``/``.csv``/``.txt`` file with
``--field``, or ``hf:<dataset id>[:split]`` when online. Evaluation queries (AdvBench-IR,
TheoremQA, NQ-open EfficientQA-test) are refused unless ``--heldout`` (answered as held-out
references, rows marked so that ``train`` refuses them) or ``--force``. Greedy by default;
``--sample`` with ``--temperature``/``--top-p``/``--seed``. Interrupt it at any time: the next run
continues where it stopped. Runs unchanged under ``accelerate launch --num_processes N``: each
process answers its share of the prompts into ``OUT.part-K``, merged into ``OUT`` at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..core.paths import check_output
from ..store.atomic import undo_on_failure
from .common import DEFAULT_BACKBONE, note_limit, quiet_transformers


def respond(
    prompts: Annotated[str, typer.Option(help="Prompt source: set name, file, or hf:<id>[:split].")],
    out: Annotated[Path, typer.Option(help="JSONL cache to append to.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Backbone.")] = DEFAULT_BACKBONE,
    field: Annotated[str | None, typer.Option(help="Text field of a JSONL/JSON/CSV source.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder of the public data sets.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use the first N prompts.")] = None,
    shuffle_seed: Annotated[int | None, typer.Option(help="Shuffle before --limit.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 128,
    sample: Annotated[bool, typer.Option("--sample/--greedy", help="Sample instead of greedy.")] = False,
    temperature: Annotated[float, typer.Option(min=0.0)] = 1.0,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    system_prompt: Annotated[str | None, typer.Option(help="Optional system message.")] = None,
    force: Annotated[bool, typer.Option(help="Allow evaluation queries as training prompts.")] = False,
    heldout: Annotated[
        bool,
        typer.Option(help="Answer held-out evaluation queries (rows marked heldout; train refuses them)."),
    ] = False,
    exclude: Annotated[
        list[Path] | None,
        typer.Option(help="JSONL of prompts to leave out, e.g. a held-out set (repeatable; after --limit)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Start the cache afresh.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Let the frozen LLM answer prompts (its own responses are the training targets)."""
    from ..train.responding import part_files, respond_to_source

    quiet_transformers()
    out = check_output(out, "--out")  # before the model loads
    # the cache (and the part files of a launch with several processes) is kept once it holds answers
    # (the next run continues it), else removed on failure
    kept = undo_on_failure(
        out.parent,
        prefix=out.name,
        keep=lambda: any(p.is_file() and p.stat().st_size > 0 for p in [out, *part_files(out)]),
    )
    with kept:
        stats = respond_to_source(
            prompts,
            out,
            model=model,
            field=field,
            data_dir=data_dir,
            limit=limit,
            shuffle_seed=shuffle_seed,
            force=force,
            heldout=heldout,
            exclude=exclude or (),
            note=None if quiet else (lambda message: typer.echo(message, err=True)),
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            system_prompt=system_prompt,
            overwrite=overwrite,
            show_progress=not quiet,
        )
    from ..core.processes import process_state

    if not process_state().is_main_process:  # one summary per launch
        return
    if not exclude:  # (--exclude drops prompts after --limit)
        note_limit(limit, stats.total, "prompts")
    typer.echo(
        f"{out}: {stats.answered} answered now, {stats.done_before} already there, {stats.total} prompts"
    )
