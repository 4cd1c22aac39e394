"""``workbench lens``: what the compression tokens hold, read through the LLM's output head."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..core.errors import WorkbenchError
from .common import DEFAULT_BACKBONE


def _summary_row(reading: Any) -> dict[str, Any]:
    """One row per query, like the paper's analysis: the union of tokens and the decoded answer."""
    return {
        "query": reading.query,
        "input_text": reading.input_text,
        "union": reading.union,
        "final_tokens": reading.final(),
        "final_probs": reading.probs[-1],
        "decoded": reading.decoded,
        "answer": reading.answer,
    } | ({"latent": reading.latent} if reading.latent is not None else {})


def check_rows_path(path: Path) -> str:
    """The format of a rows file from its suffix: ``.jsonl`` or ``.csv``."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise WorkbenchError(
            f"cannot write {path}: unknown format {suffix or '(none)'}", "use a .jsonl or .csv file"
        )
    return suffix


def write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """Write rows as ``.jsonl`` or ``.csv`` (lists JSON-encoded), atomically."""
    suffix = check_rows_path(path)
    buffer = io.StringIO()
    if suffix == ".jsonl":
        for row in rows:
            buffer.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: (" | ".join(v) if k == "union" else json.dumps(v, ensure_ascii=False))
                    if isinstance(v, list)
                    else v
                    for k, v in row.items()
                }
            )
    from ..store.atomic import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue(), encoding="utf-8", newline=""))


def lens(
    queries: Annotated[list[str] | None, typer.Argument(help="Queries to read.")] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="More queries: a .txt file (one per line) or .jsonl (see --field)."
        ),
    ] = None,
    field: Annotated[str, typer.Option(help="JSONL field holding the query text.")] = "text",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write one row per query to this .csv or .jsonl file.")
    ] = None,
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="Registry backbone, hub id, model folder or checkpoint folder."),
    ] = DEFAULT_BACKBONE,
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint folder to put on the backbone.")] = None,
    untrained: Annotated[bool, typer.Option("--untrained", help="Ignore shipped checkpoints.")] = False,
    layers: Annotated[
        str, typer.Option(help="Layers to read: all, or e.g. '0,10,20:30,-1' (0 = embeddings).")
    ] = "all",
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Tokens per position (1-100).")] = 5,
    thought: Annotated[bool, typer.Option("--thought", help="Read the thought positions too.")] = False,
    instruction: Annotated[str, typer.Option(help="Instruction joined before each query.")] = "",
    generate: Annotated[
        bool | None,
        typer.Option("--generate/--no-generate", help="Decode the embedding by generation (default: on)."),
    ] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Also print the LLM's own answer.")] = False,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 48,
    backend: Annotated[str, typer.Option(help="nnsight or transformer-lens.")] = "nnsight",
    latent: Annotated[
        bool, typer.Option("--latent", help="Nearest response tokens of each compression state.")
    ] = False,
    index: Annotated[
        Path | None, typer.Option(help="Latent-lens index folder (default: built by lens-index build).")
    ] = None,
    html: Annotated[Path | None, typer.Option(help="Write the layer × position heatmap as HTML.")] = None,
    png: Annotated[Path | None, typer.Option(help="Write the heatmap as a PNG.")] = None,
    grid: Annotated[bool, typer.Option("--grid/--no-grid", help="Print the layer × position grid.")] = True,
    remote: Annotated[
        bool,
        typer.Option(
            "--remote", help="Run the read on NDIF (nnsight remote; needs NDIF_API_KEY and the network)."
        ),
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print every reading as JSON.")] = False,
) -> None:
    """Decode the compression tokens: top-k tokens per position and layer, and the decoded answer.

    Prints the final-layer top-k per compression position, a layer × position grid, the union
    (the paper's view) and what the LLM generates from the embedding; see the README.
    """
    from ..core.inputs import check_texts
    from ..lens.logit import BACKENDS, LensConfig, add_answers, check_top_k, logit_lens, parse_layers

    texts = list(queries or [])
    if file is not None:
        from ..store.textio import read_texts

        texts += read_texts(file, field)
    if not texts:
        raise WorkbenchError(
            "no queries given", 'pass a query, e.g. workbench lens "How do I bake bread?", or --file'
        )
    check_texts(texts)
    check_top_k(top_k, 10**9)
    if out is not None:
        check_rows_path(out)
    if backend not in BACKENDS:
        raise WorkbenchError(f"unknown lens backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
    config = LensConfig(
        top_k=top_k,
        layers=parse_layers(layers),
        thought=thought,
        instruction=instruction or None,
        backend=backend,
        batch_size=batch_size,
    )
    from .common import console as _console
    from .common import load_model

    console = _console()
    batch_mode = file is not None or len(texts) > 3
    if remote:
        _check_remote_options(generate, compare, latent, backend)
        from ..lens.logit import remote_logit_lens

        readings = remote_logit_lens(str(checkpoint or model), texts, config)
        _show(console, readings, as_json, batch_mode, grid, html, png, out)
        return
    generate = True if generate is None else generate
    gen = load_model(model, checkpoint, untrained)
    readings = logit_lens(gen, texts, config)
    if not (as_json or batch_mode):
        _print_tables(console, readings, grid)
    if latent:
        from ..lens.latent import load_latent_index

        latent_index = load_latent_index(gen, index)
        states = gen.compression_states(texts, instruction=config.instruction, batch_size=batch_size)
        for reading, h in zip(readings, states, strict=True):
            reading.latent = latent_index.nearest(h, top_k, distinct=True)
        if not (as_json or batch_mode):
            _print_latent(console, readings)
    if generate or compare:
        add_answers(
            gen,
            readings,
            generate=generate,
            compare=compare,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
        )
        if not (as_json or batch_mode):
            for reading in readings:
                _print_answers(console, reading)
    _show(console, readings, as_json, batch_mode, None, html, png, out)


def _check_remote_options(generate: bool | None, compare: bool, latent: bool, backend: str) -> None:
    """Decoding, the latent lens and TransformerLens all need the backbone here: not with --remote."""
    asked = [
        name
        for name, on in (
            ("--generate", generate),
            ("--compare", compare),
            ("--latent", latent),
            ("--backend transformer-lens", backend != "nnsight"),
        )
        if on
    ]
    if asked:
        raise WorkbenchError(
            f"{asked[0]} needs the backbone on this machine, and --remote leaves it on NDIF",
            f"drop {asked[0]} (the remote lens reads tokens only)",
        )


def _show(
    console: Any,
    readings: list[Any],
    as_json: bool,
    batch_mode: bool,
    grid: bool | None,
    html: Path | None,
    png: Path | None,
    out: Path | None,
) -> None:
    """Heatmap files, rows file, then JSON or the batch summary (``grid`` set: print tables first)."""
    if grid is not None and not (as_json or batch_mode):
        _print_tables(console, readings, grid)
    if html is not None or png is not None:
        from ..report.lens_plot import heatmap, write_heatmap

        for path in write_heatmap(heatmap(readings), html, png):
            console.print(f"wrote {path}", style="dim")
    if out is not None:
        write_rows([_summary_row(r) for r in readings], out)
        console.print(f"wrote {len(readings)} rows to {out}", style="dim")
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in readings], ensure_ascii=False))
    elif batch_mode:
        _print_summary(console, readings)


def _print_tables(console: Any, readings: list[Any], grid: bool) -> None:
    from rich.markup import escape

    from ..report.lens_plot import show_token, terminal_tables

    for reading in readings:
        console.rule(f"[bold]{escape(reading.query)}")
        if reading.input_text != reading.query:
            console.print(f"[dim]encoder input:[/] {escape(reading.input_text)}")
        for table in terminal_tables(reading, grid=grid):
            console.print(table)
        union = escape(", ".join(map(show_token, reading.union)))
        console.print(f"[bold]union[/] (final layer, compression positions): {union}")


def _print_latent(console: Any, readings: list[Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..report.lens_plot import position_label

    for reading in readings:
        table = Table(
            title=f"latent lens: nearest response tokens — {escape(reading.query)}", title_justify="left"
        )
        table.add_column("position")
        table.add_column("nearest tokens in context (cosine)", overflow="fold")
        compress = reading.positions[-len(reading.latent) :]
        for pos, hits in zip(compress, reading.latent, strict=True):
            table.add_row(
                position_label(pos), "\n".join(f"{escape(h['context'])} ({h['score']:.2f})" for h in hits[:3])
            )
        console.print(table)


def _print_answers(console: Any, reading: Any) -> None:
    from rich.markup import escape

    if reading.decoded is not None:
        console.print(
            f"[cyan]decoded from the embedding[/] ({escape(reading.query[:40])}): {escape(reading.decoded)}"
        )
    if reading.answer is not None:
        console.print(f"[green]the LLM's own answer[/]: {escape(reading.answer)}")


def _print_summary(console: Any, readings: list[Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..report.lens_plot import show_token

    table = Table(title="logit lens: union of final-layer tokens per query", title_justify="left")
    table.add_column("query", overflow="fold", ratio=2)
    table.add_column("union (first 12)", overflow="fold", ratio=2)
    if any(r.decoded is not None for r in readings):
        table.add_column("decoded", overflow="fold", ratio=3)
    for r in readings:
        cells = [escape(r.query), escape(", ".join(show_token(t) for t in r.union[:12]))]
        if r.decoded is not None:
            cells.append(escape(r.decoded))
        table.add_row(*cells)
    console.print(table)
