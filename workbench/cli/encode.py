"""``workbench encode``, ``generate`` and ``answer``: embed, decode an embedding, ask the LLM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import (
    DEFAULT_BACKBONE,
    CheckpointOpt,
    ModelOpt,
    UntrainedOpt,
    console,
    load_model,
    outputs,
    quiet_transformers,
)


def encode(
    queries: Annotated[list[str], typer.Argument(help="Query texts to embed.")],
    documents: Annotated[
        Path | None,
        typer.Option(
            "--documents", "-d", help="Documents: a .txt file (one per line) or .jsonl file (see --field)."
        ),
    ] = None,
    field: Annotated[str, typer.Option(help="JSONL field holding the document text.")] = "text",
    model: ModelOpt = DEFAULT_BACKBONE,
    checkpoint: CheckpointOpt = None,
    instruction: Annotated[
        str, typer.Option(help="Query instruction (default: the retrieval one; 'none' for none).")
    ] = "",
    document_instruction: Annotated[
        str, typer.Option(help="Document instruction (default: the summarise one; 'none' for none).")
    ] = "",
    top_k: Annotated[int, typer.Option(min=1, help="Documents shown per query.")] = 5,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    save: Annotated[
        Path | None, typer.Option(help="Also write the embeddings to this .safetensors file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    untrained: UntrainedOpt = False,
) -> None:
    """Embed queries (and documents) and print cosine similarities, best first."""
    from ..core.config import DOCUMENT_INSTRUCTION, QUERY_INSTRUCTION
    from ..core.inputs import check_texts
    from ..core.search import search
    from ..store.textio import read_texts

    check_texts(queries)
    docs = read_texts(documents, field) if documents is not None else None

    def chosen(value: str, default: str) -> str | None:
        return None if value.lower() == "none" else value or default

    with outputs(files={"--save file": save}):  # a bad --save fails before the model loads
        gen = load_model(model, checkpoint, untrained)
        ranking = search(
            gen,
            queries,
            docs,
            top_k=top_k,
            instruction=chosen(instruction, QUERY_INSTRUCTION),
            document_instruction=chosen(document_instruction, DOCUMENT_INSTRUCTION),
            batch_size=batch_size,
        )
        if save is not None:
            from safetensors.torch import save_file

            from ..store.atomic import atomic_write

            tensors = ranking.tensors()
            atomic_write(save.expanduser(), lambda tmp: save_file(tensors, str(tmp)))
    if as_json:
        typer.echo(json.dumps(ranking.to_dict(), ensure_ascii=False, indent=2))
        return
    from rich.table import Table

    out = console()
    for query, hits in zip(ranking.queries, ranking.hits, strict=True):
        table = Table(title=f"[bold]{query}[/]", title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("cosine", justify="right")
        table.add_column("document" if docs is not None else "query", overflow="fold")
        for row in hits:
            table.add_row(str(row["rank"]), f"{row['score']:.4f}", row["text"])
        out.print(table)


def generate(
    queries: Annotated[list[str], typer.Argument(help="Texts whose embedding is decoded.")],
    model: ModelOpt = DEFAULT_BACKBONE,
    checkpoint: CheckpointOpt = None,
    instruction: Annotated[str, typer.Option(help="Instruction prepended before encoding.")] = "",
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 48,
    compare: Annotated[bool, typer.Option(help="Also print the LLM's own chat answer.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    untrained: UntrainedOpt = False,
) -> None:
    """Decode what an embedding holds: the frozen LLM generates from the soft prompts."""
    from ..core.inputs import check_texts

    check_texts(queries)
    gen = load_model(model, checkpoint, untrained)
    decoded = gen.generate(queries, instruction=instruction or None, max_new_tokens=max_new_tokens)
    answers = gen.answer(queries, max_new_tokens=max_new_tokens) if compare else [None] * len(queries)
    rows = [
        {"query": q, "decoded": d} | ({"answer": a} if compare else {})
        for q, d, a in zip(queries, decoded, answers, strict=True)
    ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    out = console()
    for row in rows:
        out.print(f"[bold]query[/]    {row['query']}")
        out.print(f"[cyan]decoded[/]  {row['decoded']}")
        if compare:
            out.print(f"[green]answer[/]   {row['answer']}")
        out.print()


def answer(
    prompts: Annotated[list[str], typer.Argument(help="Prompts for the frozen LLM.")],
    model: ModelOpt = DEFAULT_BACKBONE,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 128,
    system_prompt: Annotated[str, typer.Option(help="Optional system message.")] = "",
) -> None:
    """The frozen LLM's own chat answer (greedy), for comparison with decoded embeddings."""
    from ..core.backbone import load_backbone
    from ..core.generation import chat_answer
    from ..core.inputs import check_texts

    prompts = check_texts(prompts)
    quiet_transformers()
    backbone = load_backbone(model)
    for prompt, text in zip(
        prompts,
        chat_answer(backbone, prompts, max_new_tokens=max_new_tokens, system_prompt=system_prompt or None),
        strict=True,
    ):
        typer.echo(f"{prompt}\n-> {text}\n")
