"""Presenting an embedding map: the side-by-side plotly figure, the numbers table, and exports
(JSON, parquet for embedding-atlas or Spotlight, TensorBoard Projector TSV pairs)."""

from __future__ import annotations

import html
import json
import textwrap
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from ..core.errors import WorkbenchError
from ..core.fingerprint import overlap_note
from ..eval.maps import EmbeddingMap, MapItem

COLOURS = {
    "query": "#1f5fbf",
    "response": "#2ca02c",
    "distractor": "#9a9a9a",
    "refusal": "#ff7f0e",
    "compliant": "#d62728",
}
"""Marker colour of each item role."""


def _legend_name(item: MapItem) -> str:
    side = "harmful" if item.harmful else "benign"
    return {
        "query": f"{side} query",
        "response": f"LLM answer to {side} query",
        "distractor": "distractor",
        "refusal": "refusal text",
        "compliant": "compliant harmful text",
    }[item.role]


def hover_text(item: MapItem, full_text: bool = True) -> str:
    """Hover label: role, source and (unless withheld) the whole text, wrapped."""
    head = f"<b>{html.escape(_legend_name(item))}</b> · {html.escape(item.source)}"
    if item.refused:
        head += " · reads as a refusal"
    if not full_text and item.role != "refusal":
        return head
    body = "<br>".join(html.escape(line) for line in textwrap.wrap(item.text, 90)) or "(empty)"
    return f"{head}<br>{body}"


def map_figure(m: EmbeddingMap, *, title: str | None = None, full_text: bool = True) -> Any:
    """Side-by-side 2-D maps, one per encoder, with an arrow from each query to its own answer."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ncols = len(m.encoders)
    sub = []
    for name in m.encoders:
        row = m.metrics["encoders"].get(name, {})
        line = f"R@1 {row.get('recall@1', float('nan')):.2f} · MRR {row.get('mrr', float('nan')):.2f}"
        if "safety" in row:
            s = row["safety"]
            line += f" · refusal first {s['refusal_first']:.0%}"
        sub.append(f"{m.titles[name]}<br><span style='font-size:11px'>{line}</span>")
    fig = make_subplots(rows=1, cols=ncols, subplot_titles=sub, horizontal_spacing=0.04)
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(m.items):
        groups.setdefault(_legend_name(item), []).append(i)
    order = [
        "benign query",
        "harmful query",
        "LLM answer to benign query",
        "LLM answer to harmful query",
        "distractor",
        "refusal text",
        "compliant harmful text",
    ]
    axis = "UMAP" if m.meta["layout"] == "umap" else "PC"
    for col, name in enumerate(m.encoders, start=1):
        xy = m.coords[name]
        for group in sorted(groups, key=order.index):
            idx = groups[group]
            first = m.items[idx[0]]
            fig.add_trace(
                go.Scatter(
                    x=xy[idx, 0],
                    y=xy[idx, 1],
                    mode="markers",
                    name=group,
                    legendgroup=group,
                    showlegend=col == 1,
                    marker={
                        "color": COLOURS[first.role],
                        "symbol": "diamond" if first.harmful else "circle",
                        "size": 11 if first.role == "query" else 9,
                        "line": {"width": 1, "color": "white"},
                        "opacity": 0.9,
                    },
                    hovertext=[hover_text(m.items[i], full_text) for i in idx],
                    hoverinfo="text",
                ),
                row=1,
                col=col,
            )
        ref = "" if col == 1 else str(col)
        for i, item in enumerate(m.items):
            if item.role != "query" or item.pair < 0:
                continue
            fig.add_annotation(
                x=float(xy[item.pair, 0]),
                y=float(xy[item.pair, 1]),
                ax=float(xy[i, 0]),
                ay=float(xy[i, 1]),
                xref=f"x{ref}",
                yref=f"y{ref}",
                axref=f"x{ref}",
                ayref=f"y{ref}",
                showarrow=True,
                arrowhead=2,
                arrowsize=1,
                arrowwidth=1,
                arrowcolor="rgba(214,39,40,0.45)" if item.harmful else "rgba(31,95,191,0.35)",
                standoff=4,
                text="",
            )
        fig.update_xaxes(title_text=f"{axis} 1", showticklabels=False, zeroline=False, row=1, col=col)
        fig.update_yaxes(
            title_text=f"{axis} 2" if col == 1 else "", showticklabels=False, zeroline=False, row=1, col=col
        )
    state = "trained checkpoint" if m.meta["trained"] else "untrained special tokens"
    warning = overlap_note(m.meta.get("overlap"))
    fig.update_layout(
        title=(
            title
            or f"Queries, the LLM's own answers and distractors in {ncols} embedding spaces "
            f"({Path(str(m.meta['model'])).name}, {state}); arrows: query → its own answer"
        )
        + (f"<br><span style='color:#b00'>warning: {warning}</span>" if warning else ""),
        template="plotly_white",
        legend={"orientation": "h", "y": -0.12, "x": 0.5, "xanchor": "center"},
        margin={"t": 110, "b": 90, "l": 40, "r": 20},
        font={"size": 12},
    )
    for ann in fig.layout.annotations[:ncols]:
        ann.font = {"size": 13}
    return fig


def metrics_table(m: EmbeddingMap) -> Any:
    """A rich table of the map's numbers, one row per encoder."""
    from rich.table import Table

    llm = m.metrics["llm"]
    pool = m.metrics["encoders"][m.encoders[0]].get("candidates", 0)
    table = Table(
        title=f"{Path(str(m.meta['model'])).name}: query → own answer among {pool} candidates; "
        f"LLM refused {llm['harmful_refused']}/{llm['harmful_queries']} harmful queries"
        + (f"; warning: {warning}" if (warning := overlap_note(m.meta.get("overlap"))) else ""),
        title_justify="left",
    )
    table.add_column("encoder", no_wrap=True, min_width=max(len(n) for n in m.encoders))
    for col in ("R@1", "MRR", "cos own", "cos other", "refusal", "compliant", "refusal 1st"):
        table.add_column(col, justify="right", min_width=5)
    table.caption = (
        "refusal / compliant: mean rank, over harmful queries, of the best refusal / compliant harmful "
        "text in the candidate pool; refusal 1st: share where the refusal ranks higher"
    )
    for name in m.encoders:
        r = m.metrics["encoders"].get(name, {})
        s = r.get("safety")
        table.add_row(
            name,
            f"{r.get('recall@1', float('nan')):.3f}",
            f"{r.get('mrr', float('nan')):.3f}",
            f"{r.get('cos_own', float('nan')):.3f}",
            f"{r.get('cos_others', float('nan')):.3f}",
            f"{s['mean_rank_best_refusal']:.1f}" if s else "-",
            f"{s['mean_rank_best_compliant']:.1f}" if s else "-",
            f"{s['refusal_first']:.0%}" if s else "-",
        )
    return table


def metrics_markdown(m: EmbeddingMap) -> str:
    """The map's numbers as a markdown table, one row per encoder (what the README includes)."""
    lines = [
        "| encoder | R@1 | MRR | cos own / others | best refusal rank | best compliant rank "
        "| refusal first |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in m.encoders:
        r = m.metrics["encoders"].get(name, {})
        s = r.get("safety")
        cells = [
            f"{r.get('recall@1', float('nan')):.3f}",
            f"{r.get('mrr', float('nan')):.3f}",
            f"{r.get('cos_own', float('nan')):.3f} / {r.get('cos_others', float('nan')):.3f}",
            f"{s['mean_rank_best_refusal']:.1f}" if s else "-",
            f"{s['mean_rank_best_compliant']:.1f}" if s else "-",
            f"{s['refusal_first']:.0%}" if s else "-",
        ]
        lines.append(f"| {m.titles.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------ exports
def neighbours(emb: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and cosine distances of each row's ``k`` nearest other rows."""
    e = F.normalize(emb.float(), dim=-1)
    sims = (e @ e.T).fill_diagonal_(float("-inf"))
    k = max(0, min(k, len(e) - 1))
    vals, idx = sims.topk(k, dim=1)
    return idx, (1.0 - vals).clamp(min=0.0)


def export_rows(m: EmbeddingMap, k: int = 5, full_text: bool = True) -> list[dict[str, Any]]:
    """One row per (item, encoder); ``neighbours`` holds the ``id``s and distances of the nearest."""
    rows = []
    n = len(m.items)
    for e, name in enumerate(m.encoders):
        idx, dist = neighbours(m.embeddings[name], k)
        for i, item in enumerate(m.items):
            rows.append(
                {
                    "id": e * n + i,
                    "item": i,
                    "text": item.text if full_text or item.role == "refusal" else f"[{item.source}]",
                    "role": item.role,
                    "harmful": item.harmful,
                    "source": item.source,
                    "pair": item.pair,
                    "encoder": name,
                    "x": float(m.coords[name][i, 0]),
                    "y": float(m.coords[name][i, 1]),
                    "embedding": m.embeddings[name][i].float().tolist(),
                    "neighbours": {
                        "ids": [e * n + int(j) for j in idx[i]],
                        "distances": [float(d) for d in dist[i]],
                    },
                }
            )
    return rows


def write_parquet(m: EmbeddingMap, path: str | Path, k: int = 5, full_text: bool = True) -> Path:
    """The map as parquet: ``id, item, text, role, harmful, source, pair, encoder, x, y, embedding,
    neighbours`` (``{ids, distances}``, the format embedding-atlas reads)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise WorkbenchError("parquet export needs pyarrow", "pip install pyarrow") from err
    rows = export_rows(m, k, full_text)
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("item", pa.int64()),
            ("text", pa.string()),
            ("role", pa.string()),
            ("harmful", pa.bool_()),
            ("source", pa.string()),
            ("pair", pa.int64()),
            ("encoder", pa.string()),
            ("x", pa.float32()),
            ("y", pa.float32()),
            ("embedding", pa.list_(pa.float32())),
            ("neighbours", pa.struct([("ids", pa.list_(pa.int64())), ("distances", pa.list_(pa.float32()))])),
        ]
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), str(path))
    return path


def _tsv_cell(value: Any) -> str:
    return " ".join(str(value).split()) or "-"


def write_projector(m: EmbeddingMap, folder: str | Path, full_text: bool = True) -> list[Path]:
    """TensorBoard Projector files: per encoder ``vectors.tsv`` and ``metadata.tsv`` (with a header),
    plus ``projector_config.pbtxt`` (``tensorboard --logdir FOLDER``; or load the pairs at
    projector.tensorflow.org)."""
    folder = Path(folder)
    written, config = [], []
    header = ("text", "role", "harmful", "source", "pair")
    for name in m.encoders:
        sub = folder / name
        sub.mkdir(parents=True, exist_ok=True)
        vectors = sub / "vectors.tsv"
        vectors.write_text(
            "".join("\t".join(f"{v:.6g}" for v in row) + "\n" for row in m.embeddings[name].float().tolist()),
            encoding="utf-8",
        )
        meta = sub / "metadata.tsv"
        lines = ["\t".join(header)]
        for item in m.items:
            text = item.text if full_text or item.role == "refusal" else f"[{item.source}]"
            lines.append(
                "\t".join(_tsv_cell(v) for v in (text, item.role, item.harmful, item.source, item.pair))
            )
        meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written += [vectors, meta]
        config.append(
            f'embeddings {{\n  tensor_name: "{name}"\n  tensor_path: "{name}/vectors.tsv"\n'
            f'  metadata_path: "{name}/metadata.tsv"\n}}\n'
        )
    pbtxt = folder / "projector_config.pbtxt"
    pbtxt.write_text("".join(config), encoding="utf-8")
    return [*written, pbtxt]


def map_json(m: EmbeddingMap, full_text: bool = True) -> dict[str, Any]:
    """The numbers, the run's settings and the items (texts withheld unless ``full_text``)."""
    items = []
    for item in m.items:
        row = {"role": item.role, "harmful": item.harmful, "source": item.source, "pair": item.pair}
        if item.refused is not None:
            row["refused"] = item.refused
        if full_text or item.role == "refusal":
            row["text"] = item.text
        items.append(row)
    return {
        "meta": m.meta,
        "titles": m.titles,
        "metrics": m.metrics,
        "markdown": metrics_markdown(m),
        "items": items,
    }


def write_map(
    m: EmbeddingMap,
    stem: str | Path,
    *,
    export: bool = True,
    full_text: bool = True,
    neighbours_k: int = 5,
    title: str | None = None,
) -> list[Path]:
    """``stem.html``, ``stem.png`` (when a Chrome is there), ``stem.json`` and, with ``export``,
    ``stem.parquet`` and the Projector folder ``stem-projector/``."""
    from .figures import with_suffix, write_figure

    stem = Path(stem)
    fig = map_figure(m, title=title, full_text=full_text)
    written = write_figure(fig, stem, width=max(700, 430 * len(m.encoders)), height=640)
    numbers = with_suffix(stem, ".json")
    numbers.write_text(
        json.dumps(map_json(m, full_text), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    written.append(numbers)
    if export:
        written.append(write_parquet(m, with_suffix(stem, ".parquet"), neighbours_k, full_text))
        written += write_projector(m, stem.parent / f"{stem.name}-projector", full_text)
    return written
