"""What ``workbench lens`` shows and writes: terminal tables, a summary, JSON, rows files, heatmaps.

:func:`run_lens` is the whole command: it checks where the outputs go, reads the request with
:func:`workbench.lens.request.read_lens`, then prints and writes. Notebooks call the pieces.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import WorkbenchError
from ..lens.logit import LensReading
from ..lens.request import LensRequest, Loader, read_lens
from .lens_plot import heatmap, position_label, show_token, terminal_tables, write_heatmap

BATCH_QUERIES = 3
"""More queries than this (or a query file) print one summary table instead of per-query tables."""


@dataclass
class LensOutputs:
    """Where the readings go: the terminal (tables or JSON) and files."""

    out: Path | None = None
    """One row per query: a .csv or .jsonl file."""
    html: Path | None = None
    png: Path | None = None
    grid: bool = True
    """Print the layer × position grid of top-1 tokens."""
    as_json: bool = False


def summary_row(reading: LensReading) -> dict[str, Any]:
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
    from ..store.atomic import atomic_write

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
    atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue(), encoding="utf-8", newline=""))


def readings_json(readings: list[LensReading]) -> str:
    """Every reading as one JSON list (what ``workbench lens --json`` prints)."""
    return json.dumps([r.to_dict() for r in readings], ensure_ascii=False)


def run_lens(
    request: LensRequest, outputs: LensOutputs, *, console: Any, load: Loader | None = None
) -> list[LensReading]:
    """``workbench lens``: read ``request``, print per-query tables (or JSON, or a summary for a
    batch), write the heatmap and rows files; a rows file of unknown format is refused first."""
    if outputs.out is not None:
        check_rows_path(outputs.out)
    readings = read_lens(request, load)
    batch = request.file is not None or len(readings) > BATCH_QUERIES
    if not (outputs.as_json or batch):
        print_readings(console, readings, outputs.grid)
    if outputs.html is not None or outputs.png is not None:
        for path in write_heatmap(heatmap(readings), outputs.html, outputs.png):
            console.print(f"wrote {path}", style="dim")
    if outputs.out is not None:
        write_rows([summary_row(r) for r in readings], outputs.out)
        console.print(f"wrote {len(readings)} rows to {outputs.out}", style="dim")
    if outputs.as_json:
        print(readings_json(readings), flush=True)
    elif batch:
        print_summary(console, readings)
    return readings


def print_readings(console: Any, readings: list[LensReading], grid: bool = True) -> None:
    """Per query: the logit-lens tables and union; then the latent lens; then the answers."""
    for reading in readings:
        print_tables(console, reading, grid)
    if any(r.latent is not None for r in readings):
        print_latent(console, readings)
    for reading in readings:
        print_answers(console, reading)


def print_tables(console: Any, reading: LensReading, grid: bool = True) -> None:
    """The final-layer top-k per position, the layer × position grid and the union of one query."""
    from rich.markup import escape

    console.rule(f"[bold]{escape(reading.query)}")
    if reading.input_text != reading.query:
        console.print(f"[dim]encoder input:[/] {escape(reading.input_text)}")
    for table in terminal_tables(reading, grid=grid):
        console.print(table)
    union = escape(", ".join(map(show_token, reading.union)))
    console.print(f"[bold]union[/] (final layer, compression positions): {union}")


def print_latent(console: Any, readings: list[LensReading]) -> None:
    """The three nearest response tokens, in context, of each compression position."""
    from rich.markup import escape
    from rich.table import Table

    for reading in readings:
        if reading.latent is None:
            continue
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


def print_answers(console: Any, reading: LensReading) -> None:
    """What was decoded from the embedding and the LLM's own answer, where read."""
    from rich.markup import escape

    if reading.decoded is not None:
        console.print(
            f"[cyan]decoded from the embedding[/] ({escape(reading.query[:40])}): {escape(reading.decoded)}"
        )
    if reading.answer is not None:
        console.print(f"[green]the LLM's own answer[/]: {escape(reading.answer)}")


def print_summary(console: Any, readings: list[LensReading]) -> None:
    """One row per query: the union's first 12 tokens and, where decoded, the decoded answer."""
    from rich.markup import escape
    from rich.table import Table

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
