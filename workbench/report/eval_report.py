"""Evaluation reports: a timestamped JSON, markdown tables, and an HTML page with plotly charts.

:func:`write_eval_report` writes what :mod:`workbench.eval` returns (an
:class:`~workbench.eval.results.EvalReport`), turning its chart specs into :func:`bar_figure` charts.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..eval.results import EvalReport
from .figures import plotlyjs_src, write_figure


def timestamp() -> str:
    """UTC time as ``YYYYmmddTHHMMSSZ`` (sorts as text)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub markdown table with one row per mapping (floats to 4 decimals)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c, '')))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bar_figure(title: str, series: Mapping[str, Mapping[str, float]], x_title: str, y_title: str) -> Any:
    """Grouped bars: one colour per series (encoder), one group per x value."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, values in series.items():
        fig.add_bar(
            name=name,
            x=list(values),
            y=list(values.values()),
            text=[f"{v:.3f}" for v in values.values()],
            textposition="outside",
        )
    fig.update_layout(
        title=title, barmode="group", xaxis_title=x_title, yaxis_title=y_title, template="plotly_white"
    )
    return fig


def write_report(
    out_dir: Path,
    kind: str,
    payload: dict[str, Any],
    tables: Mapping[str, tuple[Sequence[Mapping[str, Any]], Sequence[str]]],
    figures: Mapping[str, Any],
) -> dict[str, Any]:
    """Write ``<kind>-<time>.json``, the figures (HTML + PNG) and ``<kind>-<time>.html``.

    ``tables`` maps a heading to (rows, columns); returns the paths written and the markdown text.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = payload.setdefault("timestamp", timestamp())
    stem = out_dir / f"{kind}-{stamp}"
    markdown = "\n\n".join(f"### {title}\n\n{markdown_table(*spec)}" for title, spec in tables.items())
    payload["markdown"] = markdown
    json_path = stem.with_suffix(".json")
    json_path.write_text(
        json.dumps(payload, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    images: list[Path] = []
    parts = [
        f"<h1>workbench eval {html.escape(kind)}</h1>",
        f"<p>{html.escape(str(payload.get('config', {}).get('model', '')))} · {html.escape(stamp)} · "
        f"wall time {payload.get('wall_time_s', 0):.0f} s · "
        f"data: <code>{html.escape(json_path.name)}</code></p>",
    ]
    for title, (rows, columns) in tables.items():
        parts.append(f"<h2>{html.escape(title)}</h2>{_html_table(rows, columns)}")
    first_div = True
    for name, fig in figures.items():  # a PNG (readable offline) linking to its interactive chart
        written = write_figure(fig, Path(f"{stem}-{name}"))
        images += written
        png = next((p for p in written if p.suffix == ".png"), None)
        if png is not None:
            link = html.escape(png.with_suffix(".html").name)
            parts.append(
                f'<p><a href="{link}"><img src="{html.escape(png.name)}" alt="{html.escape(name)}" '
                f'width="900"></a><br><a href="{link}">interactive chart</a></p>'
            )
        else:  # the chart itself, with the plotly.js its own HTML loads (offline)
            src = plotlyjs_src(stem.with_suffix(".html")) if first_div else False
            parts.append(fig.to_html(full_html=False, include_plotlyjs=src))
            first_div = False
    config = json.dumps(payload.get("config", {}), indent=1, default=str)
    parts.append(f"<h2>Configuration</h2><pre>{html.escape(config)}</pre>")
    style = "body{font-family:sans-serif;max-width:1150px;margin:auto}td,th{padding:2px 8px;text-align:right}"
    page = f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>"
    html_path = stem.with_suffix(".html")
    html_path.write_text(page + "\n".join(parts) + "</body></html>\n", encoding="utf-8")
    return {"json": json_path, "html": html_path, "figures": images, "markdown": markdown}


def write_eval_report(report: EvalReport, out_dir: Path) -> dict[str, Any]:
    """:func:`write_report` for an evaluation's result: its payload, tables and charts (as bars).

    Adds ``timestamp`` and ``markdown`` to ``report.payload``; returns the paths and the markdown.
    """
    tables = {title: (table.rows, table.columns) for title, table in report.tables.items()}
    figures = {
        name: bar_figure(chart.title, chart.series, chart.x_title, chart.y_title)
        for name, chart in report.charts.items()
    }
    return write_report(out_dir, report.kind, report.payload, tables, figures)
