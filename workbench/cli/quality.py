"""``workbench quality``: held-out quality of a checkpoint, for its card and for regression tests.

Reconstruction F1 of decoding from the embedding against the LLM's own greedy answer, the cosine
between student and teacher embeddings of that answer, and query-to-own-answer retrieval, each
against the untrained tokens and input-centric baselines. The held-out file is a `workbench
respond` output for prompts that were not used in training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def quality(
    checkpoint: Annotated[Path, typer.Argument(help="Trained checkpoint folder.")],
    heldout: Annotated[Path, typer.Option(help="Held-out responses JSONL (from `workbench respond`).")],
    train_responses: Annotated[
        Path, typer.Option(help="The training responses (for the generic answer baseline).")
    ],
    limit: Annotated[int, typer.Option(min=2, help="Held-out pairs used.")] = 200,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 48,
    out: Annotated[Path | None, typer.Option(help="Write the report as JSON here.")] = None,
) -> None:
    """Measure a checkpoint on held-out prompts and print a markdown table."""
    from transformers.utils import logging as hf_logging

    from ..store.loading import load
    from ..train.pairs import read_pairs
    from ..train.quality import evaluate, untrained_twin

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    from ..store.checkpoint import read_checkpoint

    gen = load(checkpoint)
    # encode held-out prompts the way the run encoded its training prompts
    instruction = read_checkpoint(checkpoint).meta.get("card", {}).get("train", {}).get("query_instruction")
    heldout_pairs, _ = read_pairs(heldout, limit)
    train_pairs, _ = read_pairs(train_responses, None)
    held = {p.prompt for p in heldout_pairs}
    overlap = sum(p.prompt in held for p in train_pairs)
    if overlap:
        from ..core.errors import WorkbenchError

        raise WorkbenchError(
            f"{overlap} held-out prompts also occur in the training responses",
            "hold out prompts that were not trained on",
        )
    report = evaluate(
        gen,
        untrained_twin(gen),
        heldout_pairs,
        [p.response for p in train_pairs],
        max_new_tokens=max_new_tokens,
        query_instruction=instruction or None,
        progress=lambda m: typer.echo(f"... {m}", err=True),
    )
    if out is not None:
        from ..store.atomic import atomic_write

        text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
        atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    typer.echo(report.markdown())
