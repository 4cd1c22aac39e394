"""Reasoning-intensive retrieval in the style of BRIGHT: nDCG@10 (plus recall@k and MRR).

Tasks: BRIGHT itself (``xlangai/bright`` on the Hugging Face hub when online, or a local copy with
``examples/<task>.jsonl`` and ``documents/<task>.jsonl``), and two offline tasks built from
``../shared/data``: ``theoremqa-theorems`` (query = a TheoremQA question, corpus = the 354 theorem
descriptions, relevant = its theorem, names matched case-insensitively) and ``gsm8k``
(question → its own worked solution). Queries get the paper's per-task "generate ..." instruction;
documents get "Summarize the following passage:" (LLM2Vec-Gen only; the baselines see raw text).
:func:`run_reasoning` is ``workbench eval reasoning``: the tasks, every encoder's metrics, the report.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.config import DOCUMENT_INSTRUCTION
from ..core.errors import WorkbenchError
from ..core.fingerprint import check_overlap, overlap_note, without_training_prompts
from ..core.paths import require_file
from ..store.textio import read_utf8
from ..train.prompts import data_dir as resolve_data
from .encoders import (
    ENCODERS,
    Encoders,
    ModelSource,
    comma_list,
    open_encoders,
    parse_encoders,
    resolve_model,
    run_metadata,
)
from .precomputed import attach_corpus_embeddings, corpus_config
from .results import BarChart, EvalReport, Table
from .retrieval import check_similarity, per_query_scores, retrieve
from .stats import COMPARISON_COLUMNS, comparison_rows, comparisons, intervals

KS = (1, 5, 10, 100)
BRIGHT_TASKS = (
    "biology",
    "earth_science",
    "economics",
    "psychology",
    "robotics",
    "stackoverflow",
    "sustainable_living",
    "leetcode",
    "pony",
    "aops",
    "theoremqa_theorems",
    "theoremqa_questions",
)
_STACKEXCHANGE = "Given a {task} post, generate relevant passages that help answer the post:"
INSTRUCTIONS: dict[str, str] = {
    **{t: _STACKEXCHANGE.format(task=t.replace("_", " ")) for t in BRIGHT_TASKS[:7]},
    "leetcode": "Given a coding problem, generate relevant examples that help answer the problem:",
    "pony": "Given a question about pony program language, generate relevant passages that help answer "
    "the question:",
    "aops": "Given a Math problem, generate relevant examples that help answer the problem:",
    "theoremqa_questions": "Given a Math problem, generate relevant examples that help answer the problem:",
    "theoremqa_theorems": "Given a Math problem, generate relevant theorems that help answer the problem:",
    "theoremqa-theorems": "Given a Math problem, generate relevant theorems that help answer the problem:",
    "gsm8k": "Given a math word problem, generate a worked solution that answers the problem:",
}
OFFLINE_TASKS = ("theoremqa-theorems", "gsm8k")
HEADLINE = ("ndcg@10", "recall@10", "mrr@10")
"""Metrics that get a bootstrap interval and paired comparisons in a report."""


@dataclass
class RetrievalTask:
    """Queries, corpus and relevance judgements of one retrieval task."""

    name: str
    queries: dict[str, str]
    corpus: dict[str, str]
    qrels: dict[str, dict[str, int]]
    instruction: str
    excluded: dict[str, set[str]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def subset(self, qids: Sequence[str]) -> RetrievalTask:
        """Only these queries; the corpus too when each query brings its own documents (GSM8K)."""
        corpus = self.corpus
        if self.notes.get("corpus_follows_queries"):
            keep = {d for q in qids for d in self.qrels[q]}
            corpus = {d: t for d, t in self.corpus.items() if d in keep}
        return RetrievalTask(
            self.name,
            {q: self.queries[q] for q in qids},
            corpus,
            {q: self.qrels[q] for q in qids},
            self.instruction,
            {q: self.excluded[q] for q in qids if q in self.excluded},
            dict(self.notes),
        ).check()

    def check(self) -> RetrievalTask:
        if not self.corpus:
            raise WorkbenchError(f"task {self.name} has an empty corpus", "check its document file")
        if not self.queries:
            raise WorkbenchError(f"task {self.name} has no queries", "check its query file")
        return self


def _json(path: Path, what: str) -> Any:
    require_file(path, f"{what} file", "pass --data-dir (or set $WORKBENCH_DATA)")
    try:
        return json.loads(read_utf8(path, what))
    except json.JSONDecodeError as err:
        raise WorkbenchError(
            f"{path} is not JSON ({err.msg}, line {err.lineno})", "use the original file"
        ) from err


def theoremqa_task(root: Path, limit: int | None = None) -> RetrievalTask:
    """TheoremQA questions → theorem descriptions (BRIGHT's TheoremQA-theorems, built offline)."""
    theorems = _json(root / "theoremqa" / "all_theorems.json", "TheoremQA theorem")
    questions = _json(root / "theoremqa" / "theoremqa_test.json", "TheoremQA question")
    if not isinstance(theorems, dict) or not isinstance(questions, list):
        raise WorkbenchError(
            "the TheoremQA files have the wrong shape", "use all_theorems.json and theoremqa_test.json"
        )
    by_name = {name.lower().strip(): f"t{i}" for i, name in enumerate(theorems)}
    corpus = {f"t{i}": f"{name}: {text}" for i, (name, text) in enumerate(theorems.items())}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    unmatched = 0
    for n, row in enumerate(questions):
        if not isinstance(row, dict) or not isinstance(row.get("Question"), str):
            raise WorkbenchError(f"TheoremQA question {n} lacks a Question field", "use theoremqa_test.json")
        doc = by_name.get(str(row.get("theorem", "")).lower().strip())
        if doc is None:
            unmatched += 1
            continue
        qid = str(row.get("id", n))
        queries[qid], qrels[qid] = row["Question"], {doc: 1}
    kept = list(queries)[:limit]
    return RetrievalTask(
        "theoremqa-theorems",
        {q: queries[q] for q in kept},
        corpus,
        {q: qrels[q] for q in kept},
        INSTRUCTIONS["theoremqa-theorems"],
        notes={"questions": len(questions), "unmatched_theorems": unmatched, "corpus": len(corpus)},
    ).check()


def gsm8k_task(root: Path, limit: int | None = None) -> RetrievalTask:
    """GSM8K question → its own worked solution; the corpus is the solutions of the kept questions.

    GSM8K questions are also training prompts: :func:`run_reasoning` leaves out those the model
    trained on before it applies ``limit`` (the task is marked ``drop_training_prompts``).
    """
    path = root / "gsm8k" / "train.jsonl"
    require_file(path, "GSM8K file", "pass --data-dir (or set $WORKBENCH_DATA)")
    queries, corpus, qrels = {}, {}, {}
    for n, line in enumerate(read_utf8(path, "GSM8K").splitlines()[:limit]):
        try:
            row = json.loads(line)
            question, answer = row["question"], row["answer"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise WorkbenchError(
                f"{path} line {n + 1} lacks question and answer", "use GSM8K's train.jsonl"
            ) from err
        solution = " ".join(re.sub(r"<<[^>]*>>", "", answer).split())
        queries[f"g{n}"], corpus[f"s{n}"], qrels[f"g{n}"] = question, solution, {f"s{n}": 1}
    notes = {"corpus_follows_queries": True, "drop_training_prompts": True}
    return RetrievalTask("gsm8k", queries, corpus, qrels, INSTRUCTIONS["gsm8k"], notes=notes).check()


def bright_task(task: str, local: Path | None = None, limit: int | None = None) -> RetrievalTask:
    """A BRIGHT task from a local copy or from the hub (needs ``datasets`` and a network)."""
    if task not in BRIGHT_TASKS:
        raise WorkbenchError(f"unknown BRIGHT task {task!r}", f"use one of {', '.join(BRIGHT_TASKS)}")
    if local is not None:
        examples = [
            json.loads(x) for x in read_utf8(local / "examples" / f"{task}.jsonl", "BRIGHT").splitlines() if x
        ]
        documents = [
            json.loads(x)
            for x in read_utf8(local / "documents" / f"{task}.jsonl", "BRIGHT").splitlines()
            if x
        ]
    else:
        try:
            import datasets

            examples = list(datasets.load_dataset("xlangai/bright", "examples", split=task))
            documents = list(datasets.load_dataset("xlangai/bright", "documents", split=task))
        except Exception as err:  # offline, hub and network errors come in many types
            raise WorkbenchError(
                f"could not load BRIGHT {task} from the hub ({type(err).__name__})",
                "be online, or pass a local copy with --bright-dir",
            ) from err
    try:
        corpus = {str(d["id"]): str(d["content"]) for d in documents}
        rows = examples[:limit]
        queries = {str(r["id"]): str(r["query"]) for r in rows}
        qrels = {str(r["id"]): {str(g): 1 for g in r["gold_ids"]} for r in rows}
        excluded = {str(r["id"]): {str(x) for x in r.get("excluded_ids") or [] if x != "N/A"} for r in rows}
    except (KeyError, TypeError) as err:
        raise WorkbenchError(
            f"BRIGHT {task} rows lack id/query/gold_ids or id/content", "use BRIGHT's files"
        ) from err
    return RetrievalTask(task, queries, corpus, qrels, INSTRUCTIONS[task], excluded).check()


def evaluate_task(
    encoders: Encoders,
    names: Sequence[str],
    task: RetrievalTask,
    *,
    similarity: str = "cosine",
    ks: Sequence[int] = KS,
    log_samples: bool = False,
) -> dict[str, Any]:
    """Metrics per encoder on one task (LLM2Vec-Gen with instructions, baselines on raw text)."""
    qids, dids = list(task.queries), list(task.corpus)
    out: dict[str, Any] = {"metrics": {}, "samples": {}}
    per_query: dict[str, dict[str, list[float]]] = {}
    for name in names:
        q = encoders.embed(name, list(task.queries.values()), task.instruction if name == "gen" else None)
        d = encoders.embed(name, list(task.corpus.values()), DOCUMENT_INSTRUCTION if name == "gen" else None)
        run = retrieve(q, d, qids, dids, k=max(ks), similarity=similarity, excluded=task.excluded)
        per_query[name] = per_query_scores(run, task.qrels, ks)
        out["metrics"][name] = {m: sum(v) / len(v) for m, v in per_query[name].items()}
        if log_samples:
            out["samples"][name] = {i: [[d, round(s, 5)] for d, s in run[i][:10]] for i in qids}
    out["intervals"] = {n: intervals(per_query[n], HEADLINE) for n in names}
    out["comparisons"] = comparisons(per_query, HEADLINE)
    return out


def task_limit(limit: int | Mapping[str, int | None] | None, task: str) -> int | None:
    """``limit`` for one task: the same for all, or per task name (absent: no limit)."""
    return limit.get(task) if isinstance(limit, Mapping) else limit


def load_tasks(
    tasks: str | Sequence[str],
    root: Path,
    limit: int | Mapping[str, int | None] | None = None,
    bright_dir: Path | None = None,
) -> list[RetrievalTask]:
    """Tasks by name: :data:`OFFLINE_TASKS` from ``root``, BRIGHT's from ``bright_dir`` or the hub."""
    wanted = comma_list(tasks)
    bad = [t for t in wanted if t not in OFFLINE_TASKS + BRIGHT_TASKS]
    if bad or not wanted:
        raise WorkbenchError(
            f"unknown task(s) {', '.join(bad) or '(none)'}", f"use {', '.join(OFFLINE_TASKS + BRIGHT_TASKS)}"
        )
    loaders = {
        "theoremqa-theorems": lambda: theoremqa_task(root, task_limit(limit, "theoremqa-theorems")),
        "gsm8k": lambda: gsm8k_task(root),  # limited after the training prompts are left out
    }
    return [
        loaders[t]() if t in loaders else bright_task(t, bright_dir, task_limit(limit, t)) for t in wanted
    ]


def held_out_task(
    model: Any, task: RetrievalTask, limit: int | None, allow_overlap: bool
) -> tuple[RetrievalTask, dict[str, Any]]:
    """``task`` without training prompts where it drops them (GSM8K), else checked for overlap."""
    qids = list(task.queries)
    if task.notes.get("drop_training_prompts"):
        keep = without_training_prompts(model, [task.queries[q] for q in qids])
        chosen = [qids[i] for i in keep][:limit]
        task = task.subset(chosen)
        task.notes["left_out_training_prompts"] = len(qids) - len(keep)
    record = check_overlap(
        model, list(task.queries.values()), allow_overlap=allow_overlap, what=f"{task.name} queries"
    )
    return task, record


def run_reasoning(
    gen: ModelSource,
    *,
    model_name: str | None = None,
    checkpoint: Path | None = None,
    encoders: str | Sequence[str] = ENCODERS,
    tasks: str | Sequence[str] = OFFLINE_TASKS,
    limit: int | Mapping[str, int | None] | None = None,
    log_samples: bool = False,
    batch_size: int = 16,
    data_dir: str | Path | None = None,
    bright_dir: Path | None = None,
    similarity: str = "cosine",
    cache_dir: Path | None = None,
    use_cache: bool = True,
    corpus_embeddings: Sequence[str | Path] = (),
    allow_overlap: bool = False,
) -> EvalReport:
    """nDCG@10, recall@10/100, MRR@10 and top-1 accuracy per task and encoder.

    ``gen`` is the model or a loader (called once the tasks are read); ``model_name`` and
    ``checkpoint`` are recorded in the report's ``config``; ``limit`` is one for every task or a
    mapping of task name to limit (``{"gsm8k": 200}``). Queries the checkpoint trained on are
    refused unless ``allow_overlap`` (GSM8K's are left out instead, before ``limit``); the report
    records each task's overlap.
    """
    start = time.perf_counter()
    check_similarity(similarity)
    root = resolve_data(data_dir)
    loaded = load_tasks(tasks, root, limit, bright_dir)
    names = parse_encoders(encoders)
    model = resolve_model(gen)
    overlap: dict[str, Any] = {}
    for i, task in enumerate(loaded):
        loaded[i], overlap[task.name] = held_out_task(
            model, task, task_limit(limit, task.name), allow_overlap
        )
    enc = open_encoders(model, batch_size=batch_size, cache_dir=cache_dir, use_cache=use_cache)
    attach_corpus_embeddings(enc, corpus_embeddings)
    enc.planned = tuple(names)
    results = {
        t.name: evaluate_task(enc, names, t, similarity=similarity, log_samples=log_samples) for t in loaded
    }
    payload: dict[str, Any] = {
        "kind": "reasoning",
        "config": run_metadata(
            model,
            model_name or str(model.backbone.info.name),
            checkpoint,
            enc,
            **corpus_config(enc),
            encoders=names,
            limit=limit,
            similarity=similarity,
            tasks=comma_list(tasks),
            data=str(root),
            bright_dir=str(bright_dir) if bright_dir else None,
        ),
        "instructions": {
            t.name: {"gen_query": t.instruction, "gen_document": DOCUMENT_INSTRUCTION} for t in loaded
        },
        "data": {t.name: {"queries": len(t.queries), "corpus": len(t.corpus), **t.notes} for t in loaded},
        "overlap": overlap,
        "metrics": {name: r["metrics"] for name, r in results.items()},
        "intervals": {name: r["intervals"] for name, r in results.items()},
        "comparisons": {name: r["comparisons"] for name, r in results.items()},
        "samples": {name: r["samples"] for name, r in results.items()} if log_samples else {},
        "encode_seconds": enc.seconds,
    }
    payload["wall_time_s"] = time.perf_counter() - start
    payload["embedding_cache"] = enc.cache_summary()
    cols = ["task", "encoder", "ndcg@10", "recall@10", "recall@100", "mrr@10", "top1_acc"]
    rows = [{"task": t, "encoder": n, **results[t]["metrics"][n]} for t in results for n in names]
    sizes = ", ".join(f"{t.name}: {len(t.queries)} q / {len(t.corpus)} docs" for t in loaded)
    chart = BarChart(
        "Reasoning retrieval: nDCG@10 (higher is better)",
        {n: {t: results[t]["metrics"][n]["ndcg@10"] for t in results} for n in names},
        "task",
        "nDCG@10",
    )
    tables = {f"Reasoning retrieval ({sizes}; {similarity})": Table(rows, cols)}
    paired = [r for t in results for r in comparison_rows(results[t]["comparisons"], HEADLINE, task=t)]
    if paired:
        tables["LLM2Vec-Gen against each baseline (paired bootstrap over queries)"] = Table(
            paired, ["task", *COMPARISON_COLUMNS]
        )
    notes = [f"{t}: {n}" for t, rec in overlap.items() if (n := overlap_note(rec))]
    if notes:
        chart.title += f" [warning: {'; '.join(notes)}]"
    return EvalReport("reasoning", payload, tables, {"ndcg10": chart})
