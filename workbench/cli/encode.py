"""``workbench encode``, ``generate`` and ``answer``: embed, decode an embedding, ask the LLM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import (
    DEFAULT_BACKBONE,
    CheckpointOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    UntrainedOpt,
    console,
    load_model,
    outputs,
    quiet_transformers,
)


def encode(
    queries: Annotated[
        list[str] | None,
        typer.Argument(help="Query texts to embed (none with --corpus).", show_default=False),
    ] = None,
    documents: Annotated[
        Path | None,
        typer.Option(
            "--documents", "-d", help="Documents: a .txt file (one per line) or .jsonl file (see --field)."
        ),
    ] = None,
    field: Annotated[str, typer.Option(help="JSONL field holding the document (or corpus) text.")] = "text",
    corpus: Annotated[
        Path | None,
        typer.Option(
            help="Encode this corpus (.txt, one per line, or .jsonl, see --field) into the --out folder: "
            "sharded, resumable, data parallel under `accelerate launch`. Uses --document-instruction."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "--out-dir",
            help="With --corpus: the folder for the shards and index.json (a rerun finishes or skips it).",
        ),
    ] = None,
    shard_size: Annotated[int, typer.Option(min=1, help="With --corpus: texts per shard file.")] = 1024,
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
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "auto",
) -> None:
    """Embed queries (and documents) and print cosine similarities, best first; or, with --corpus,
    encode a corpus into a folder of shards."""
    from ..core.config import DOCUMENT_INSTRUCTION, QUERY_INSTRUCTION
    from ..core.inputs import check_texts
    from ..core.search import search
    from ..store.textio import read_texts

    def chosen(value: str, default: str) -> str | None:
        return None if value.lower() == "none" else value or default

    if corpus is not None or out is not None:
        _check_corpus_options(corpus, out, queries, documents, save, instruction)
        assert corpus is not None and out is not None
        load = lambda: load_model(model, checkpoint, untrained, dtype, device)  # noqa: E731
        _encode_corpus(
            load,
            corpus,
            out,
            field,
            chosen(document_instruction, DOCUMENT_INSTRUCTION),
            shard_size,
            batch_size,
            as_json,
        )
        return
    if not queries:
        raise typer.BadParameter(
            "give at least one query (or --corpus FILE --out DIR)", param_hint="'QUERIES...'"
        )
    check_texts(queries)
    docs = read_texts(documents, field) if documents is not None else None

    with outputs(files={"--save file": save}):  # a bad --save fails before the model loads
        gen = load_model(model, checkpoint, untrained, dtype, device)
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


def _check_corpus_options(
    corpus: Path | None,
    out: Path | None,
    queries: list[str] | None,
    documents: Path | None,
    save: Path | None,
    instruction: str,
) -> None:
    """--corpus and --out come together, and without the options of the query mode (usage errors)."""
    if corpus is None:
        raise typer.BadParameter(
            "--out is the folder of --corpus; give --corpus FILE too", param_hint="--out"
        )
    if out is None:
        raise typer.BadParameter("--corpus needs --out DIR, the folder for its shards", param_hint="--corpus")
    clashes = [
        name
        for name, given in (
            ("QUERIES", queries),
            ("--documents", documents),
            ("--save", save),
            ("--instruction", instruction),
        )
        if given
    ]
    if clashes:
        raise typer.BadParameter(
            f"--corpus encodes one corpus into --out; drop {', '.join(clashes)} "
            "(the corpus takes --document-instruction)",
            param_hint="--corpus",
        )


def _encode_corpus(
    load: Any,
    corpus: Path,
    out: Path,
    field: str,
    instruction: str | None,
    shard_size: int,
    batch_size: int,
    as_json: bool,
) -> None:
    """``workbench encode --corpus FILE --out DIR``: :func:`~workbench.eval.corpus.encode_corpus`."""
    from ..core.paths import check_output
    from ..eval.corpus import encode_corpus
    from ..store.textio import read_texts

    read_texts(corpus, field)  # a bad corpus or --out fails before the model loads; the folder is
    out = check_output(out, "--out", folder=True)  # never removed on failure: its shards are kept
    gen = load()
    index_path = encode_corpus(
        gen,
        corpus,
        out,
        instruction=instruction,
        shard_size=shard_size,
        batch_size=batch_size,
        show_progress=True,
        field=field,
    )
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return
    index = json.loads(index_path.read_text(encoding="utf-8"))
    run = index.get("last_run", {})
    summary = {
        "index": str(index_path),
        "rows": index["rows"],
        "dim": index["dim"],
        "shards": len(index["shards"]),
        "computed": len(run.get("computed", [])),
        "processes": run.get("processes", 1),
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    console(soft_wrap=True).print(
        f"{summary['rows']} texts x {summary['dim']} in {summary['shards']} shards "
        f"({summary['computed']} computed now, {summary['processes']} process(es)); index: {index_path}"
    )


def generate(
    queries: Annotated[list[str], typer.Argument(help="Texts whose embedding is decoded.")],
    model: ModelOpt = DEFAULT_BACKBONE,
    checkpoint: CheckpointOpt = None,
    instruction: Annotated[str, typer.Option(help="Instruction prepended before encoding.")] = "",
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 48,
    compare: Annotated[bool, typer.Option(help="Also print the LLM's own chat answer.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    untrained: UntrainedOpt = False,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "auto",
) -> None:
    """Decode what an embedding holds: the frozen LLM generates from the soft prompts."""
    from ..core.inputs import check_texts

    check_texts(queries)
    gen = load_model(model, checkpoint, untrained, dtype, device)
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
