"""Where the answer enters the compression tokens: patching, attribution, ablation and steering.

Runs the four interventions of :mod:`workbench.causal` on a shipped checkpoint (by default the Qwen
one, the backbone that refuses) with material no shipped checkpoint trained on, which the run checks:
the harmful/benign twin pairs packaged in ``workbench/data/twins.jsonl`` (written for the workbench)
and NQ-open's EfficientQA test questions (the LLM's own answers to them are generated here).

- patching: each of the first ``--patch-pairs`` harmful requests patched into its benign twin, the
  residual stream at every layer and position group; the heatmap is the mean over the pairs;
- attribution: integrated gradients of each harmful request's embedding toward the refusal;
- ablation: mean ablation of each thought and compression token (and all thought tokens) on
  ``--limit`` held-out questions: retrieval MRR, decoding F1, alignment cosine;
- steering: the harmful-minus-benign vector fitted on half of the first ``--limit`` twin pairs and
  added to the other half's benign requests at several scales.

Writes ``figures/causal/<model>/{patch,attribution,ablation,steering}.{html,png,json}``, the tables
as ``.md`` and ``summary.json`` (sample sizes and headline numbers). Data-set questions are named by
their row (``nq-open-efficientqa#12``) unless ``--full-text``. With small samples the numbers are
hints, not results.

    python analyses/causal.py                                   # qwen2.5-coder-0.5b, --limit 24
    python analyses/causal.py --model smollm2-135m --limit 4 --out /tmp/causal   # a quick check
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "qwen2.5-coder-0.5b"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--limit", type=int, default=24, help="twin pairs and held-out questions used (each)")
    p.add_argument("--patch-pairs", type=int, default=6, help="twin pairs patched (at most --limit)")
    p.add_argument("--attribution-queries", type=int, default=3)
    p.add_argument("--twins", type=Path, default=None, help="twin pairs (default: the packaged ones)")
    p.add_argument("--data-dir", type=Path, default=None, help="default $WORKBENCH_DATA or ../shared/data")
    p.add_argument("--scales", default="0,0.5,1,2,4")
    p.add_argument("--steps", type=int, default=64, help="integration points of the attribution")
    p.add_argument("--max-new-tokens", type=int, default=16, help="decoded tokens (ablation, steering)")
    p.add_argument("--answer-tokens", type=int, default=32, help="length cap of the LLM's own answers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="output folder (default figures/causal/MODEL)")
    p.add_argument("--full-text", action="store_true", help="put data-set questions in the outputs")
    args = p.parse_args(argv)
    if args.limit < 2:
        p.error("--limit must be at least 2")
    return args


def write_json(path: Path, data: dict) -> None:
    from workbench.store.atomic import atomic_write

    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def mean_patch(results: list) -> object:
    """One :class:`PatchResult` whose matrices are the means over ``results`` (same layers, groups)."""

    def mean(name: str) -> list[list[float]]:
        grids = [getattr(r, name) for r in results]
        return [
            [round(sum(g[i][j] for g in grids) / len(grids), 6) for j in range(len(grids[0][0]))]
            for i in range(len(grids[0]))
        ]

    n = len(results)
    baseline = {k: round(sum(r.baseline[k] for r in results) / n, 6) for k in results[0].baseline}
    return replace(
        results[0],
        source=f"harmful requests (mean of {n})",
        target=f"their benign twins (mean of {n})",
        cos_source=mean("cos_source"),
        cos_refusal=mean("cos_refusal"),
        restored=mean("restored"),
        baseline=baseline,
        decoded=None,
        decoded_baseline=None,
    )


def heldout_questions(data: Path, limit: int, seed: int) -> list[tuple[str, str]]:
    """``limit`` seeded NQ-open EfficientQA test questions as ``(id, text)``."""
    from workbench.store.textio import read_jsonl

    rows = read_jsonl(data / "nq-open" / "NQ-open.efficientqa.test.1.1.jsonl")
    index = sorted(random.Random(seed).sample(range(len(rows)), min(limit, len(rows))))
    return [(f"nq-open-efficientqa#{i}", str(rows[i]["question"])) for i in index]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from rich.console import Console
    from transformers.utils import logging as hf_logging

    import workbench
    from workbench.causal.ablation import ablate
    from workbench.causal.attribution import attribute
    from workbench.causal.patching import patch
    from workbench.causal.sites import parse_floats
    from workbench.causal.steering import packaged_twins, read_twins, steer
    from workbench.core.errors import WorkbenchError
    from workbench.core.fingerprint import check_overlap
    from workbench.report.causal_plot import (
        ablation_chart,
        attribution_figure,
        attribution_html,
        completeness_line,
        patch_heatmap,
        steering_chart,
    )
    from workbench.report.figures import write_figure
    from workbench.store.atomic import atomic_write
    from workbench.train.prompts import data_dir

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    console = Console(highlight=False)
    say = lambda msg: console.print(f"[dim]... {msg}[/]")  # noqa: E731
    out = args.out or ROOT / "figures" / "causal" / args.model
    out.mkdir(parents=True, exist_ok=True)
    try:
        gen = workbench.load(args.model)
        if not gen.trained:
            raise WorkbenchError(f"{args.model} has no trained checkpoint", "use a backbone that ships one")
        twins = read_twins(args.twins or packaged_twins())[: args.limit]
        check_overlap(gen, [t for tw in twins for t in (tw.harmful, tw.benign)], what="twin texts")
        questions = heldout_questions(data_dir(args.data_dir), args.limit, args.seed)
        summary: dict = {
            "model": args.model,
            "checkpoint_trained": True,
            "twin_pairs": len(twins),
            "heldout_questions": len(questions),
            "seed": args.seed,
        }

        # 1. patching: harmful into benign, averaged over pairs
        pairs = twins[: max(1, min(args.patch_pairs, len(twins)))]
        results = []
        for i, twin in enumerate(pairs, 1):
            say(f"patching pair {i}/{len(pairs)}")
            results.append(patch(gen, twin.harmful, twin.benign))
        mean = mean_patch(results)
        write_json(
            out / "patch.json",
            {"pairs": len(results), "mean": mean.to_dict(), "per_pair": [r.to_dict() for r in results]},
        )
        write_figure(
            patch_heatmap(mean), out / "patch", width=1000, height=max(400, 20 * len(mean.layers) + 180)
        )
        best = max(
            (
                (layer, g, mean.cos_refusal[i][j])
                for i, layer in enumerate(mean.layers)
                for j, g in enumerate(mean.groups)
            ),
            key=lambda cell: cell[2],
        )
        summary["patching"] = {
            "pairs": len(results),
            "baseline": mean.baseline,
            "highest_refusal_cosine": {"layer": best[0], "group": best[1], "cosine": best[2]},
        }

        # 2. attribution toward the refusal
        attributions = []
        for i, twin in enumerate(twins[: args.attribution_queries]):
            say(f"attribution {i + 1}/{min(args.attribution_queries, len(twins))}")
            a = attribute(gen, twin.harmful, direction="refusal", steps=args.steps)
            attributions.append(a)
            page = attribution_html(a)
            atomic_write(
                out / f"attribution-{i + 1}.html",
                lambda tmp, page=page: tmp.write_text(page, encoding="utf-8"),
            )
        write_json(out / "attribution.json", {"queries": [a.to_dict() for a in attributions]})
        if attributions:
            write_figure(attribution_figure(attributions[0]), out / "attribution", width=900, height=450)
            for a in attributions:
                console.print(completeness_line(a))
        summary["attribution"] = {
            "queries": len(attributions),
            "max_relative_delta": max((a.relative_delta() for a in attributions), default=None),
        }

        # 3. ablation on held-out questions and the LLM's own answers
        say(f"the LLM answers {len(questions)} held-out questions")
        replies = gen.answer([q for _, q in questions], max_new_tokens=args.answer_tokens)
        answered = zip(questions, replies, strict=True)
        kept = [(q, a) for q, a in answered if a.strip()]  # an empty answer cannot be retrieved
        questions, answers = [q for q, _ in kept], [a for _, a in kept]
        texts = [q for _, q in questions]
        report = ablate(
            gen, texts, answers, mode="mean", max_new_tokens=args.max_new_tokens, seed=args.seed, progress=say
        )
        if not args.full_text:
            names = {q: qid for qid, q in questions}
            report.examples = [{"prompt": names[e["prompt"]]} for e in report.examples]
        write_json(out / "ablation.json", report.to_dict())
        (out / "ablation.md").write_text(report.markdown() + "\n", encoding="utf-8")
        write_figure(ablation_chart(report), out / "ablation", width=1100, height=450)
        console.print(report.markdown(), markup=False)
        worst = min(report.rows[1:], key=lambda r: r["delta_mrr"])
        summary["ablation"] = {
            "heldout": report.heldout,
            "mode": report.mode,
            "unablated": {k: report.rows[0][k] for k in ("mrr", "f1", "alignment_cosine")},
            "largest_mrr_drop": {"target": worst["target"], "delta_mrr": worst["delta_mrr"]},
        }

        # 4. steering
        steering = steer(
            gen, twins, scales=parse_floats(args.scales, "scales"), max_new_tokens=args.max_new_tokens
        )
        write_json(out / "steering.json", steering.to_dict())
        (out / "steering.md").write_text(steering.markdown() + "\n", encoding="utf-8")
        write_figure(steering_chart(steering), out / "steering", width=900, height=450)
        console.print(steering.markdown(), markup=False)
        summary["steering"] = {
            "fit_pairs": steering.fit_pairs,
            "heldout_pairs": steering.heldout_pairs,
            "rows": steering.rows,
            "reference": steering.reference,
        }
    except WorkbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    write_json(out / "summary.json", summary)
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
