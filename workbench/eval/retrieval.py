"""Dense retrieval and its metrics (nDCG@k, recall@k, MRR, top-k accuracy) in plain torch.

A *run* maps each query id to its ranked ``[(doc_id, score), ...]``; *qrels* map each query id to
``{doc_id: relevance}`` (relevance > 0 counts as relevant; nDCG uses the relevance as the gain,
like ``trec_eval``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from ..core.errors import WorkbenchError

Run = dict[str, list[tuple[str, float]]]
Qrels = Mapping[str, Mapping[str, float]]
SIMILARITIES = ("dot", "cosine")


def check_similarity(similarity: str) -> str:
    """``similarity`` if it is one of :data:`SIMILARITIES`, else a one-line error."""
    if similarity not in SIMILARITIES:
        raise WorkbenchError(f"unknown similarity {similarity!r}", f"use one of {', '.join(SIMILARITIES)}")
    return similarity


def scores(queries: torch.Tensor, documents: torch.Tensor, similarity: str = "cosine") -> torch.Tensor:
    """Query × document score matrix: raw dot product or cosine."""
    check_similarity(similarity)
    q, d = queries.float(), documents.float()
    if similarity == "cosine":
        q, d = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(d, dim=-1)
    return q @ d.T


def retrieve(
    queries: torch.Tensor,
    documents: torch.Tensor,
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    *,
    k: int = 100,
    similarity: str = "cosine",
    excluded: Mapping[str, set[str]] | None = None,
    chunk: int = 256,
) -> Run:
    """Top-``k`` documents per query, best first; ``excluded`` ids never appear in a query's list."""
    if len(doc_ids) == 0:
        raise WorkbenchError("the corpus is empty", "give at least one document")
    if len(queries) != len(query_ids) or len(documents) != len(doc_ids):
        raise WorkbenchError("ids and embeddings differ in number", "pass one id per embedding")
    position = {d: i for i, d in enumerate(doc_ids)}
    run: Run = {}
    for start in range(0, len(query_ids), chunk):
        block = scores(queries[start : start + chunk], documents, similarity)
        for row, qid in enumerate(query_ids[start : start + chunk]):
            s = block[row]
            for doc in (excluded or {}).get(qid, ()):
                if doc in position:
                    s[position[doc]] = -math.inf
            top = torch.topk(s, min(k, len(doc_ids)))
            run[qid] = [
                (doc_ids[i], float(v))
                for v, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
                if v != -math.inf
            ]
    return run


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, float], k: int) -> float:
    """Normalised discounted cumulative gain of one ranking (gain = relevance, log2 discount)."""
    dcg = sum(float(relevant.get(d, 0)) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((float(v) for v in relevant.values() if v > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, float], k: int) -> float:
    """Share of the relevant documents found in the top ``k``."""
    positives = {d for d, v in relevant.items() if v > 0}
    return len(positives & set(ranked[:k])) / len(positives) if positives else 0.0


def reciprocal_rank(ranked: Sequence[str], relevant: Mapping[str, float], k: int | None = None) -> float:
    """1 / rank of the first relevant document (0 if none in the top ``k``)."""
    for i, d in enumerate(ranked[:k]):
        if relevant.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def hit_at_k(ranked: Sequence[str], relevant: set[str] | Mapping[str, float], k: int) -> float:
    """1.0 if any relevant document is in the top ``k``."""
    keys = {d for d, v in relevant.items() if v > 0} if isinstance(relevant, Mapping) else set(relevant)
    return float(bool(keys & set(ranked[:k])))


def per_query_scores(run: Run, qrels: Qrels, ks: Sequence[int] = (1, 5, 10, 100)) -> dict[str, list[float]]:
    """nDCG@k, recall@k, top-k accuracy, MRR@10 and MRR of each query with a relevant document."""
    judged = [q for q, rel in qrels.items() if any(v > 0 for v in rel.values())]
    if not judged:
        raise WorkbenchError("no query has a relevant document", "check the relevance judgements")
    ranked = {q: [d for d, _ in run.get(q, [])] for q in judged}
    out: dict[str, list[float]] = {}
    for k in ks:
        out[f"ndcg@{k}"] = [ndcg_at_k(ranked[q], qrels[q], k) for q in judged]
        out[f"recall@{k}"] = [recall_at_k(ranked[q], qrels[q], k) for q in judged]
        out[f"top{k}_acc"] = [float(hit_at_k(ranked[q], qrels[q], k)) for q in judged]
    out["mrr@10"] = [reciprocal_rank(ranked[q], qrels[q], 10) for q in judged]
    out["mrr"] = [reciprocal_rank(ranked[q], qrels[q]) for q in judged]
    return out


def evaluate_run(run: Run, qrels: Qrels, ks: Sequence[int] = (1, 5, 10, 100)) -> dict[str, float]:
    """Mean nDCG@k, recall@k, MRR@10 and top-k accuracy over the queries with a relevant document."""
    return {name: sum(v) / len(v) for name, v in per_query_scores(run, qrels, ks).items()}
