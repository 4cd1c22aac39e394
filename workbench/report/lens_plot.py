"""Presenting logit-lens readings: terminal tables (rich) and layer × position heatmaps (plotly)."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..lens.logit import LensReading


def show_token(text: str) -> str:
    """A token as a short readable label: stripped, whitespace-only tokens and control characters
    made visible (``␣``, ``\\n``, ``\\x1c``)."""
    shown = text.strip() or text.replace(" ", "␣")
    named = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
    return "".join(
        named.get(c) or (f"\\x{ord(c):02x}" if unicodedata.category(c) in ("Cc", "Cs", "Co") else c)
        for c in shown
    ) or "∅"


def layer_label(layer: int, num_layers: int) -> str:
    return "emb" if layer == 0 else (f"{layer} (final)" if layer == num_layers else str(layer))


def position_label(position: str) -> str:
    """``<compress_3>`` → ``c3``, ``<think_2>`` → ``t2`` (other strings are kept)."""
    inner = position.strip("<>")
    for prefix, short in (("compress_", "c"), ("think_", "t")):
        if inner.startswith(prefix):
            return short + inner[len(prefix) :]
    return position


def terminal_tables(reading: LensReading, grid: bool = True) -> list[Any]:
    """Rich renderables: top-k per position at the last layer read, then a layer × position grid."""
    from rich.markup import escape
    from rich.table import Table

    last = reading.layers[-1]
    top = Table(
        title=f"top-{len(reading.tokens[-1][0])} tokens at layer {layer_label(last, reading.num_layers)}",
        title_justify="left",
    )
    top.add_column("position")
    top.add_column("tokens (probability)", overflow="fold")
    for pos, toks, probs in zip(reading.positions, reading.tokens[-1], reading.probs[-1], strict=True):
        top.add_row(
            position_label(pos),
            "  ".join(f"{escape(show_token(t))} ({p:.2f})" for t, p in zip(toks, probs, strict=True)),
        )
    out: list[Any] = [top]
    if grid and len(reading.layers) > 1:
        table = Table(title="top-1 token per layer (rows) and position (columns)", title_justify="left")
        table.add_column("layer", justify="right", no_wrap=True, min_width=5)
        for pos in reading.positions:
            table.add_column(position_label(pos), max_width=12, overflow="ellipsis", no_wrap=True)
        for layer, row, prow in zip(reading.layers, reading.tokens, reading.probs, strict=True):
            cells = [
                f"[bold]{escape(show_token(t[0]))}[/]" if p[0] >= 0.5 else escape(show_token(t[0]))
                for t, p in zip(row, prow, strict=True)
            ]
            table.add_row(layer_label(layer, reading.num_layers), *cells)
        out.append(table)
    return out


def heatmap(readings: Sequence[LensReading], max_title: int = 90) -> Any:
    """Layer × position heatmaps, one per query stacked vertically: colour = top-1 probability,
    cell text = top-1 token, hover = the top-k tokens with their probabilities."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    titles = [r.query if len(r.query) <= max_title else r.query[: max_title - 1] + "…" for r in readings]
    fig = make_subplots(
        rows=len(readings), cols=1, subplot_titles=titles, vertical_spacing=0.08 / len(readings)
    )
    for row, reading in enumerate(readings, start=1):
        ys = [layer_label(layer, reading.num_layers) for layer in reading.layers]
        xs = [position_label(p) for p in reading.positions]
        z = [[p[0] for p in layer] for layer in reading.probs]
        text = [[show_token(t[0]) for t in layer] for layer in reading.tokens]
        hover = [
            [
                "<br>".join(f"{show_token(t)}: {p:.3f}" for t, p in zip(toks, probs, strict=True))
                for toks, probs in zip(layer_toks, layer_probs, strict=True)
            ]
            for layer_toks, layer_probs in zip(reading.tokens, reading.probs, strict=True)
        ]
        fig.add_trace(
            go.Heatmap(
                x=xs,
                y=ys,
                z=z,
                text=text,
                texttemplate="%{text}",
                textfont={"size": 10},
                customdata=hover,
                hovertemplate="layer %{y}, position %{x}<br>%{customdata}<extra></extra>",
                colorscale="Blues",
                zmin=0,
                zmax=1,
                showscale=row == 1,
                colorbar={"title": "top-1 p"},
            ),
            row=row,
            col=1,
        )
        fig.update_yaxes(title_text="layer", autorange="reversed", type="category", row=row, col=1)
        fig.update_xaxes(title_text="special position", type="category", row=row, col=1)
    per = 22 * max(len(r.layers) for r in readings) + 120
    fig.update_layout(
        title="Logit lens on the LLM2Vec-Gen special tokens",
        height=per * len(readings) + 80,
        width=max(700, 85 * max(len(r.positions) for r in readings) + 200),
        margin={"l": 80, "r": 40, "t": 90, "b": 50},
    )
    return fig


def write_heatmap(fig: Any, html: Path | None, png: Path | None) -> list[Path]:
    """Write the heatmap as interactive HTML and/or a static PNG (needs a Chrome for kaleido).

    The HTML is standalone (plotly.js inside, about 4.8 MB): one file that opens offline anywhere.
    """
    from ..core.errors import WorkbenchError
    from .figures import write_html

    written = []
    if html is not None:
        written.append(write_html(fig, html, standalone=True))
    if png is not None:
        png.parent.mkdir(parents=True, exist_ok=True)
        try:
            fig.write_image(str(png), scale=1)
        except Exception as err:
            raise WorkbenchError(
                f"could not write the PNG {png} ({type(err).__name__}: {str(err).splitlines()[0][:120]})",
                "install Chromium for kaleido (apt-get install chromium) or use --html",
            ) from err
        written.append(png)
    return written
