"""``workbench quality``: held-out quality of a checkpoint, for its card and for regression tests.

Reconstruction F1 of decoding from the embedding against the LLM's own greedy answer, the cosine
between student and teacher embeddings of that answer, and query-to-own-answer retrieval, each
against the untrained tokens and input-centric baselines; then whether the embedding says what the
LLM says (:mod:`workbench.eval.behaviour`): refusal agreement, decoding F1 on the prompts the LLM
answers against the best constant answer, and harmful/benign twins. The held-out file is a `workbench
respond` output for prompts that were not used in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..core.paths import check_output
from .common import note_limit, quiet_transformers


def quality(
    checkpoint: Annotated[Path, typer.Argument(help="Trained checkpoint folder.")],
    heldout: Annotated[Path, typer.Option(help="Held-out responses JSONL (from `workbench respond`).")],
    train_responses: Annotated[
        Path, typer.Option(help="The training responses (for the generic answer baseline).")
    ],
    limit: Annotated[int, typer.Option(min=2, help="Held-out pairs used.")] = 200,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 48,
    out: Annotated[Path | None, typer.Option(help="Write the report as JSON here.")] = None,
    allow_overlap: Annotated[
        bool, typer.Option(help="Run on held-out prompts the checkpoint trained on (the count is reported).")
    ] = False,
    twins: Annotated[
        Path | None, typer.Option(help="Harmful/benign twin pairs JSONL (default: the packaged set).")
    ] = None,
    use_twins: Annotated[
        bool, typer.Option("--twins-check/--no-twins-check", help="Run the twins check.")
    ] = True,
) -> None:
    """Measure a checkpoint on held-out prompts and print a markdown table."""
    from ..eval.behaviour import quality_report

    quiet_transformers()
    if out is not None:
        check_output(out, "--out")  # before the model loads; the write is atomic
    report = quality_report(
        checkpoint,
        heldout,
        train_responses,
        twins=twins,
        use_twins=use_twins,
        limit=limit,
        max_new_tokens=max_new_tokens,
        progress=lambda m: typer.echo(f"... {m}", err=True),
        allow_overlap=allow_overlap,
    )
    if out is not None:
        report.write(out)
    note_limit(limit, report.heldout, "held-out pairs")
    typer.echo(report.markdown())
