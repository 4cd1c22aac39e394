"""Presenting the causal interventions: patching heatmaps, attribution text, ablation and steering charts.

Each function draws what :mod:`workbench.causal` returns: plotly figures (written with
:func:`workbench.report.figures.write_figure` or :func:`workbench.report.lens_plot.write_heatmap`),
rich renderables for the terminal, and a standalone HTML page for an attribution.
"""

from __future__ import annotations

import html
from typing import Any

from ..causal.ablation import AblationReport
from ..causal.attribution import Attribution
from ..causal.patching import PatchResult
from ..causal.sites import SITE_NAMES
from ..causal.steering import SteeringReport
from .lens_plot import layer_label, show_token


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------- patching
def patch_heatmap(result: PatchResult) -> Any:
    """Layers (rows) × position groups (columns), two panels: the patched embedding's cosine with
    the source embedding, and with the refusal text's; hover: the share of the gap restored and,
    when decoded, the answer."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ys = [layer_label(layer, result.num_layers) for layer in result.layers]
    xs = list(result.groups)
    base = result.baseline
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.12,
        subplot_titles=[
            f"cos with the source embedding (unpatched target {base['target_cos_source']:.3f})",
            f"cos with the refusal (target {base['target_cos_refusal']:.3f}, "
            f"source {base['source_cos_refusal']:.3f})",
        ],
    )
    hover = [
        [
            f"restored {r:.3f}" + (f"<br>decoded: {html.escape(_short(d))}" if d is not None else "")
            for r, d in zip(row, decoded, strict=True)
        ]
        for row, decoded in zip(result.restored, result.decoded or [[None] * len(xs)] * len(ys), strict=True)
    ]
    for col, (z, scale, bar_x) in enumerate(
        ((result.cos_source, "Blues", 0.43), (result.cos_refusal, "Oranges", 1.0)), start=1
    ):
        fig.add_trace(
            go.Heatmap(
                x=xs,
                y=ys,
                z=z,
                text=[[f"{v:.2f}" for v in row] for row in z],
                texttemplate="%{text}",
                textfont={"size": 10},
                customdata=hover,
                hovertemplate="layer %{y}, %{x} tokens: cos %{z:.4f}<br>%{customdata}<extra></extra>",
                colorscale=scale,
                colorbar={"x": bar_x, "len": 0.9, "thickness": 12},
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="patched position group", type="category", row=1, col=col)
    fig.update_yaxes(title_text="layer", autorange="reversed", type="category", row=1, col=1)
    fig.update_layout(
        title=(
            f"Patching the {SITE_NAMES[result.site]} of “{_short(result.source)}” into "
            f"“{_short(result.target)}”"
        ),
        height=max(400, 20 * len(ys) + 180),
        width=1000,
        margin={"l": 90, "r": 40, "t": 100, "b": 60},
    )
    return fig


def patch_table(result: PatchResult) -> Any:
    """A rich table: per layer, cosine with the source and with the refusal for each group."""
    from rich.table import Table

    table = Table(
        title=f"patching the {SITE_NAMES[result.site]}: cos with source / cos with refusal",
        title_justify="left",
    )
    table.add_column("layer", justify="right")
    for group in result.groups:
        p = result.positions[group]
        table.add_column(f"{group} ({p['patched']} of {p['target']})", justify="right")
    for layer, src, ref in zip(result.layers, result.cos_source, result.cos_refusal, strict=True):
        table.add_row(
            layer_label(layer, result.num_layers),
            *(f"{s:.3f} / {r:.3f}" for s, r in zip(src, ref, strict=True)),
        )
    return table


# ----------------------------------------------------------------------------- attribution
def _colour(score: float, peak: float) -> tuple[int, int, int]:
    """White to red for positive scores, white to blue for negative, by ``|score| / peak``."""
    share = min(abs(score) / peak, 1.0) if peak > 0 else 0.0
    fade = round(255 * (1 - share))
    return (255, fade, fade) if score >= 0 else (fade, fade, 255)


def attribution_text(attribution: Attribution) -> Any:
    """The input text as a rich ``Text``, each token on a background of its score's colour."""
    from rich.text import Text

    peak = max((abs(s) for s in attribution.scores), default=0.0)
    text = Text()
    for token, score in zip(attribution.tokens, attribution.scores, strict=True):
        r, g, b = _colour(score, peak)
        text.append(token, style=f"black on rgb({r},{g},{b})")
    return text


def attribution_table(attribution: Attribution) -> Any:
    """A rich table of the tokens and their scores, in input order."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="integrated gradients", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("token")
    table.add_column("score", justify="right")
    for i, (token, score) in enumerate(zip(attribution.tokens, attribution.scores, strict=True)):
        table.add_row(str(i), escape(show_token(token)), f"{score:+.4f}")
    return table


def completeness_line(attribution: Attribution) -> str:
    """The completeness check in words."""
    a = attribution
    return (
        f"f(x) = {a.value:.4f}, f(baseline) = {a.baseline_value:.4f}: scores sum to "
        f"{sum(a.scores):.4f} against a difference of {a.difference:.4f}; captum's convergence delta "
        f"{a.delta:+.2e} ({a.relative_delta():.1%} of the difference, {a.steps} steps)"
    )


def attribution_html(attribution: Attribution) -> str:
    """One standalone HTML page: the tokens coloured by score (hover: the score) and the check."""
    a = attribution
    peak = max((abs(s) for s in a.scores), default=0.0)
    spans = []
    for token, score in zip(a.tokens, a.scores, strict=True):
        r, g, b = _colour(score, peak)
        spans.append(
            f'<span title="{score:+.5f}" style="background: rgb({r},{g},{b}); padding: 2px 0; '
            f'white-space: pre-wrap">{html.escape(token)}</span>'
        )
    direction = a.direction + (f" ({html.escape(a.refusal_text)})" if a.refusal_text else "")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>attribution</title></head>"
        "<body style='font-family: sans-serif; max-width: 900px; margin: 2em auto'>"
        f"<h3>Integrated gradients of the embedding's projection on: {direction}</h3>"
        f"<p style='font-family: monospace; font-size: 1.2em; line-height: 1.8'>{''.join(spans)}</p>"
        f"<p>{html.escape(completeness_line(a))}</p>"
        "<p>Red: the token raises the projection; blue: it lowers it (baseline: "
        f"{html.escape(a.baseline)} embeddings"
        + ("; the first position, the attention sink, keeps its token" if a.keep_first else "")
        + ").</p></body></html>\n"
    )


def attribution_figure(attribution: Attribution) -> Any:
    """A bar per token (plotly): its integrated-gradients score."""
    import plotly.graph_objects as go

    labels = [f"{i}:{show_token(t)}" for i, t in enumerate(attribution.tokens)]
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=attribution.scores,
            marker_color=["#d62728" if s >= 0 else "#1f77b4" for s in attribution.scores],
        )
    )
    fig.update_layout(
        title=f"Integrated gradients ({attribution.direction}): “{_short(attribution.query)}”",
        xaxis={"title": "input token", "type": "category"},
        yaxis={"title": "score"},
        height=450,
        width=max(700, 40 * len(labels) + 200),
    )
    return fig


# ----------------------------------------------------------------------------- ablation and steering
def ablation_chart(report: AblationReport) -> Any:
    """Grouped bars: the change of MRR, alignment cosine and (when decoded) token F1 per target."""
    import plotly.graph_objects as go

    rows = report.rows[1:]
    targets = [r["target"] for r in rows]
    metrics = [("delta_mrr", "Δ MRR"), ("delta_alignment_cosine", "Δ alignment cos")]
    if report.max_new_tokens is not None:
        metrics.append(("delta_f1", "Δ token F1"))
    fig = go.Figure(
        [go.Bar(name=label, x=targets, y=[r.get(key, 0.0) for r in rows]) for key, label in metrics]
    )
    fig.update_layout(
        title=f"{report.mode} ablation of special tokens ({report.heldout} held-out prompts)",
        xaxis={"title": "ablated", "type": "category"},
        yaxis={"title": "change against the unablated model"},
        barmode="group",
        height=450,
        width=max(700, 45 * len(targets) + 250),
    )
    return fig


def steering_chart(report: SteeringReport) -> Any:
    """Lines against the scale: cosine with the refusal, with the harmful twin, and (when decoded)
    the share of answers that read as a refusal; dotted: the unsteered harmful queries."""
    import plotly.graph_objects as go

    xs = report.scales
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=xs, y=[r["refusal_cosine"] for r in report.rows], name="cos with refusal"))
    fig.add_trace(
        go.Scatter(x=xs, y=[r["harmful_cosine"] for r in report.rows], name="cos with harmful twin")
    )
    if report.max_new_tokens is not None:
        fig.add_trace(
            go.Scatter(x=xs, y=[r["refusal_share"] for r in report.rows], name="decoded as refusal (share)")
        )
    fig.add_hline(
        y=report.reference["harmful_refusal_cosine"],
        line_dash="dot",
        annotation_text="harmful queries: cos with refusal",
    )
    where = "final states" if report.layer is None else f"after layer {report.layer}"
    fig.update_layout(
        title=(
            f"Steering benign queries toward their harmful twins ({where}; {report.heldout_pairs} held out)"
        ),
        xaxis={"title": "scale"},
        yaxis={"title": "value"},
        height=450,
        width=900,
    )
    return fig
