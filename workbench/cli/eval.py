"""``workbench eval safety|reasoning|mteb``: evaluation reports (heavy imports inside the commands)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import DEFAULT_BACKBONE, CheckpointOpt, ModelOpt, UntrainedOpt

eval_app = typer.Typer(
    help="Evaluation reports: LLM2Vec-Gen against input-centric baselines on the same data.",
    no_args_is_help=True,
)

OutOpt = Annotated[Path, typer.Option("--out", help="Folder for the JSON, HTML and PNG report.")]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Use only the first N queries (quick runs).")]
SamplesOpt = Annotated[bool, typer.Option("--log-samples", help="Store per-query top-k ids and scores.")]
EncodersOpt = Annotated[
    str, typer.Option("--encoders", help="Comma list of gen, teacher, llm-mean, llm-last.")
]
BatchOpt = Annotated[int, typer.Option(min=1, help="Encoding batch size.")]
DataOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Public data folder (default $WORKBENCH_DATA or ../shared/data)."),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Embedding/answer cache folder (default in $WORKBENCH_CACHE)."),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Recompute every embedding.")]


def _setup(
    model: str,
    checkpoint: Path | None,
    untrained: bool,
    encoders: str,
    batch_size: int,
    cache: Path | None,
    no_cache: bool,
) -> tuple[Any, Any, list[str]]:
    from ..eval.encoders import Encoders, parse_encoders
    from ..store.cache import EmbeddingCache
    from .common import load_model

    names = parse_encoders(encoders)
    gen = load_model(model, checkpoint, untrained)
    store = EmbeddingCache(cache / "embeddings" if cache else None, enabled=not no_cache)
    return gen, Encoders(gen, batch_size=batch_size, cache=store), names


def _finish(kind: str, out: Path, payload: dict[str, Any], tables: dict, figures: dict, enc: Any) -> None:
    from ..report.eval_report import write_report

    payload["embedding_cache"] = {
        "root": str(enc.cache.root),
        "hits": enc.cache.hits,
        "misses": enc.cache.misses,
    }
    written = write_report(out, kind, payload, tables, figures)
    typer.echo(written["markdown"])
    typer.echo(f"\nwrote {written['json']} and {written['html']}")


@eval_app.command()
def safety(
    model: ModelOpt = DEFAULT_BACKBONE,
    checkpoint: CheckpointOpt = None,
    untrained: UntrainedOpt = False,
    out: OutOpt = Path("results"),
    limit: LimitOpt = None,
    log_samples: SamplesOpt = False,
    encoders: EncodersOpt = "gen,teacher,llm-mean,llm-last",
    batch_size: BatchOpt = 16,
    data_dir: DataOpt = None,
    distractors: Annotated[
        Path | None,
        typer.Option(help="Benign passages (.txt, or .jsonl with text/title) instead of the default mix."),
    ] = None,
    max_distractors: Annotated[int, typer.Option(min=0, help="At most this many benign passages.")] = 1000,
    similarity: Annotated[str, typer.Option(help="dot (the paper's) or cosine.")] = "dot",
    refusals: Annotated[
        bool, typer.Option(help="Generate the LLM's answers and split results by refused / answered.")
    ] = True,
    answer_tokens: Annotated[
        int, typer.Option(min=1, help="New tokens per LLM answer (refusal check).")
    ] = 48,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """AdvBench-IR: harmful retrieval (top-k acc / any-harm, k = 1, 5, 20, 100); lower is safer."""
    from ..eval.encoders import llm_answers, run_metadata
    from ..eval.refusals import REFUSAL_PATTERNS
    from ..eval.retrieval import SIMILARITIES
    from ..eval.safety import (
        ADVBENCH_FILE,
        KS,
        QUERY_INSTRUCTION,
        benign_passages,
        evaluate_safety,
        load_advbench,
        read_passage_file,
        refusal_flags,
    )
    from ..report.eval_report import bar_figure
    from ..train.prompts import data_dir as resolve_data

    start = time.perf_counter()
    if similarity not in SIMILARITIES:
        raise typer.BadParameter(f"use one of {', '.join(SIMILARITIES)}", param_hint="--similarity")
    root = resolve_data(data_dir)
    queries, harmful = load_advbench(root / ADVBENCH_FILE, limit)
    benign = (
        read_passage_file(distractors, max_distractors)
        if distractors is not None
        else benign_passages(root, max_distractors)
    )
    gen, enc, names = _setup(model, checkpoint, untrained, encoders, batch_size, cache_dir, no_cache)
    answers = refused = None
    if refusals:
        texts = llm_answers(
            gen,
            list(queries.values()),
            max_new_tokens=answer_tokens,
            cache_root=cache_dir,
            enabled=not no_cache,
        )
        answers = dict(zip(queries, texts, strict=True))
        refused = refusal_flags(answers)
    result = evaluate_safety(
        enc, names, queries, harmful + benign, refused=refused, similarity=similarity, log_samples=log_samples
    )
    n_refused = sum(refused.values()) if refused else None
    payload: dict[str, Any] = {
        "kind": "safety",
        "config": run_metadata(
            gen,
            model,
            checkpoint,
            enc,
            encoders=names,
            limit=limit,
            similarity=similarity,
            data=str(root / ADVBENCH_FILE),
            distractors=str(distractors) if distractors else "default-benign-mix",
            max_distractors=max_distractors,
            answer_max_new_tokens=answer_tokens,
        ),
        "instructions": {
            "gen_query": QUERY_INSTRUCTION,
            "gen_document": "Summarize the following passage:",
            "baselines": None,
        },
        "data": {
            "queries": len(queries),
            "harmful_passages": len(harmful),
            "benign_passages": len(benign),
            "benign_sources": sorted({p.source for p in benign}),
        },
        "refusals": None
        if refused is None
        else {
            "refused": n_refused,
            "answered": len(refused) - n_refused,
            "rate": n_refused / len(refused),
            "patterns": list(REFUSAL_PATTERNS),
            "max_new_tokens": answer_tokens,
        },
        **result,
        "encode_seconds": enc.seconds,
    }
    if log_samples and answers is not None:
        payload["answers"] = {q: {"answer": a, "refused": refused[q]} for q, a in answers.items()}
    payload["wall_time_s"] = time.perf_counter() - start
    cols = ["encoder"] + [f"top_{k}_{m}" for m in ("acc", "any_harm") for k in KS]
    rows = [{"encoder": n, **result["metrics"][n]} for n in names]
    tables = {
        f"AdvBench-IR ({len(queries)} queries, {len(harmful)} harmful + {len(benign)} benign passages, "
        f"{similarity})": (rows, cols)
    }
    if refused is not None:
        split_rows = [
            {"encoder": n, "subset": s, **result["by_refusal"][n][s]}
            for n in names
            for s in ("refused", "answered")
        ]
        tables[f"By the LLM's own behaviour ({n_refused} refused, {len(refused) - n_refused} answered)"] = (
            split_rows,
            ["encoder", "subset", "n"] + [f"top_{k}_any_harm" for k in KS],
        )
    figures = {
        "any-harm": bar_figure(
            "AdvBench-IR: share of queries with any harmful passage in the top k (lower is safer)",
            {n: {f"k={k}": result["metrics"][n][f"top_{k}_any_harm"] for k in KS} for n in names},
            "k",
            "top-k any harm",
        ),
        "acc": bar_figure(
            "AdvBench-IR: share of queries with their own harmful document in the top k",
            {n: {f"k={k}": result["metrics"][n][f"top_{k}_acc"] for k in KS} for n in names},
            "k",
            "top-k acc",
        ),
    }
    if refused is not None and 0 < n_refused < len(refused):
        figures["by-refusal"] = bar_figure(
            "AdvBench-IR: top-k any harm, queries the LLM refuses vs answers",
            {
                n: {
                    f"{s}, k={k}": v[f"top_{k}_any_harm"]
                    for s, v in result["by_refusal"][n].items()
                    for k in (1, 5)
                }
                for n in names
            },
            "the LLM's own answer, k",
            "top-k any harm",
        )
    _finish("safety", out, payload, tables, figures, enc)


@eval_app.command()
def reasoning(
    model: ModelOpt = DEFAULT_BACKBONE,
    checkpoint: CheckpointOpt = None,
    untrained: UntrainedOpt = False,
    out: OutOpt = Path("results"),
    limit: LimitOpt = None,
    log_samples: SamplesOpt = False,
    encoders: EncodersOpt = "gen,teacher,llm-mean,llm-last",
    batch_size: BatchOpt = 16,
    data_dir: DataOpt = None,
    tasks: Annotated[
        str,
        typer.Option(help="Comma list: theoremqa-theorems, gsm8k (offline) and BRIGHT tasks (biology, ...)."),
    ] = "theoremqa-theorems,gsm8k",
    bright_dir: Annotated[
        Path | None, typer.Option(help="Local BRIGHT copy (examples/<task>.jsonl, documents/<task>.jsonl).")
    ] = None,
    similarity: Annotated[str, typer.Option(help="cosine or dot.")] = "cosine",
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """BRIGHT-style reasoning retrieval: nDCG@10, recall@k, MRR per task and encoder."""
    from ..core.errors import WorkbenchError
    from ..eval.encoders import run_metadata
    from ..eval.reasoning import (
        BRIGHT_TASKS,
        OFFLINE_TASKS,
        bright_task,
        evaluate_task,
        gsm8k_task,
        theoremqa_task,
    )
    from ..eval.retrieval import SIMILARITIES
    from ..report.eval_report import bar_figure
    from ..train.prompts import data_dir as resolve_data

    start = time.perf_counter()
    if similarity not in SIMILARITIES:
        raise typer.BadParameter(f"use one of {', '.join(SIMILARITIES)}", param_hint="--similarity")
    wanted = [t.strip() for t in tasks.split(",") if t.strip()]
    bad = [t for t in wanted if t not in OFFLINE_TASKS + BRIGHT_TASKS]
    if bad or not wanted:
        raise WorkbenchError(
            f"unknown task(s) {', '.join(bad) or '(none)'}", f"use {', '.join(OFFLINE_TASKS + BRIGHT_TASKS)}"
        )
    root = resolve_data(data_dir)
    loaders = {
        "theoremqa-theorems": lambda: theoremqa_task(root, limit),
        "gsm8k": lambda: gsm8k_task(root, limit),
    }
    loaded = [loaders[t]() if t in loaders else bright_task(t, bright_dir, limit) for t in wanted]
    gen, enc, names = _setup(model, checkpoint, untrained, encoders, batch_size, cache_dir, no_cache)
    results = {
        t.name: evaluate_task(enc, names, t, similarity=similarity, log_samples=log_samples) for t in loaded
    }
    payload: dict[str, Any] = {
        "kind": "reasoning",
        "config": run_metadata(
            gen,
            model,
            checkpoint,
            enc,
            encoders=names,
            limit=limit,
            similarity=similarity,
            tasks=wanted,
            data=str(root),
            bright_dir=str(bright_dir) if bright_dir else None,
        ),
        "instructions": {
            t.name: {"gen_query": t.instruction, "gen_document": "Summarize the following passage:"}
            for t in loaded
        },
        "data": {t.name: {"queries": len(t.queries), "corpus": len(t.corpus), **t.notes} for t in loaded},
        "metrics": {name: r["metrics"] for name, r in results.items()},
        "samples": {name: r["samples"] for name, r in results.items()} if log_samples else {},
        "encode_seconds": enc.seconds,
    }
    payload["wall_time_s"] = time.perf_counter() - start
    cols = ["task", "encoder", "ndcg@10", "recall@10", "recall@100", "mrr@10", "top1_acc"]
    rows = [{"task": t, "encoder": n, **results[t]["metrics"][n]} for t in results for n in names]
    sizes = ", ".join(f"{t.name}: {len(t.queries)} q / {len(t.corpus)} docs" for t in loaded)
    figures = {
        "ndcg10": bar_figure(
            "Reasoning retrieval: nDCG@10 (higher is better)",
            {n: {t: results[t]["metrics"][n]["ndcg@10"] for t in results} for n in names},
            "task",
            "nDCG@10",
        )
    }
    _finish(
        "reasoning",
        out,
        payload,
        {f"Reasoning retrieval ({sizes}; {similarity})": (rows, cols)},
        figures,
        enc,
    )


@eval_app.command()
def mteb(
    model: ModelOpt = DEFAULT_BACKBONE,
    checkpoint: CheckpointOpt = None,
    untrained: UntrainedOpt = False,
    out: OutOpt = Path("results"),
    limit: LimitOpt = None,
    encoders: EncodersOpt = "gen,teacher,llm-mean,llm-last",
    batch_size: BatchOpt = 16,
    data_dir: DataOpt = None,
    tasks: Annotated[
        str | None, typer.Option(help="Comma list of mteb task names (needs their data).")
    ] = None,
    benchmark: Annotated[str | None, typer.Option(help='An mteb benchmark, e.g. "MTEB(eng, v2)".')] = None,
    lite: Annotated[bool, typer.Option("--lite", help="The paper's lite task set (10 tasks).")] = False,
    offline: Annotated[
        str,
        typer.Option(
            help="Offline custom tasks run through mteb.evaluate (theoremqa-theorems,gsm8k; '' for none)."
        ),
    ] = "theoremqa-theorems,gsm8k",
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """MTEB through mteb.evaluate with the paper's per-task instructions; results in mteb's folder layout."""
    import mteb as mteb_lib

    from ..core.errors import WorkbenchError
    from ..eval.encoders import run_metadata
    from ..eval.mteb_tasks import MtebEncoder, offline_task, resolve_tasks, score_of
    from ..eval.reasoning import OFFLINE_TASKS, gsm8k_task, theoremqa_task
    from ..report.eval_report import bar_figure
    from ..train.prompts import data_dir as resolve_data

    start = time.perf_counter()
    root = resolve_data(data_dir)
    wanted_offline = [t.strip() for t in offline.split(",") if t.strip()]
    bad = [t for t in wanted_offline if t not in OFFLINE_TASKS]
    if bad:
        raise WorkbenchError(f"unknown offline task(s) {', '.join(bad)}", f"use {', '.join(OFFLINE_TASKS)}")
    builders = {"theoremqa-theorems": theoremqa_task, "gsm8k": gsm8k_task}
    task_objs = [offline_task(builders[t](root, limit)) for t in wanted_offline]
    names_given = [t.strip() for t in tasks.split(",")] if tasks else None
    task_objs += resolve_tasks(names_given, benchmark, lite)
    if not task_objs:
        raise WorkbenchError("no task to run", "pass --tasks, --benchmark, --lite or --offline")
    gen, enc, names = _setup(model, checkpoint, untrained, encoders, batch_size, cache_dir, no_cache)
    results_dir = out / "mteb"
    scores: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    used: dict[str, Any] = {}
    for name in names:
        adapter = MtebEncoder(enc, name)
        scores[name] = {}
        for task in task_objs:
            try:
                res = mteb_lib.evaluate(
                    adapter,
                    task,
                    cache=mteb_lib.ResultCache(results_dir),
                    overwrite_strategy="always",
                    encode_kwargs={"batch_size": batch_size},
                )
                scores[name] |= score_of(res)
            except Exception as err:  # mteb data loading fails in many ways offline
                errors[f"{name}/{task.metadata.name}"] = f"{type(err).__name__}: {str(err)[:200]}"
        used[name] = adapter.instructions_used
    if not any(scores.values()):
        first = next(iter(errors.values()), "")
        raise WorkbenchError(
            f"no mteb task ran ({first})", "be online for mteb's own tasks, or use --offline"
        )
    payload: dict[str, Any] = {
        "kind": "mteb",
        "config": run_metadata(
            gen,
            model,
            checkpoint,
            enc,
            encoders=names,
            limit=limit,
            tasks=names_given,
            benchmark=benchmark,
            lite=lite,
            offline=wanted_offline,
            mteb_results=str(results_dir),
        ),
        "instructions": used,
        "metrics": scores,
        "errors": errors,
        "encode_seconds": enc.seconds,
    }
    payload["wall_time_s"] = time.perf_counter() - start
    task_names = sorted({t for s in scores.values() for t in s})
    rows = [{"task": t, **{n: scores[n].get(t, float("nan")) for n in names}} for t in task_names]
    figures = {
        "main-score": bar_figure(
            "MTEB main score per task", {n: scores[n] for n in names}, "task", "main score"
        )
    }
    _finish(
        "mteb",
        out,
        payload,
        {f"MTEB main scores (results in {results_dir})": (rows, ["task", *names])},
        figures,
        enc,
    )
    for key, msg in errors.items():
        typer.echo(f"skipped {key}: {msg}", err=True)
