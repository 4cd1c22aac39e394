"""The paper's Table 1 on the workbench backbones: harmful retrieval (AdvBench-IR) and reasoning retrieval.

For each backbone (labelled by size) and encoder (``gen`` = LLM2Vec-Gen, ``teacher`` and
``llm-mean`` = input-centric baselines) the table holds AdvBench-IR ``top_k_any_harm`` and
``top_k_acc`` for k = 1, 5, 20 (lower is safer) and TheoremQA-theorems nDCG@10 (a BRIGHT-style
task; higher is better), read from the ``workbench eval`` reports in ``figures/eval/``
(``safety-<backbone>.json``, ``reasoning-<backbone>.json``). Relative numbers follow the paper's
phrasing: "X% less harmful retrieval" is 1 - gen / best input-centric encoder, reported "up to"
over the six safety columns; the reasoning gain is gen / best input-centric encoder - 1. The
paper's headline numbers (method.md §4) stand beside them.

Every row records its report's query count (``--limit``), the checkpoint sha256 and whether the
checkpoint was trained; a report made with other special tokens than the checkpoint now shipped is
marked stale. Writes ``figures/table1.{json,md,html,png}`` and prints the markdown.

    python analyses/table1.py                     # from the committed reports, no model loaded
    python analyses/table1.py --run --limit 100   # first evaluate the backbones without a report
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from workbench.core.hashing import sha256_file  # no torch: only hashlib

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = {"smollm2-135m": "SmolLM2-135M (135M)", "qwen2.5-coder-0.5b": "Qwen2.5-Coder-0.5B (0.5B)"}
ENCODERS = ("gen", "teacher", "llm-mean")
BASELINES = ("teacher", "llm-mean")
KS = (1, 5, 20)
SAFETY = tuple(f"top_{k}_{m}" for m in ("any_harm", "acc") for k in KS)
REASONING_TASK = "theoremqa-theorems"
REASONING = "theoremqa_ndcg@10"
HEADERS = {
    **{
        f"top_{k}_{m}": f"{'any-harm' if m == 'any_harm' else 'acc'}@{k}"
        for m in ("any_harm", "acc")
        for k in KS
    },
    REASONING: "TheoremQA nDCG@10",
}
PAPER = {
    "safety": "up to 43.2% less harmful retrieval than input-centric encoders (v2: 22.6%)",
    "reasoning": "BRIGHT nDCG@10 up to +29.3% over input-centric encoders (0.6B: +7.7%; v2: +35.6%)",
    "safety_reduction": 0.432,
    "reasoning_gain": 0.293,
    "reasoning_gain_0.6b": 0.077,
}
WEIGHTS_FILE = "llm2vec_gen_weights.safetensors"  # as in workbench.store.checkpoint (which imports torch)
CONFIG_FILE = "llm2vec_gen_config.json"
FIGURE_NAMES = ("any-harm", "acc", "by-refusal", "ndcg10")  # the charts of workbench eval safety|reasoning


def shipped(backbone: str) -> dict[str, Any]:
    """The checkpoint shipped in ``workbench/checkpoints/<backbone>/``: path, sha256, trained (or none)."""
    folder = ROOT / "workbench" / "checkpoints" / backbone
    if not (folder / WEIGHTS_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
        return {"path": None, "sha256": None, "trained": False}
    trained = bool(json.loads((folder / CONFIG_FILE).read_text()).get("trained", False))
    rel = folder.relative_to(ROOT).as_posix()
    return {"path": rel, "sha256": sha256_file(folder / WEIGHTS_FILE), "trained": trained}


def provenance(report: dict[str, Any], path: Path, queries: int | None, ship: dict[str, Any]) -> dict:
    """Where a report's numbers come from, and whether the shipped checkpoint has changed since."""
    cfg = report.get("config", {})
    sha, trained = cfg.get("checkpoint_sha256"), bool(cfg.get("trained"))
    if ship["sha256"] is None:
        status = "no trained checkpoint shipped: gen uses untrained special tokens" if not trained else "ok"
    elif sha == ship["sha256"]:
        status = "ok"
    else:
        made = f"checkpoint {sha[:12]}" if sha else "untrained special tokens"
        status = f"stale: made with {made}, the shipped checkpoint is {ship['sha256'][:12]}"
    limit = cfg.get("limit")
    if isinstance(limit, dict):  # a limit per task: the table's task
        limit = limit.get(REASONING_TASK)
    overlap = report.get("overlap")
    if overlap is not None and "checked" not in overlap:  # reasoning: one record per task
        overlap = overlap.get(REASONING_TASK)
    return {
        "report": shown(path),
        "timestamp": report.get("timestamp"),
        "limit": limit,
        "queries": queries,
        "checkpoint_sha256": sha,
        "trained": trained,
        "status": status,
        "overlap": None if not overlap or not overlap.get("checked") else overlap.get("overlap"),
    }


def read_report(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def relative(values: dict[str, dict[str, float]], column: str, lower_is_better: bool) -> float | None:
    """Paper phrasing: 1 - gen/best baseline (less harm), or gen/best baseline - 1 (gain)."""
    base = [values[b][column] for b in BASELINES if column in values.get(b, {})]
    if "gen" not in values or column not in values["gen"] or not base:
        return None
    best = min(base) if lower_is_better else max(base)
    if best == 0:
        return None
    gen = values["gen"][column]
    return 1 - gen / best if lower_is_better else gen / best - 1


def against_best(
    values: dict[str, dict[str, float]],
    comps: dict[str, Any],
    column: str,
    metric: str,
    lower_is_better: bool,
) -> dict[str, Any] | None:
    """The report's paired-bootstrap comparison of gen with the best baseline on ``column``."""
    base = [b for b in BASELINES if column in values.get(b, {})]
    if not base:
        return None
    pick = min if lower_is_better else max
    best = pick(base, key=lambda b: values[b][column])
    c = comps.get(best, {}).get(metric)
    if c is None:
        return None
    return {
        "baseline": best,
        "improvement": c["improvement"],
        "improvement_ci": c["improvement_ci"],
        "diff": c["diff"],
        "diff_ci": c["diff_ci"],
        "verdict": c["verdict"],
        "n": c["n"],
    }


def collect(backbone: str, eval_dir: Path) -> dict[str, Any]:
    """One backbone's numbers, intervals, comparisons, provenance and missing reports."""
    ship = shipped(backbone)
    out: dict[str, Any] = {"label": BACKBONES.get(backbone, backbone), "shipped": ship, "missing": []}
    values: dict[str, dict[str, float]] = {e: {} for e in ENCODERS}
    ci: dict[str, dict[str, list[float]]] = {e: {} for e in ENCODERS}
    versus: dict[str, Any] = {}
    path = eval_dir / f"safety-{backbone}.json"
    report = read_report(path)
    if report is None:
        out["missing"].append(("safety", path))
    else:
        for enc in ENCODERS:
            values[enc].update({c: report["metrics"][enc][c] for c in SAFETY if enc in report["metrics"]})
            ci[enc].update({c: v for c, v in report.get("intervals", {}).get(enc, {}).items() if c in SAFETY})
        for c in SAFETY:
            versus[c] = against_best(values, report.get("comparisons", {}), c, c, lower_is_better=True)
        out["safety"] = provenance(report, path, report.get("data", {}).get("queries"), ship)
    path = eval_dir / f"reasoning-{backbone}.json"
    report = read_report(path)
    task = (report or {}).get("metrics", {}).get(REASONING_TASK)
    if report is None or task is None:
        out["missing"].append(("reasoning", path))
    else:
        for enc in ENCODERS:
            if enc in task:
                values[enc][REASONING] = task[enc]["ndcg@10"]
                interval = report.get("intervals", {}).get(REASONING_TASK, {}).get(enc, {}).get("ndcg@10")
                if interval:
                    ci[enc][REASONING] = interval
        comps = report.get("comparisons", {}).get(REASONING_TASK, {})
        versus[REASONING] = against_best(values, comps, REASONING, "ndcg@10", lower_is_better=False)
        queries = report.get("data", {}).get(REASONING_TASK, {}).get("queries")
        out["reasoning"] = provenance(report, path, queries, ship)
    out["values"] = values
    out["intervals"] = ci
    out["versus_best"] = versus
    rel = {c: relative(values, c, lower_is_better=True) for c in SAFETY}
    rel[REASONING] = relative(values, REASONING, lower_is_better=False)
    out["relative"] = rel
    out["safety_up_to"] = {}
    for metric in ("any_harm", "acc"):
        found = {k: rel[f"top_{k}_{metric}"] for k in KS if rel[f"top_{k}_{metric}"] is not None}
        if found:
            k = max(found, key=lambda k: found[k])
            out["safety_up_to"][metric] = {"k": k, "reduction": found[k]}
    return out


def pct(x: float | None, signed: bool = True) -> str:
    return "n/a" if x is None else (f"{x * 100:+.1f}%" if signed else f"{x * 100:.1f}%")


def interval_text(v: dict[str, Any] | None) -> str:
    """'95% CI +20.1% to +71.3%: a result' (interval excludes 0) or '...: a hint'."""
    if not v:
        return "no interval in the report: a hint"
    lo, hi = v["improvement_ci"]
    return f"95% CI {pct(lo)} to {pct(hi)} vs {v['baseline']}: a {v['verdict']}"


def relative_cell(info: dict[str, Any], column: str) -> str:
    v = info.get("versus_best", {}).get(column)
    cell = pct(info["relative"][column])
    if not v:
        return cell
    if v["improvement_ci"][0] != v["improvement_ci"][0]:  # nan: a baseline mean resampled to 0
        return f"{cell} [n/a] {v['verdict']}"
    lo, hi = v["improvement_ci"]
    return f"{cell} [{lo * 100:+.1f}, {hi * 100:+.1f}] {v['verdict']}"


def phrase_safety(info: dict[str, Any]) -> str:
    """The paper's phrasing per metric: 'up to X% less harmful retrieval', or how much more at best."""
    parts = []
    for metric, best in info.get("safety_up_to", {}).items():
        name, r = ("any harm" if metric == "any_harm" else "acc"), best["reduction"]
        ci = interval_text(info.get("versus_best", {}).get(f"top_{best['k']}_{metric}"))
        if r > 0:
            parts.append(f"{name}: up to {r * 100:.1f}% less harmful retrieval (k={best['k']}; {ci})")
        elif abs(r) < 5e-4:
            parts.append(f"{name}: no reduction, at best equal (k={best['k']}; {ci})")
        else:
            parts.append(f"{name}: no reduction, at best {-r * 100:.1f}% more (k={best['k']}; {ci})")
    if not parts:
        return "n/a"
    untrained = "safety" in info and not info["safety"]["trained"]
    return ("untrained gen, not meaningful: " if untrained else "") + "; ".join(parts)


def phrase_reasoning(info: dict[str, Any]) -> str:
    gain = info["relative"][REASONING]
    if gain is None:
        return "n/a"
    untrained = "untrained gen, not meaningful: " if not info["reasoning"]["trained"] else ""
    ci = interval_text(info.get("versus_best", {}).get(REASONING))
    return f"{untrained}{pct(gain)} TheoremQA nDCG@10 ({ci})"


def shown(path: Path) -> str:
    """A path relative to the repository when it is inside it, else to the home folder (``~/...``)."""
    resolved = path.resolve()
    for base, prefix in ((ROOT, ""), (Path.home().resolve(), "~/")):
        if resolved.is_relative_to(base):
            return prefix + resolved.relative_to(base).as_posix()
    return str(path)


def missing_line(kind: str, backbone: str, path: Path) -> str:
    what = "AdvBench-IR" if kind == "safety" else f"{REASONING_TASK} nDCG@10"
    return (
        f"missing {kind} report for {backbone} ({what}): {shown(path)} -- produce it with "
        f"`python analyses/table1.py --run --backbone {backbone} --limit 100` "
        f"(runs `workbench eval {kind}` and files the report there)"
    )


def run_missing(args: argparse.Namespace, backbones: list[str]) -> int:
    """Evaluate the backbones whose report is missing (or stale, with --refresh); 1 if any failed."""
    failures = 0
    for backbone in backbones:
        info = collect(backbone, args.eval_dir)
        todo = [kind for kind, _ in info["missing"]]
        if args.refresh:
            todo += [
                k for k in ("safety", "reasoning") if info.get(k, {}).get("status", "").startswith("stale")
            ]
        for kind in todo:
            if info["shipped"]["sha256"] is None:
                print(
                    f"note: {backbone} has no trained checkpoint in workbench/checkpoints/{backbone}; "
                    "its gen row runs with untrained special tokens"
                )
            print(
                f"running workbench eval {kind} on {backbone} (limit {args.limit or 'none'}) ...", flush=True
            )
            try:
                path = run_eval(kind, backbone, args)
            except Exception as err:  # WorkbenchError and anything a long evaluation may raise
                print(f"error: eval {kind} on {backbone} failed: {err}", file=sys.stderr)
                failures += 1
                continue
            print(f"wrote {path}")
    return 1 if failures else 0


def run_eval(kind: str, backbone: str, args: argparse.Namespace) -> Path:
    """Evaluate in-process (what ``workbench eval <kind>`` calls) into a scratch folder, then file the
    report as <kind>-<backbone>."""
    from transformers.utils import logging as hf_logging

    import workbench
    from workbench.eval.reasoning import run_reasoning
    from workbench.eval.safety import run_safety
    from workbench.report.eval_report import write_eval_report

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    args.eval_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.eval_dir, prefix=".table1-") as tmp:
        common = {"model_name": backbone, "limit": args.limit, "data_dir": args.data_dir}
        model = lambda: workbench.load(backbone)  # noqa: E731 - loaded once the data is read
        if kind == "safety":
            report = run_safety(model, **common, encoders=ENCODERS)
        else:  # TheoremQA for the table; GSM8K (questions the checkpoint did not train on) beside it
            common["limit"] = {REASONING_TASK: args.limit, "gsm8k": args.gsm8k}
            report = run_reasoning(model, **common, encoders=ENCODERS, tasks=f"{REASONING_TASK},gsm8k")
        print(write_eval_report(report, Path(tmp))["markdown"])
        return publish(Path(tmp), kind, backbone, args.eval_dir, args.limit)


def publish(tmp: Path, kind: str, backbone: str, eval_dir: Path, limit: int | None) -> Path:
    """Move a fresh report to ``<kind>-<backbone>.*`` (the committed layout: no samples, relative paths)."""
    from workbench.store.atomic import atomic_write

    (src,) = sorted(tmp.glob(f"{kind}-*Z.json"))
    old, new = src.stem, f"{kind}-{backbone}"
    payload = json.loads(src.read_text(encoding="utf-8"))
    for key in ("samples", "answers"):
        payload.pop(key, None)
    ckpt = payload.get("config", {}).get("checkpoint")
    if ckpt:
        payload["config"]["checkpoint"] = shown(Path(ckpt))
    cache = payload.get("embedding_cache", {})
    if cache.get("root"):
        cache["root"] = shown(Path(cache["root"]))
    size = f"first {limit} queries" if limit else "all queries"
    gsm8k = payload.get("data", {}).get("gsm8k", {}).get("queries")
    if gsm8k is not None:
        size += f"; GSM8K: {gsm8k} questions the checkpoint did not train on"
    payload["note"] = (
        f"written by analyses/table1.py --run ({size}); copy without per-query samples and LLM answers"
    )
    target = eval_dir / f"{new}.json"
    text = json.dumps(payload, indent=1, ensure_ascii=False, default=str) + "\n"

    def write(tmp_file: Path) -> None:
        tmp_file.write_text(text, encoding="utf-8")
        tmp_file.chmod(0o644)

    atomic_write(target, write)
    for name in FIGURE_NAMES:  # figures of an older report that this run may not have made again
        for suffix in (".html", ".png"):
            (eval_dir / f"{new}-{name}{suffix}").unlink(missing_ok=True)
    for f in sorted(tmp.iterdir()):
        if f == src or not f.name.startswith(old):
            continue
        dest = eval_dir / f"{new}{f.name[len(old) :]}"
        if f.suffix == ".html":
            text = f.read_text(encoding="utf-8").replace(old, new)
            dest.write_text(text.replace(f"{ROOT}/", ""), encoding="utf-8")  # repository-relative paths
        else:
            os.replace(f, dest)
    return target


def markdown(table: dict[str, dict[str, Any]]) -> str:
    cols = [*SAFETY, REASONING]
    lines = [
        "### Table 1 analogue: AdvBench-IR (lower is safer), TheoremQA-theorems nDCG@10 (higher is better)",
        "",
        "| model | encoder | " + " | ".join(HEADERS[c] for c in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for info in table.values():
        for enc in ENCODERS:
            cells = [f"{info['values'][enc][c]:.3f}" if c in info["values"][enc] else "–" for c in cols]
            lines.append(f"| {info['label']} | {enc} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### LLM2Vec-Gen against the best input-centric encoder (teacher, llm-mean)",
        "",
        "Positive = LLM2Vec-Gen better: harm reduction 1 - gen/best for the AdvBench-IR columns, "
        "gain gen/best - 1 for nDCG@10. In brackets the 95% paired-bootstrap interval over queries "
        "(2,000 resamples); a *result* when the interval of the difference excludes 0, else a *hint*. "
        "[n/a]: the baseline's value resamples to 0, so the relative change has no interval; the verdict "
        "still comes from the difference's.",
        "",
        "| model | " + " | ".join(HEADERS[c] for c in cols) + " | harmful retrieval | reasoning |",
        "|---|" + "---|" * (len(cols) + 2),
    ]
    for info in table.values():
        cells = [relative_cell(info, c) for c in cols]
        lines.append(
            f"| {info['label']} | "
            + " | ".join(cells)
            + f" | {phrase_safety(info)} | {phrase_reasoning(info)} |"
        )
    blank = " | ".join([""] * len(cols))
    lines.append(f"| paper | {blank} | {PAPER['safety']} | {PAPER['reasoning']} |")
    lines += [
        "",
        "### Sources",
        "",
        "| model | report | queries (limit) | training prompts among them | checkpoint sha256 | trained "
        "| status |",
        "|---|---|---|---|---|---|---|",
    ]
    for backbone, info in table.items():
        for kind in ("safety", "reasoning"):
            p = info.get(kind)
            if p is None:
                lines.append(f"| {info['label']} | missing: {kind}-{backbone}.json | | | | | |")
                continue
            sha = (p["checkpoint_sha256"] or "none")[:12]
            overlap = "not checked" if p.get("overlap") is None else str(p["overlap"])
            lines.append(
                f"| {info['label']} | {p['report']} | {p['queries']} ({p['limit'] or 'all'}) | {overlap} | "
                f"{sha} | {'yes' if p['trained'] else 'no'} | {p['status']} |"
            )
    return "\n".join(lines)


def _tag(info: dict[str, Any], kind: str) -> str:
    size = info["label"].split(" (")[0]
    return size + ("" if info.get(kind, {}).get("trained") else " (untrained gen)")


def figure(table: dict[str, dict[str, Any]]) -> Any:
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.68, 0.32],
        horizontal_spacing=0.08,
        subplot_titles=(
            "AdvBench-IR: share of queries with harm in the top k (lower is safer)",
            "TheoremQA-theorems: nDCG@10 (higher is better)",
        ),
    )
    colours = {"gen": "#d62728", "teacher": "#1f77b4", "llm-mean": "#7f7f7f"}
    for enc in ENCODERS:
        models, ks, y, models2, y2 = [], [], [], [], []
        for info in table.values():
            for k in KS:
                if f"top_{k}_any_harm" in info["values"][enc]:
                    models.append(_tag(info, "safety"))
                    ks.append(f"k={k}")
                    y.append(info["values"][enc][f"top_{k}_any_harm"])
            if REASONING in info["values"][enc]:
                models2.append(_tag(info, "reasoning"))
                y2.append(info["values"][enc][REASONING])
        name = "LLM2Vec-Gen (gen)" if enc == "gen" else enc
        style = {"name": name, "marker_color": colours[enc], "legendgroup": enc, "textposition": "outside"}
        fig.add_bar(x=[models, ks], y=y, text=[f"{v:.2f}" for v in y], **style, row=1, col=1)
        fig.add_bar(x=models2, y=y2, text=[f"{v:.2f}" for v in y2], **style, showlegend=False, row=1, col=2)
    fig.update_traces(textangle=0, textfont_size=10, cliponaxis=False)
    fig.update_yaxes(range=[0, 1.08], row=1, col=1)
    fig.update_layout(
        title={
            "text": "Table 1 analogue on the workbench backbones<br><sup>paper: "
            + PAPER["safety"]
            + "<br>paper: "
            + PAPER["reasoning"]
            + "</sup>",
            "x": 0.01,
        },
        margin={"t": 150},
        barmode="group",
        template="plotly_white",
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--backbone", action="append", default=None, help=f"repeatable (default {', '.join(BACKBONES)})"
    )
    p.add_argument("--eval-dir", type=Path, default=ROOT / "figures" / "eval", help="where the reports live")
    p.add_argument("--out", type=Path, default=ROOT / "figures" / "table1", help="output stem")
    p.add_argument("--run", action="store_true", help="first evaluate the backbones that have no report")
    p.add_argument("--refresh", action="store_true", help="with --run: also rerun reports marked stale")
    p.add_argument("--limit", type=int, default=None, help="with --run: first N queries per data set")
    p.add_argument("--data-dir", type=Path, default=None, help="with --run: public data folder")
    p.add_argument(
        "--gsm8k", type=int, default=200, help="with --run: held-out GSM8K questions in the reasoning report"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    backbones = args.backbone or list(BACKBONES)
    code = run_missing(args, backbones) if args.run else 0
    table = {b: collect(b, args.eval_dir) for b in backbones}
    for backbone, info in table.items():
        if info["shipped"]["sha256"] is None:
            print(f"note: {backbone} has no trained checkpoint in workbench/checkpoints/{backbone}")
        for kind, path in info["missing"]:
            print(missing_line(kind, backbone, path))
        for kind in ("safety", "reasoning"):
            status = info.get(kind, {}).get("status", "ok")
            if status != "ok":
                print(f"note: {kind}-{backbone}: {status}")
    if len({info["safety"]["queries"] for info in table.values() if "safety" in info}) > 1:
        print("note: the safety reports use different query counts; compare backbones with care")
    md = markdown(table)
    print(md)
    payload = {
        "paper": PAPER,
        "encoders": list(ENCODERS),
        "baselines": list(BASELINES),
        "reasoning_task": REASONING_TASK,
        "backbones": {
            b: {k: v for k, v in info.items() if k != "missing"}
            | {"missing": [f"{kind}: {p.name}" for kind, p in info["missing"]]}
            for b, info in table.items()
        },
        "rows": [
            {"backbone": b, "label": info["label"], "encoder": enc, **info["values"][enc]}
            | {
                f"{kind}_{key}": info[kind][key]
                for kind in ("safety", "reasoning")
                if kind in info
                for key in ("limit", "queries", "checkpoint_sha256", "trained", "status", "overlap")
            }
            for b, info in table.items()
            for enc in ENCODERS
            if info["values"][enc]
        ],
        "markdown": md,
    }
    from workbench.report.figures import with_suffix, write_figure

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with_suffix(args.out, ".json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    with_suffix(args.out, ".md").write_text(md + "\n")
    if payload["rows"]:
        for path in write_figure(figure(table), args.out, width=1200, height=560):
            print(f"wrote {path}")
    print(f"wrote {with_suffix(args.out, '.json')} and {with_suffix(args.out, '.md')}")
    return code


if __name__ == "__main__":
    sys.exit(main())
