"""The paper's two ablations on a small budget: thought/compression token counts, and the losses.

Each variant trains LLM2Vec-Gen from the untrained start with ``workbench.train.trainer.train`` on the
same responses file, budget and seed, into ``--work-dir/<variant>/`` (an interrupted invocation
resumes its runs; a finished run with the same options is reused, not retrained), then is measured
on held-out prompt/response pairs with ``workbench.train.quality.evaluate`` (the numbers of ``workbench
quality``): reconstruction token F1 of decoding from the embedding against the LLM's own answer,
cosine between the embedding and the teacher's embedding of that answer, and query -> own-answer
recall@1 and MRR. Writes ``figures/ablations.{json,md,html,png}`` and prints the table.

Variants (``--variants``, comma separated): ``T<t>-C<c>`` trains with t thought and c compression
tokens and both losses; ``-recon-only`` / ``-align-only`` appended drops the other loss (weight 0).
Aliases: ``both`` = T10-C10, ``recon-only`` = T10-C10-recon-only, ``align-only`` = T10-C10-align-only.
Default: the token ablation T10-C10 (paper v1), T0-C10 (paper v2), T10-C1, T0-C1, T0-C5, and the
loss ablation recon-only, align-only (``both`` is T10-C10).

These are SMALL-BUDGET CPU RUNS (default 120 steps x batch 8, not the paper's 5,000 x 32): they
rank the variants against each other on one backbone; they do not reproduce the paper's numbers.

    nice -n 19 python analyses/ablations.py --responses runs/smollm2-135m/responses.jsonl \\
        --heldout runs/smollm2-135m/heldout.jsonl
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core.registry import DEFAULT_BACKBONE

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VARIANTS = "T10-C10,T0-C10,T10-C1,T0-C1,T0-C5,recon-only,align-only"
ALIASES = {"both": "T10-C10", "recon-only": "T10-C10-recon-only", "align-only": "T10-C10-align-only"}
PATTERN = re.compile(r"^T(\d+)-C(\d+)(?:-(recon|align)-only)?$")
QUALITY_FILE = "ablation_quality.json"
LAST_ROWS = 10
"""Final training losses are the mean of the last this-many logged steps (one batch is noisy)."""
METRICS = (
    ("reconstruction_f1", "recon F1"),
    ("alignment_cosine", "align cos"),
    ("recall@1", "R@1"),
    ("mrr", "MRR"),
)
BANNER = "SMALL-BUDGET CPU RUNS"


@dataclass(frozen=True)
class Variant:
    name: str
    num_thought: int
    num_compress: int
    losses: str
    """``both``, ``recon only`` or ``align only``."""


def parse_variant(text: str) -> Variant:
    name = ALIASES.get(text.strip(), text.strip())
    match = PATTERN.match(name)
    if match is None:
        raise SystemExit(
            f"unknown variant {text!r}: use T<t>-C<c> (optionally -recon-only or -align-only), "
            f"or one of {', '.join(ALIASES)}"
        )
    losses = {None: "both", "recon": "recon only", "align": "align only"}[match.group(3)]
    return Variant(name, int(match.group(1)), int(match.group(2)), losses)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--responses", type=Path, required=True, help="training responses JSONL (workbench respond)"
    )
    p.add_argument("--heldout", type=Path, required=True, help="held-out responses JSONL (not trained on)")
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma list (default {DEFAULT_VARIANTS})")
    p.add_argument("--model", default=DEFAULT_BACKBONE, help="backbone: registry name or model folder")
    p.add_argument("--teacher", default="minilm")
    p.add_argument("--work-dir", type=Path, default=None, help="runs go to WORK_DIR/<variant>/")
    p.add_argument("--out-dir", type=Path, default=ROOT / "figures")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--schedule-steps", type=int, default=None, help="linear decay length (default: --steps)")
    p.add_argument("--recon-weight", type=float, default=1.0, help="weight of L_rec when it is on")
    p.add_argument(
        "--align-weight",
        type=float,
        default=100.0,
        help="weight of L_align when it is on (100 makes MiniLM's per-dimension MSE count)",
    )
    p.add_argument("--max-query-length", type=int, default=128)
    p.add_argument("--max-response-length", type=int, default=64)
    p.add_argument("--limit", type=int, default=1000, help="first N training pairs (0: all)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--save-every", type=int, default=20, help="step checkpoints (for resuming)")
    p.add_argument("--heldout-limit", type=int, default=100)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.work_dir is None:
        args.work_dir = ROOT / "runs" / "ablations" / Path(args.model).name
    if args.heldout_limit < 2:
        p.error("--heldout-limit must be at least 2 (retrieval needs distractors)")
    return args


def rel(path: str | Path) -> str:
    """``path`` relative to the repository when it lies inside it (recorded paths stay portable)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def train_config(args: argparse.Namespace, v: Variant) -> Any:
    from workbench.train.config import TrainConfig

    return TrainConfig(
        model=args.model,
        teacher=args.teacher,
        responses=str(args.responses),
        out=str(args.work_dir / v.name),
        num_thought=v.num_thought,
        num_compress=v.num_compress,
        recon_weight=0.0 if v.losses == "align only" else args.recon_weight,
        align_weight=0.0 if v.losses == "recon only" else args.align_weight,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        schedule_steps=args.schedule_steps or args.steps,
        max_steps=args.steps,
        batch_size=args.batch_size,
        max_query_length=args.max_query_length,
        max_response_length=args.max_response_length,
        seed=args.seed,
        save_every=args.save_every,
        limit=args.limit or None,
    )


def same_run(before: dict[str, Any], cfg: Any) -> list[str]:
    """Options of a recorded run that differ from ``cfg`` (those that change the result, and the steps)."""
    from workbench.train.config import TRAINING_KEYS

    now = cfg.to_dict()
    return [k for k in (*TRAINING_KEYS, "max_steps") if before.get(k) != now[k]]


def finished(out: Path, cfg: Any, digest: str) -> bool:
    """Whether ``out`` holds this variant's completed run (final checkpoint of the same options and pairs)."""
    from workbench.core.errors import WorkbenchError
    from workbench.train.trainer import CONFIG_FILE, RUN_CONFIG, WEIGHTS_FILE

    recorded = None
    if (out / CONFIG_FILE).is_file() and (out / WEIGHTS_FILE).is_file():
        card = json.loads((out / CONFIG_FILE).read_text()).get("card", {})
        if card.get("train") is not None:
            recorded = (card["train"], card.get("responses_sha256"))
            if card.get("steps") == cfg.max_steps and not same_run(card["train"], cfg):
                if card.get("responses_sha256") != digest:
                    raise WorkbenchError(
                        f"{out} was trained on other pairs than the current {cfg.responses}",
                        "use another --work-dir (or delete that folder) to retrain on the new pairs",
                    )
                return True
    if recorded is None and (out / RUN_CONFIG).is_file():
        run = json.loads((out / RUN_CONFIG).read_text())
        recorded = (run["train"], run.get("responses_sha256"))
    if recorded is not None and recorded[1] != digest:
        raise WorkbenchError(
            f"{out} holds a run on other pairs than the current {cfg.responses} (it may have grown)",
            "use another --work-dir (or delete that folder), or the --limit the run was started with",
        )
    return False


def seed_teacher_cache(out: Path, siblings: list[Path]) -> None:
    """Copy a sibling run's teacher embeddings (the trainer checks their key and recomputes if it differs)."""
    from workbench.train.trainer import TEACHER_CACHE

    if (out / TEACHER_CACHE).is_file():
        return
    for other in siblings:
        if other != out and (other / TEACHER_CACHE).is_file():
            out.mkdir(parents=True, exist_ok=True)
            tmp = out / f".{TEACHER_CACHE}.copy"
            shutil.copyfile(other / TEACHER_CACHE, tmp)
            os.replace(tmp, out / TEACHER_CACHE)
            return


def train_variant(cfg: Any, siblings: list[Path], digest: str, quiet: bool) -> str:
    """Train (or resume, or reuse) one variant; returns what happened."""
    from workbench.train.trainer import RUN_CONFIG, step_dirs, train

    out = Path(cfg.out)
    if finished(out, cfg, digest):
        return "reused"
    resume = (out / RUN_CONFIG).is_file() or bool(step_dirs(out))
    if (out / RUN_CONFIG).is_file():
        before = json.loads((out / RUN_CONFIG).read_text())["train"]
        changed = [k for k in same_run(before, cfg) if k != "max_steps"]
        if changed:
            from workbench.core.errors import WorkbenchError

            raise WorkbenchError(
                f"{out} holds this variant's run with other options {changed}",
                "pass the options it was run with (its run_config.json), or another --work-dir",
            )
    seed_teacher_cache(out, siblings)
    train(cfg, resume=resume, show_progress=not quiet)
    return "resumed" if resume else "trained"


def log_summary(out: Path) -> dict[str, Any]:
    from workbench.train.trainer import LOG_FILE

    rows = [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines() if line.strip()]
    tail = rows[-LAST_ROWS:]

    def mean(key: str) -> float:
        return sum(r[key] for r in tail) / len(tail)

    return {
        "steps_logged": len(rows),
        "first": {k: rows[0][k] for k in ("recon_loss", "align_loss", "cos_diag")},
        "final": {k: mean(k) for k in ("recon_loss", "align_loss", "cos_diag", "cos_offdiag", "emb_norm")},
        "final_over_steps": len(tail),
        "train_seconds": rows[-1]["elapsed_s"],
        "seconds_per_step": rows[-1]["elapsed_s"] / rows[-1]["step"],
    }


def evaluate_variant(
    out: Path, heldout: list[Any], train_responses: list[str], key: dict[str, Any], say: Any
) -> tuple[dict[str, Any], float, bool]:
    """``workbench quality``'s report for one trained run (cached in the run folder under ``key``)."""
    from workbench.core.hashing import sha256_file
    from workbench.store.atomic import atomic_write
    from workbench.train.trainer import WEIGHTS_FILE

    key = {**key, "weights_sha256": sha256_file(out / WEIGHTS_FILE)}
    cache = out / QUALITY_FILE
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return stored["report"], stored["eval_seconds"], True

    import workbench
    from workbench.train.quality import evaluate, untrained_twin

    began = time.perf_counter()
    gen = workbench.load(out)
    report = evaluate(
        gen,
        untrained_twin(gen),
        heldout,
        train_responses,
        max_new_tokens=key["max_new_tokens"],
        progress=say,
    ).to_dict()
    seconds = time.perf_counter() - began
    del gen
    gc.collect()
    payload = {"key": key, "report": report, "eval_seconds": seconds}
    atomic_write(cache, lambda tmp: tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n"))
    return report, seconds, False


def metrics_of(report: dict[str, Any], which: str = "trained checkpoint") -> dict[str, float]:
    retrieval = report["retrieval"][which]
    return {
        "reconstruction_f1": report["reconstruction_f1"][which],
        "alignment_cosine": report["alignment_cosine"][which],
        "recall@1": retrieval["recall@1"],
        "mrr": retrieval["mrr"],
    }


def groups(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The token ablation (both losses) and the loss ablation (single-loss runs and their both-loss twin)."""
    single = {(r["num_thought"], r["num_compress"]) for r in rows if r["losses"] != "both"}
    out = {
        "thought / compression tokens (both losses)": [r for r in rows if r["losses"] == "both"],
        "losses": [
            r for r in rows if r["losses"] != "both" or (r["num_thought"], r["num_compress"]) in single
        ],
    }
    return {k: v for k, v in out.items() if v}


def markdown(payload: dict[str, Any]) -> str:
    b = payload["budget"]
    rows = payload["variants"]
    lines = [
        f"# Ablations on {payload['model']} (teacher {payload['teacher']})",
        "",
        f"**{BANNER}**: every variant trains {b['steps']} steps x batch {b['batch_size']} "
        f"({b['steps'] * b['batch_size']} pair visits of the first {payload['responses']['pairs']} "
        f"pairs; lr {b['lr']:g}, warm-up {b['warmup_steps']}, linear decay over {b['schedule_steps']} "
        f"steps; recon weight {b['recon_weight']:g}, align weight {b['align_weight']:g} when on; "
        f"fp32, seed {b['seed']}), not the paper's 5,000 x 32. Compare variants with each other, "
        "not with the paper.",
        "",
        "| variant | T | C | recon w | align w | recon F1 | align cos | R@1 | MRR "
        "| recon loss | align loss | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m, f = r["metrics"], r["training"]["final"]
        lines.append(
            f"| {r['name']} | {r['num_thought']} | {r['num_compress']} | {r['config']['recon_weight']:g} "
            f"| {r['config']['align_weight']:g} | {m['reconstruction_f1']:.3f} | {m['alignment_cosine']:.3f} "
            f"| {m['recall@1']:.3f} | {m['mrr']:.3f} | {f['recon_loss']:.3f} | {f['align_loss']:.5f} "
            f"| {r['training']['train_seconds']:.0f} |"
        )
    h = payload["heldout"]
    lines += [
        "",
        f"Held-out pairs: {h['pairs']} ({h['path']}). recon F1: token F1 of greedy decoding "
        f"({payload['max_new_tokens']} new tokens) from the query's embedding against the LLM's own "
        "answer. align cos: cosine between the query's embedding and the teacher's embedding of the "
        f"answer. R@1 / MRR: query -> its own answer among {h['pairs']} answers (documents embedded "
        f"with the summarise instruction). Losses: unweighted, mean of the last "
        f"{min(LAST_ROWS, b['steps'])} training steps (the recon loss of an align-only run and the align "
        "loss of a recon-only run are measured, not trained). train s: training time only.",
        "",
        "| baseline (not trained) | recon F1 | align cos | R@1 | MRR |",
        "|---|---|---|---|---|",
    ]
    for name, m in payload["baselines"].items():
        cells = [f"{m[k]:.3f}" if m.get(k) is not None else "-" for k, _ in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(payload: dict[str, Any]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    parts = groups(payload["variants"])
    fig = make_subplots(
        rows=1,
        cols=len(parts),
        subplot_titles=list(parts),
        shared_yaxes=True,
        column_widths=[len(v) for v in parts.values()],
    )
    colours = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")
    for col, rows in enumerate(parts.values(), 1):
        for (key, label), colour in zip(METRICS, colours, strict=True):
            fig.add_trace(
                go.Bar(
                    name=label,
                    x=[r["name"] for r in rows],
                    y=[r["metrics"][key] for r in rows],
                    marker_color=colour,
                    legendgroup=label,
                    showlegend=col == 1,
                    text=[f"{r['metrics'][key]:.2f}" for r in rows],
                    textposition="outside",
                ),
                row=1,
                col=col,
            )
    b = payload["budget"]
    fig.update_layout(
        title=(
            f"LLM2Vec-Gen ablations on {payload['model']}: held-out quality "
            f"(small-budget CPU runs, {b['steps']} steps x batch {b['batch_size']})"
        ),
        barmode="group",
        yaxis={"title": "score on held-out pairs"},
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def write_outputs(payload: dict[str, Any], out_dir: Path) -> list[Path]:
    from workbench.report.figures import write_figure
    from workbench.store.atomic import atomic_write

    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=1, ensure_ascii=False) + "\n"
    atomic_write(out_dir / "ablations.json", lambda tmp: tmp.write_text(text))
    atomic_write(out_dir / "ablations.md", lambda tmp: tmp.write_text(markdown(payload)))
    written = [out_dir / "ablations.json", out_dir / "ablations.md"]
    tmp_dir = Path(tempfile.mkdtemp(dir=out_dir, prefix=".ablations-"))
    try:  # the figure is written beside its target, then renamed over it
        for path in write_figure(figure(payload), tmp_dir / "ablations", width=1200, height=600):
            os.replace(path, out_dir / path.name)
            written.append(out_dir / path.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return written


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    variants = [parse_variant(v) for v in args.variants.split(",") if v.strip()]
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise SystemExit(f"--variants names a run twice: {names}")

    from transformers.utils import logging as hf_logging

    import workbench
    from workbench.core.errors import WorkbenchError
    from workbench.core.hashing import sha256_file
    from workbench.train.pairs import read_pairs

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    def say(msg: str) -> None:
        print(f"... {msg}", file=sys.stderr, flush=True)

    print(
        f"== {BANNER}: {len(variants)} variants x {args.steps} steps x batch {args.batch_size} on "
        f"{args.model}; small-budget ablation, not the paper's 5,000 x 32 ==",
        flush=True,
    )
    train_pairs, digest = read_pairs(args.responses, args.limit or None)
    heldout, heldout_digest = read_pairs(args.heldout, args.heldout_limit)
    from workbench.core.fingerprint import NORMALISATION, normalise

    trained_prompts = {normalise(p.prompt) for p in train_pairs}
    overlap = sum(normalise(p.prompt) in trained_prompts for p in heldout)
    if overlap:
        raise WorkbenchError(
            f"{overlap} held-out prompts also occur in the training pairs",
            "hold out prompts that were not trained on",
        )
    train_responses = [p.response for p in train_pairs]
    key = {
        "heldout_pairs_sha256": heldout_digest,
        "heldout_pairs": len(heldout),
        "train_pairs_sha256": digest,
        "max_new_tokens": args.max_new_tokens,
    }
    outs = [args.work_dir / v.name for v in variants]
    rows = []
    untrained: dict[str, dict[str, float | None]] = {}
    references: dict[str, dict[str, float | None]] = {}
    for v in variants:
        cfg = train_config(args, v)
        out = Path(cfg.out)
        say(f"{v.name}: T={v.num_thought} C={v.num_compress}, losses {v.losses} -> {out}")
        status = train_variant(cfg, outs, digest, args.quiet)
        say(f"{v.name}: {status}; held-out quality on {len(heldout)} pairs")
        report, eval_seconds, cached = evaluate_variant(out, heldout, train_responses, key, say)
        run_config = json.loads((out / "run_config.json").read_text())
        rows.append(
            {
                "name": v.name,
                "num_thought": v.num_thought,
                "num_compress": v.num_compress,
                "losses": v.losses,
                "config": {**cfg.to_dict(), "out": rel(cfg.out), "responses": rel(cfg.responses)},
                "run": {k: run_config.get(k) for k in ("pairs", "micro_batch", "versions", "hardware")},
                "status": status,
                "training": log_summary(out),
                "metrics": metrics_of(report),
                "untrained": metrics_of(report, "untrained tokens"),
                "eval_seconds": eval_seconds,
                "eval_cached": cached,
                "quality": {k: x for k, x in report.items() if k != "examples"},  # no data-set texts
            }
        )
        untrained[f"untrained tokens T{v.num_thought}-C{v.num_compress}"] = rows[-1]["untrained"]
        gen_f1 = {k: f for k, f in report["reconstruction_f1"].items() if k.startswith("generic answer")}
        for name, f1 in gen_f1.items():
            references[name] = {
                "reconstruction_f1": f1,
                "alignment_cosine": None,
                "recall@1": None,
                "mrr": None,
            }
        for name, scores in report["retrieval"].items():
            if name not in ("trained checkpoint", "untrained tokens"):
                references[name] = {"reconstruction_f1": None, "alignment_cosine": None, **scores}
        gc.collect()

    payload = {
        "note": (
            f"{BANNER}: small-budget ablation ({args.steps} steps x batch {args.batch_size} per variant on "
            "CPU); it ranks variants on one backbone and does not reproduce the paper's numbers."
        ),
        "model": args.model,
        "teacher": args.teacher,
        "workbench_version": workbench.__version__,
        "budget": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "warmup_steps": args.warmup_steps,
            "schedule_steps": args.schedule_steps or args.steps,
            "recon_weight": args.recon_weight,
            "align_weight": args.align_weight,
            "max_query_length": args.max_query_length,
            "max_response_length": args.max_response_length,
            "limit": args.limit or None,
            "seed": args.seed,
            "dtype": "float32",
        },
        "responses": {
            "path": rel(args.responses),
            "file_sha256": sha256_file(args.responses),
            "pairs_sha256": digest,
            "pairs": len(train_pairs),
        },
        "heldout": {
            "path": rel(args.heldout),
            "file_sha256": sha256_file(args.heldout),
            "pairs_sha256": heldout_digest,
            "pairs": len(heldout),
            "limit": args.heldout_limit,
            # every variant trains from scratch on --responses: none of these prompts is among them
            "overlap": {
                "overlap": 0,
                "queries": len(heldout),
                "against": "the variants' training prompts",
                "normalisation": NORMALISATION,
            },
        },
        "max_new_tokens": args.max_new_tokens,
        "final_losses": f"unweighted mean of the last {LAST_ROWS} logged training steps",
        "work_dir": rel(args.work_dir),
        "variants": rows,
        "baselines": untrained | references,
        "table": [
            {
                "variant": r["name"],
                "num_thought": r["num_thought"],
                "num_compress": r["num_compress"],
                "recon_weight": r["config"]["recon_weight"],
                "align_weight": r["config"]["align_weight"],
                **r["metrics"],
                "final_recon_loss": r["training"]["final"]["recon_loss"],
                "final_align_loss": r["training"]["final"]["align_loss"],
                "train_seconds": r["training"]["train_seconds"],
            }
            for r in rows
        ],
    }
    bad = [
        r["variant"]
        for r in payload["table"]
        for x in r.values()
        if isinstance(x, float) and not math.isfinite(x)
    ]
    if bad:
        say(f"warning: non-finite numbers in {sorted(set(bad))}")
    written = write_outputs(payload, args.out_dir)
    print(markdown(payload))
    print(f"({BANNER}: {args.steps} steps x batch {args.batch_size} per variant; see the note above.)")
    for path in written:
        print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    from workbench.core.errors import WorkbenchError

    try:
        main()
    except WorkbenchError as err:
        raise SystemExit(f"error: {err}") from None
