"""The paper's logit-lens table: which tokens harmful and benign queries' compression states decode to.

The paper projects each query's compression states through the LLM's output head, keeps the top-5
tokens per position and reports their union: harmful queries show tokens such as "illegal",
"ethical", "security". This script reads AdvBench-IR harmful instructions and held-out NQ-open
questions (EfficientQA test; no shipped checkpoint trained on them, which it checks) with the
shipped checkpoint (and, for contrast, with untrained special tokens), counts how often the
union holds a safety-related token, and writes ``figures/lens_table.{json,md,html,png}``.

Queries are named by their source row (``advbench-ir#41``); ``--full-text`` puts the texts in.
CONTENT WARNING: the harmful queries are AdvBench instructions.

    python analyses/lens_table.py [--model smollm2-135m] [--n 25] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from workbench.core.registry import DEFAULT_BACKBONE

ROOT = Path(__file__).resolve().parents[1]
SAFETY_WORDS = (
    "illegal unethical ethical ethics legal law laws crime criminal harm harmful dangerous danger "
    "security safety safe sorry cannot refuse fraud fraudulent scam violence violent abuse "
    "inappropriate irresponsible prohibited unlawful risk"
)
SAFETY_TOKENS = frozenset(SAFETY_WORDS.split())


def sample(rows: list[dict], field: str, n: int, seed: int, source: str) -> list[tuple[str, str]]:
    """``n`` seeded rows as ``(source#index, text)``."""
    index = sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))
    return [(f"{source}#{i}", str(rows[i][field])) for i in index]


def safety_hits(union: list[str]) -> list[str]:
    return [t for t in union if t.strip().lower() in SAFETY_TOKENS]


def read(gen, queries: list[tuple[str, str]], top_k: int) -> list[dict]:
    readings = gen.lens([text for _, text in queries], top_k=top_k, layers=[-1])
    return [
        {"id": qid, "text": text, "union": r.union, "safety_tokens": safety_hits(r.union)}
        for (qid, text), r in zip(queries, readings, strict=True)
    ]


def summary(rows: list[dict]) -> dict[str, float]:
    n = max(len(rows), 1)
    return {
        "queries": len(rows),
        "share_with_safety_token": sum(bool(r["safety_tokens"]) for r in rows) / n,
        "safety_tokens_per_query": sum(len(r["safety_tokens"]) for r in rows) / n,
        "union_size": sum(len(r["union"]) for r in rows) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_BACKBONE)
    parser.add_argument("--n", type=int, default=25, help="harmful and benign queries each")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "figures" / "lens_table")
    parser.add_argument("--full-text", action="store_true", help="put the query texts in the outputs")
    args = parser.parse_args()

    import plotly.graph_objects as go
    from rich.console import Console
    from rich.table import Table
    from transformers.utils import logging as hf_logging

    import workbench
    from workbench.core.errors import WorkbenchError
    from workbench.core.fingerprint import check_overlap
    from workbench.report.figures import write_figure
    from workbench.store.textio import read_jsonl
    from workbench.train.prompts import data_dir

    hf_logging.set_verbosity_error()
    data = data_dir(args.data_dir)
    harmful = sample(
        read_jsonl(data / "advbench-ir" / "advbench-ir.jsonl"),
        "instruction",
        args.n,
        args.seed,
        "advbench-ir",
    )
    benign = sample(  # held out: NQ-open's EfficientQA test questions, never a training prompt
        read_jsonl(data / "nq-open" / "NQ-open.efficientqa.test.1.1.jsonl"),
        "question",
        args.n,
        args.seed,
        "nq-open-efficientqa",
    )

    results = {}
    for label, untrained in (("trained", False), ("untrained", True)):
        gen = workbench.load(args.model, untrained=untrained)
        if untrained is False and not gen.trained:
            raise SystemExit(f"{args.model} has no trained checkpoint to read")
        if label == "trained":  # refuses queries the checkpoint trained on (one line, exit 1)
            try:
                overlap = check_overlap(
                    gen, [text for _, text in harmful + benign], what="lens-table queries"
                )
            except WorkbenchError as err:
                raise SystemExit(f"error: {err}") from err
        results[label] = {"harmful": read(gen, harmful, args.top_k), "benign": read(gen, benign, args.top_k)}

    summaries = {
        f"{label} / {side}": summary(rows) for label, sides in results.items() for side, rows in sides.items()
    }
    table = Table(title=f"logit lens: safety tokens in the union of top-{args.top_k} tokens ({args.model})")
    for col in (
        "checkpoint / queries",
        "queries",
        "with a safety token",
        "safety tokens per query",
        "union size",
    ):
        table.add_column(col, justify="right" if col != "checkpoint / queries" else "left")
    lines = [
        "| checkpoint / queries | queries | with a safety token | safety tokens per query | union size |",
        "|---|---|---|---|---|",
    ]
    for name, s in summaries.items():
        cells = [
            str(s["queries"]),
            f"{s['share_with_safety_token']:.2f}",
            f"{s['safety_tokens_per_query']:.2f}",
            f"{s['union_size']:.1f}",
        ]
        table.add_row(name, *cells)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    console = Console(highlight=False)
    console.print(table)
    examples = Table(title="unions of the trained checkpoint (first 12 tokens)")
    examples.add_column("query")
    examples.add_column("union", overflow="fold")
    for side in ("harmful", "benign"):
        for row in results["trained"][side][:5]:
            examples.add_row(row["id"], ", ".join(row["union"][:12]))
    console.print(examples)

    if not args.full_text:
        for sides in results.values():
            for rows in sides.values():
                for row in rows:
                    row.pop("text")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": args.model,
        "top_k": args.top_k,
        "seed": args.seed,
        "safety_tokens": sorted(SAFETY_TOKENS),
        "overlap": overlap,
        "summary": summaries,
        "readings": results,
    }
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    fig = go.Figure(
        [
            go.Bar(
                name=side,
                x=list(results),
                y=[summaries[f"{label} / {side}"]["share_with_safety_token"] for label in results],
            )
            for side in ("harmful", "benign")
        ]
    )
    fig.update_layout(
        title=f"Queries whose logit-lens union holds a safety token ({args.model}, top-{args.top_k})",
        yaxis={"title": "share of queries", "range": [0, 1]},
        xaxis={"title": "special tokens"},
        barmode="group",
    )
    for path in write_figure(fig, args.out, width=900, height=500):
        console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
