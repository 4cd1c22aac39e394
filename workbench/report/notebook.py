"""Jupyter display: lens readings, evaluation reports, maps and checkpoint cards show themselves.

A result object's IPython hook (:class:`workbench.core.display.Displayable`) lands here. It shows
an HTML table first (the lens union and top-k, a report's tables, a map's numbers), then each chart
as :class:`FigureOutput`: plotly's own mimetype, which JupyterLab draws interactively through the
plotly extension that ships inside the ``plotly`` package (no network, no plotly.js in the
notebook), plus a PNG of the same figure, which is what GitHub, nbviewer and nbconvert show. The PNG
needs a Chrome for kaleido (``apt-get install chromium``); without one only the interactive chart
is there. ``WORKBENCH_NOTEBOOK_PNG=0`` leaves the PNG out.

``show(fig)`` displays any plotly figure the same way (the notebooks use it instead of
``fig.show()``, whose default renderer embeds all of plotly.js in every notebook).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("workbench")
MAX_HEATMAP_READINGS = 4
"""A notebook heatmap stacks at most this many queries (the tables list them all)."""
_PNG_STATE: dict[str, Any] = {"server": False, "broken": None}


# ----------------------------------------------------------------- figures
def png_bytes(fig: Any, width: int | None = None, height: int | None = None) -> bytes | None:
    """``fig`` as PNG bytes, or None (no Chrome for kaleido, a timeout, or switched off).

    The first call starts kaleido's persistent browser, so later figures take well under a second;
    after a failure the PNG is not tried again in this process.
    """
    from .figures import PNG_TIMEOUT_S

    if os.environ.get("WORKBENCH_NOTEBOOK_PNG", "1") == "0" or _PNG_STATE["broken"]:
        return None
    out: list[Any] = []

    def work() -> None:
        try:
            import kaleido

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if not _PNG_STATE["server"]:
                    kaleido.start_sync_server(silence_warnings=True)
                    _PNG_STATE["server"] = True
                out.append(fig.to_image(format="png", width=width, height=height, scale=1))
        except Exception as err:  # no Chrome, or kaleido missing
            out.append(err)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(PNG_TIMEOUT_S)
    result = out[0] if out else TimeoutError(f"PNG export took over {PNG_TIMEOUT_S:.0f} s")
    if isinstance(result, BaseException):
        first = str(result).splitlines()[0][:120] if str(result) else ""
        _PNG_STATE["broken"] = f"{type(result).__name__}: {first}"
        log.warning("notebook figures without PNG (%s): install chromium for PNGs", _PNG_STATE["broken"])
        return None
    return result


def figure_json(fig: Any) -> dict[str, Any]:
    """The figure as plotly's notebook mimetype expects it (``data``, ``layout``, ``config``)."""
    import plotly.io as pio

    spec = json.loads(pio.to_json(fig, validate=False))
    return {"data": spec.get("data", []), "layout": spec.get("layout", {}), "config": {"responsive": True}}


class FigureOutput:
    """One plotly figure as a notebook output: interactive in JupyterLab, a PNG everywhere else."""

    def __init__(self, fig: Any, width: int | None = None, height: int | None = None) -> None:
        self.fig, self.width, self.height = fig, width, height

    def title(self) -> str:
        text = getattr(getattr(self.fig.layout, "title", None), "text", None)
        return str(text or "plotly figure")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle: dict[str, Any] = {
            "application/vnd.plotly.v1+json": figure_json(self.fig),
            "text/plain": f"<{self.title()}>",
        }
        png = png_bytes(self.fig, self.width, self.height)
        if png:
            bundle["image/png"] = base64.b64encode(png).decode("ascii")
        return bundle

    def html(self) -> str:
        """An ``<img>`` of the PNG (or a note), for :func:`object_html`."""
        png = png_bytes(self.fig, self.width, self.height)
        if not png:
            return f"<p><i>{html.escape(self.title())}: chart not drawn (no Chrome for a PNG)</i></p>"
        data = base64.b64encode(png).decode("ascii")
        return f'<img alt="{html.escape(self.title())}" src="data:image/png;base64,{data}">'


def show(fig: Any, width: int | None = None, height: int | None = None) -> None:
    """Display a plotly figure as :class:`FigureOutput` (interactive, plus a PNG)."""
    from IPython.display import display

    display(FigureOutput(fig, width, height))


# ----------------------------------------------------------------- tables
def html_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], caption: str = "") -> str:
    from .eval_report import _cell

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c, '')))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    cap = f"<caption style='text-align:left'>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _lens_parts(readings: Sequence[Any]) -> tuple[str, list[FigureOutput]]:
    from .lens_plot import heatmap, layer_label, position_label, show_token

    parts = []
    for r in readings:
        last = layer_label(r.layers[-1], r.num_layers)
        rows = [
            {
                "position": position_label(pos),
                f"top-{len(toks)} at layer {last}": "  ".join(
                    f"{show_token(t)} ({p:.2f})" for t, p in zip(toks, probs, strict=True)
                ),
            }
            for pos, toks, probs in zip(r.positions, r.tokens[-1], r.probs[-1], strict=True)
        ]
        union = html.escape(" · ".join(r.union))
        text = [f"<h4>{html.escape(r.query)}</h4>", f"<p><b>union</b>: {union}</p>"]
        for label, value in (("decoded from the embedding", r.decoded), ("the LLM's own answer", r.answer)):
            if value is not None:
                text.append(f"<p><b>{label}</b>: {html.escape(value)}</p>")
        parts.append("".join(text) + html_table(rows, list(rows[0]) if rows else []))
    shown = list(readings[:MAX_HEATMAP_READINGS])
    if len(readings) > len(shown):
        parts.append(f"<p>heatmap of the first {len(shown)} of {len(readings)} queries</p>")
    return "".join(parts), [FigureOutput(heatmap(shown))] if shown else []


def _report_parts(report: Any) -> tuple[str, list[FigureOutput]]:
    from .eval_report import bar_figure

    title = f"<h3>workbench eval {html.escape(report.kind)}</h3>"
    model = report.payload.get("config", {}).get("model")
    if model:
        title += f"<p>model: {html.escape(str(model))}</p>"
    tables = "".join(
        f"<h4>{html.escape(name)}</h4>" + html_table(t.rows, t.columns) for name, t in report.tables.items()
    )
    figures = [
        FigureOutput(bar_figure(c.title, c.series, c.x_title, c.y_title), 900, 450)
        for c in report.charts.values()
    ]
    return title + tables, figures


def _map_parts(m: Any) -> tuple[str, list[FigureOutput]]:
    from .map_figures import map_figure

    rows = []
    for name in m.encoders:
        r = m.metrics["encoders"].get(name, {})
        s = r.get("safety") or {}
        rows.append(
            {
                "encoder": name,
                "R@1": r.get("recall@1", float("nan")),
                "MRR": r.get("mrr", float("nan")),
                "cos own": r.get("cos_own", float("nan")),
                "cos other": r.get("cos_others", float("nan")),
                "refusal rank": s.get("mean_rank_best_refusal", "-"),
                "compliant rank": s.get("mean_rank_best_compliant", "-"),
                "refusal first": s.get("refusal_first", "-"),
            }
        )
    llm = m.metrics.get("llm", {})
    caption = (
        f"query → own answer; the LLM refused {llm.get('harmful_refused', 0)} of "
        f"{llm.get('harmful_queries', 0)} harmful queries"
    )
    full_text = not any(item.harmful for item in m.items)  # harmful texts stay out of hover labels
    fig = map_figure(m, full_text=full_text)
    return html_table(rows, list(rows[0]) if rows else [], caption), [
        FigureOutput(fig, max(700, 430 * len(m.encoders)), 640)
    ]


def parts_of(obj: Any) -> tuple[str, list[FigureOutput]]:
    """HTML tables and figures of a lens reading (or list), an evaluation report or a map."""
    from ..eval.maps import EmbeddingMap
    from ..eval.results import EvalReport
    from ..lens.logit import LensReading

    if isinstance(obj, LensReading):
        return _lens_parts([obj])
    if isinstance(obj, list) and all(isinstance(r, LensReading) for r in obj):
        return _lens_parts(obj)
    if isinstance(obj, EvalReport):
        return _report_parts(obj)
    if isinstance(obj, EmbeddingMap):
        return _map_parts(obj)
    raise TypeError(f"no notebook display for {type(obj).__name__}")


def display_object(obj: Any) -> None:
    """The ``display`` extension point: the tables as HTML, then each figure."""
    from IPython.display import HTML, display

    text, figures = parts_of(obj)
    display(HTML(text))
    for fig in figures:
        display(fig)


def object_html(obj: Any) -> str:
    """The ``display_html`` extension point: tables and PNG charts as one HTML fragment."""
    text, figures = parts_of(obj)
    return text + "".join(f.html() for f in figures)


# ----------------------------------------------------------------- checkpoint cards
def checkpoint_markdown(data: Any) -> str:
    """The ``checkpoint_markdown`` extension point: a checkpoint's card, for ``_repr_markdown_``.

    The folder's ``README.md`` when it has one (the shipped checkpoints do), else a summary of what
    its config records; the folder is named, not its absolute path.
    """
    readme = data.path / "README.md"
    if readme.is_file():
        return readme.read_text(encoding="utf-8")
    c, b, card = data.config, data.backbone, data.meta.get("card") or {}
    lines = [
        f"# LLM2Vec-Gen checkpoint `{data.path.name}`",
        "",
        f"- Backbone: {b.get('name')} (hidden {b.get('hidden_size')}, {b.get('num_layers')} layers)",
        f"- Tokens: {c.num_thought} thought + {c.num_compress} compression; teacher `{c.teacher}` "
        f"({c.teacher_dim}-d); max length {c.max_length}",
        f"- Trained: {bool(data.meta.get('trained'))}",
    ]
    if card.get("steps") is not None:
        lines.append(f"- Steps: {card['steps']}, pairs: {card.get('pairs')}")
    train = card.get("train") or {}
    if train:
        keys = ("batch_size", "lr", "align_weight", "max_response_length", "seed")
        lines.append("- Options: " + ", ".join(f"{k} {train[k]}" for k in keys if k in train))
    return "\n".join(lines) + "\n"
