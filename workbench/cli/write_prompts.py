"""``workbench write-prompts``: the frozen LLM writes questions about seed topics (self-instruct style).

``--topics train`` or ``heldout`` takes the packaged seed lists (disjoint), or name a .txt (one topic
per line) or .yaml list. The output is a resumable JSONL whose ``prompt`` field ``workbench respond
--prompts FILE`` reads (add ``--heldout`` for the held-out list's questions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..core.paths import check_output
from ..store.atomic import undo_on_failure
from .common import DEFAULT_BACKBONE, quiet_transformers


def write_prompts(
    out: Annotated[Path, typer.Option(help="JSONL of written questions (appended; resumable).")],
    topics: Annotated[
        str, typer.Option(help="Seed topics: `train`, `heldout` (packaged lists) or a .txt/.yaml file.")
    ] = "train",
    model: Annotated[str, typer.Option("--model", "-m", help="Backbone that writes.")] = DEFAULT_BACKBONE,
    per_topic: Annotated[int, typer.Option(min=1, max=20, help="Questions asked for per topic.")] = 5,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    max_new_tokens: Annotated[int, typer.Option(min=16)] = 120,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Let the frozen LLM write questions about seed topics: prompts for `respond` (self-written)."""
    from ..core.backbone import load_backbone
    from ..train.self_prompts import seed_topics
    from ..train.self_prompts import write_prompts as write

    quiet_transformers()
    names = seed_topics(topics)
    out = check_output(out, "--out")  # before the model loads
    kept = undo_on_failure(out.parent, prefix=out.name, keep=lambda: out.is_file() and out.stat().st_size > 0)
    with kept:
        stats = write(
            load_backbone(model),
            names,
            out,
            per_topic=per_topic,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            show_progress=not quiet,
        )
    typer.echo(
        f"{out}: {stats.written} questions written now for {stats.topics - stats.topics_done_before} topics, "
        f"{stats.topics_done_before} of {stats.topics} topics already there"
    )
