"""The ``workbench`` command line; each command mirrors a Python call (see the README)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import WorkbenchError

app = typer.Typer(
    name="workbench",
    help="Train, use and look inside LLM2Vec-Gen embeddings (offline on the registry backbones).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Registry backbone, hub id, model folder or checkpoint folder.")
]
CheckpointOpt = Annotated[Path | None, typer.Option(help="Checkpoint folder to put on the backbone.")]
UntrainedOpt = Annotated[bool, typer.Option("--untrained", help="Ignore shipped checkpoints.")]


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _load(model: str, checkpoint: Path | None, untrained: bool):
    from transformers.utils import logging as hf_logging

    from .api import load

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    gen = load(model, checkpoint=checkpoint, untrained=untrained)
    if not gen.trained:
        _console(stderr=True).print(
            f"[yellow]note:[/] {gen.backbone.info.name} runs with untrained special tokens "
            "(no trained checkpoint given or shipped); similarities are not meaningful yet"
        )
    return gen


@app.command()
def encode(
    queries: Annotated[list[str], typer.Argument(help="Query texts to embed.")],
    documents: Annotated[
        Path | None,
        typer.Option(
            "--documents", "-d", help="Documents: a .txt file (one per line) or .jsonl file (see --field)."
        ),
    ] = None,
    field: Annotated[str, typer.Option(help="JSONL field holding the document text.")] = "text",
    model: ModelOpt = "smollm2-135m",
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
    from .config import DOCUMENT_INSTRUCTION, QUERY_INSTRUCTION
    from .inputs import check_texts
    from .textio import read_texts

    check_texts(queries)
    docs = read_texts(documents, field) if documents is not None else None
    gen = _load(model, checkpoint, untrained)

    def chosen(value: str, default: str) -> str | None:
        return None if value.lower() == "none" else value or default

    q = gen.encode_queries(queries, instruction=chosen(instruction, QUERY_INSTRUCTION), batch_size=batch_size)
    targets, labels = q, queries
    if docs is not None:
        targets = gen.encode_documents(
            docs, instruction=chosen(document_instruction, DOCUMENT_INSTRUCTION), batch_size=batch_size
        )
        labels = docs
    if save is not None:
        from safetensors.torch import save_file

        tensors = {"queries": q.contiguous()} | ({"documents": targets.contiguous()} if docs else {})
        save_file(tensors, str(save))
    sims = gen.similarity(q, targets)
    k = min(top_k, len(labels))
    results = []
    for i, query in enumerate(queries):
        scores, idx = sims[i].topk(k)
        results.append(
            {
                "query": query,
                "results": [
                    {"rank": r + 1, "index": int(j), "score": round(float(s), 6), "text": labels[int(j)]}
                    for r, (s, j) in enumerate(zip(scores, idx, strict=True))
                ],
            }
        )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "model": gen.backbone.info.name,
                    "trained": gen.trained,
                    "dim": int(q.shape[1]),
                    "queries": results,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    from rich.table import Table

    console = _console()
    for res in results:
        table = Table(title=f"[bold]{res['query']}[/]", title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("cosine", justify="right")
        table.add_column("document" if docs is not None else "query", overflow="fold")
        for row in res["results"]:
            table.add_row(str(row["rank"]), f"{row['score']:.4f}", row["text"])
        console.print(table)


@app.command()
def generate(
    queries: Annotated[list[str], typer.Argument(help="Texts whose embedding is decoded.")],
    model: ModelOpt = "smollm2-135m",
    checkpoint: CheckpointOpt = None,
    instruction: Annotated[str, typer.Option(help="Instruction prepended before encoding.")] = "",
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 48,
    compare: Annotated[bool, typer.Option(help="Also print the LLM's own chat answer.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    untrained: UntrainedOpt = False,
) -> None:
    """Decode what an embedding holds: the frozen LLM generates from the soft prompts."""
    from .inputs import check_texts

    check_texts(queries)
    gen = _load(model, checkpoint, untrained)
    decoded = gen.generate(queries, instruction=instruction or None, max_new_tokens=max_new_tokens)
    answers = gen.answer(queries, max_new_tokens=max_new_tokens) if compare else [None] * len(queries)
    rows = [
        {"query": q, "decoded": d} | ({"answer": a} if compare else {})
        for q, d, a in zip(queries, decoded, answers, strict=True)
    ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    console = _console()
    for row in rows:
        console.print(f"[bold]query[/]    {row['query']}")
        console.print(f"[cyan]decoded[/]  {row['decoded']}")
        if compare:
            console.print(f"[green]answer[/]   {row['answer']}")
        console.print()


@app.command()
def answer(
    prompts: Annotated[list[str], typer.Argument(help="Prompts for the frozen LLM.")],
    model: ModelOpt = "smollm2-135m",
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 128,
    system_prompt: Annotated[str, typer.Option(help="Optional system message.")] = "",
) -> None:
    """The frozen LLM's own chat answer (greedy), for comparison with decoded embeddings."""
    from transformers.utils import logging as hf_logging

    from .backbone import load_backbone
    from .generation import chat_answer
    from .inputs import check_texts

    prompts = check_texts(prompts)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    backbone = load_backbone(model)
    for prompt, text in zip(
        prompts,
        chat_answer(backbone, prompts, max_new_tokens=max_new_tokens, system_prompt=system_prompt or None),
        strict=True,
    ):
        typer.echo(f"{prompt}\n-> {text}\n")


@app.command()
def backbones() -> None:
    """List the registry backbones and teachers that install offline."""
    from rich.table import Table

    from .paths import cache_dir
    from .registry import BACKBONES, TEACHERS

    table = Table(title="backbones")
    for col in ("name", "cached", "hub original", "about"):
        table.add_column(col, overflow="fold")
    for spec in BACKBONES.values():
        cached = (cache_dir() / "backbones" / f"{spec.name}-{spec.sha256[:16]}").is_dir()
        table.add_row(spec.name, "yes" if cached else "no", spec.hub_id, spec.description)
    teachers = Table(title="teachers")
    for col in ("name", "dim", "about"):
        teachers.add_column(col, overflow="fold")
    for t in TEACHERS.values():
        teachers.add_row(t.name, "hidden size" if t.dim < 0 else str(t.dim), t.description)
    console = _console()
    console.print(table)
    console.print(teachers)


@app.command()
def fetch(
    name: Annotated[str, typer.Argument(help="Registry backbone or teacher name.")] = "smollm2-135m",
) -> None:
    """Download, verify and dequantise a registry backbone (or fetch a teacher) into the cache."""
    from .registry import BACKBONES, TEACHERS

    if name in TEACHERS and name != "self":
        from .teacher import load_teacher

        teacher = load_teacher(name)
        typer.echo(f"teacher {name} ready ({teacher.dim}-d)")
        return
    if name not in BACKBONES:
        raise WorkbenchError(
            f"unknown registry name {name!r}", f"use one of {', '.join([*BACKBONES, *TEACHERS])}"
        )
    from .backbone import load_backbone

    backbone = load_backbone(name)
    typer.echo(
        f"backbone {name} ready: {backbone.info.num_layers} layers, hidden "
        f"{backbone.info.hidden_size}, sha256 {backbone.info.sha256}"
    )


@app.command()
def info(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder (workbench or official).")],
) -> None:
    """Show what a checkpoint folder holds, without loading its backbone."""
    from .official import is_official, read_official

    if is_official(checkpoint):
        ck = read_official(checkpoint)
        shapes = {k: list(v.shape) for k, v in ck.tensors.items()}
        summary = {
            "format": "official llm2vec-gen",
            "base_model": ck.base_model,
            "tokens": {
                "thought": len(ck.special_tokens) - ck.num_compress,
                "compress": ck.num_compress,
                "strings": ck.special_tokens,
            },
            "tensors": shapes,
            "max_length": ck.max_length,
            "dtype": ck.dtype,
            "teacher": ck.teacher,
        }
        typer.echo(json.dumps(summary, indent=2))
        return
    from .checkpoint import read_checkpoint

    data = read_checkpoint(checkpoint)
    typer.echo(
        json.dumps({k: data.meta[k] for k in ("config", "backbone", "tokens", "heads", "trained")}, indent=2)
    )


from .cli_responses import respond  # noqa: E402
from .cli_train import train  # noqa: E402

app.command()(respond)

app.command()(train)

from .cli_quality import quality  # noqa: E402

app.command()(quality)

from .cli_map import map_command  # noqa: E402

app.command(name="map")(map_command)

from .cli_lens import lens  # noqa: E402

app.command()(lens)

from .cli_lens_index import lens_index_app  # noqa: E402

app.add_typer(lens_index_app, name="lens-index")

from .cli_eval import eval_app  # noqa: E402

app.add_typer(eval_app, name="eval")

from .cli_export import export, zoo_command  # noqa: E402

app.command()(export)
app.command(name="zoo")(zoo_command)

from .cli_figures import figures_command  # noqa: E402

app.command(name="figures")(figures_command)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; user errors print one line to stderr and return 1."""
    try:
        app(args=argv, prog_name="workbench")
    except WorkbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except SystemExit as err:  # typer's own exit: 0, or 2 for usage errors
        return err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
