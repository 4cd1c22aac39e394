"""Embedding-space maps in the style of the paper's Figure 1: data in, figure and numbers out.

A map holds queries (harmful and benign), the frozen LLM's own answers to them, distractors, and
for the safety reading a few refusal texts and compliant harmful-topic texts (the items:
:mod:`workbench.eval.map_items`). Each item is embedded by input-centric encoders (the teacher on
the raw text, the frozen LLM mean-pooled or at its last token) and by LLM2Vec-Gen (queries with
the query instruction, everything else as a document), through the evaluations' own
:class:`~workbench.eval.encoders.Encoders` and cache keys; each space is laid out in 2-D (UMAP, or
PCA for speed) and scored (:mod:`workbench.eval.map_space`). :func:`run_map` is ``workbench map``.
Figures, tables and exports: :mod:`workbench.report.map_figures`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.config import DOCUMENT_INSTRUCTION, QUERY_INSTRUCTION
from ..core.display import Displayable
from ..core.errors import WorkbenchError
from ..core.fingerprint import check_overlap
from ..store.cache import AnswerCache, EmbeddingCache
from .encoders import Encoders, ModelSource, llm_answers, model_identity, resolve_model
from .map_items import (
    BENIGN_SOURCES,
    FILE_ROLES,
    REFUSALS,
    ROLES,
    MapItem,
    default_items,
    limit_queries,
    read_items,
    split_limit,
    topic_matched,
)
from .map_space import best_rank, llm_summary, map_metrics, project, ranks_of, retrieval_metrics
from .precomputed import attach_corpus_embeddings, corpus_config
from .refusals import is_refusal

__all__ = [  # noqa: RUF022 - grouped: this module, then the items and the layout it re-exports
    "ENCODERS",
    "ENCODER_TITLES",
    "EmbeddingMap",
    "add_responses",
    "build_map",
    "check_encoders",
    "embed_items",
    "model_identity",
    "run_map",
    "BENIGN_SOURCES",
    "FILE_ROLES",
    "REFUSALS",
    "ROLES",
    "MapItem",
    "default_items",
    "limit_queries",
    "read_items",
    "split_limit",
    "topic_matched",
    "best_rank",
    "map_metrics",
    "project",
    "ranks_of",
    "retrieval_metrics",
]

ENCODERS = ("teacher", "llm-mean", "llm-last", "llm2vec-gen")
ENCODER_TITLES = {
    "teacher": "teacher ({teacher}) on the raw text",
    "llm-mean": "frozen LLM, mean-pooled",
    "llm-last": "frozen LLM, last token",
    "llm2vec-gen": "LLM2Vec-Gen",
}
EVAL_NAMES = {"llm2vec-gen": "gen"}
"""A map encoder's name in :data:`workbench.eval.encoders.ENCODERS` where it differs."""


@dataclass
class EmbeddingMap(Displayable):
    """Everything a map figure, its numbers and its exports are made from (in a notebook: the
    numbers and the map)."""

    items: list[MapItem]
    encoders: list[str]
    titles: dict[str, str]
    embeddings: dict[str, torch.Tensor]
    coords: dict[str, np.ndarray]
    metrics: dict[str, Any]
    meta: dict[str, Any]
    cache: dict[str, int] = field(default_factory=dict)
    """Set by :func:`run_map`: answers and embeddings reused from the caches and computed."""


def check_encoders(encoders: Sequence[str]) -> list[str]:
    """Validate and de-duplicate encoder names."""
    names = list(dict.fromkeys(e.strip() for e in encoders if e.strip()))
    unknown = [e for e in names if e not in ENCODERS]
    if unknown or not names:
        raise WorkbenchError(
            f"unknown encoder {', '.join(map(repr, unknown))}" if unknown else "no encoder given",
            f"use some of {', '.join(ENCODERS)}",
        )
    return names


def add_responses(
    gen: Any,
    items: list[MapItem],
    *,
    max_new_tokens: int = 64,
    cache: AnswerCache | None = None,
    batch_size: int = 8,
) -> list[MapItem]:
    """Append the LLM's own greedy chat answer to every query (cached), linking the pairs."""
    cache = cache if cache is not None else AnswerCache(enabled=False)
    queries = [i for i, item in enumerate(items) if item.role == "query"]
    todo = [items[i].text for i in queries if items[i].response is None]
    generated = iter(
        llm_answers(
            gen, todo, max_new_tokens=max_new_tokens, cache=cache, batch_size=batch_size, show_progress=None
        )
        if todo
        else []
    )
    out = [MapItem(**asdict(item)) for item in items]
    for i in queries:
        given = out[i].response
        text = given if given is not None else next(generated)
        text = text.strip() or "(empty answer)"
        out[i].pair = len(out)
        out.append(
            MapItem(
                text,
                "response",
                out[i].harmful,
                "given answer" if given else "LLM answer",
                i,
                is_refusal(text),
            )
        )
    return out


def embed_items(
    gen: Any,
    items: Sequence[MapItem],
    encoders: Sequence[str],
    *,
    cache: EmbeddingCache | None = None,
    query_instruction: str = QUERY_INSTRUCTION,
    document_instruction: str = DOCUMENT_INSTRUCTION,
    batch_size: int = 16,
    progress: Callable[[str], None] | None = None,
    corpus_embeddings: Sequence[str | Path] | Encoders = (),
) -> dict[str, torch.Tensor]:
    """``{encoder: [len(items), D]}``; LLM2Vec-Gen encodes queries and all other items apart.

    ``corpus_embeddings``: corpus folders whose rows ``gen`` reuses (or an :class:`Encoders` that
    has them attached, whose counts then tell what was used)."""
    if isinstance(corpus_embeddings, Encoders):
        enc = corpus_embeddings
    else:
        cache = cache if cache is not None else EmbeddingCache(enabled=False)
        enc = Encoders(gen, batch_size=batch_size, cache=cache, show_progress=None)
        attach_corpus_embeddings(enc, corpus_embeddings)
    enc.planned = tuple(EVAL_NAMES.get(n, n) for n in check_encoders(encoders))
    texts = [item.text for item in items]
    groups = (
        ([i for i, item in enumerate(items) if item.role == "query"], query_instruction),
        ([i for i, item in enumerate(items) if item.role != "query"], document_instruction),
    )
    out: dict[str, torch.Tensor] = {}
    for name in check_encoders(encoders):
        if progress:
            progress(f"embedding {len(texts)} texts with {name}")
        encoder = EVAL_NAMES.get(name, name)
        if encoder != "gen":  # input-centric: the raw text, one call for every item
            out[name] = enc.embed(encoder, texts)
            continue
        rows: dict[int, torch.Tensor] = {}
        for idx, instruction in groups:
            if idx:
                emb = enc.embed(encoder, [texts[i] for i in idx], instruction)
                rows |= {i: emb[k] for k, i in enumerate(idx)}
        out[name] = torch.stack([rows[i] for i in range(len(texts))])
    return out


def build_map(
    gen: Any,
    items: list[MapItem],
    *,
    encoders: Sequence[str] = ENCODERS,
    method: str = "umap",
    seed: int = 0,
    max_new_tokens: int = 64,
    query_instruction: str = QUERY_INSTRUCTION,
    cache: EmbeddingCache | None = None,
    answer_cache: AnswerCache | None = None,
    batch_size: int = 16,
    progress: Callable[[str], None] | None = None,
    corpus_embeddings: Sequence[str | Path] = (),
) -> EmbeddingMap:
    """Answer the queries, embed every item with every encoder, lay each space out, score it.

    ``corpus_embeddings``: folders of ``workbench encode --corpus`` whose rows ``gen`` reuses for
    the same texts (see :mod:`workbench.eval.precomputed`); ``meta`` records what each gave."""
    encoders = check_encoders(encoders)
    if method not in ("umap", "pca"):
        raise WorkbenchError(f"unknown layout {method!r}", "use 'umap' or 'pca' (--fast)")
    if not any(item.role == "query" for item in items):
        raise WorkbenchError("the map has no queries", "add at least one query")
    if progress:
        progress(f"answering {sum(i.role == 'query' for i in items)} queries with the frozen LLM")
    items = add_responses(gen, items, max_new_tokens=max_new_tokens, cache=answer_cache)
    enc = Encoders(
        gen,
        batch_size=batch_size,
        cache=cache if cache is not None else EmbeddingCache(enabled=False),
        show_progress=None,
    )
    attach_corpus_embeddings(enc, corpus_embeddings)
    embeddings = embed_items(
        gen,
        items,
        encoders,
        query_instruction=query_instruction,
        progress=progress,
        corpus_embeddings=enc,
    )
    if progress:
        progress(f"laying out {len(items)} points per encoder with {method.upper()}")
    coords = {name: project(emb, method, seed) for name, emb in embeddings.items()}
    teacher = getattr(gen.config, "teacher", "teacher")
    titles = {name: ENCODER_TITLES[name].format(teacher=teacher) for name in encoders}
    metrics = {"encoders": map_metrics(items, embeddings), "llm": llm_summary(items)}
    ident = model_identity(gen)
    meta = {
        "model": ident["backbone"],
        "backbone_id": ident["backbone_id"],
        "checkpoint": ident["checkpoint"],
        "trained": bool(getattr(gen, "trained", False)),
        "teacher": teacher,
        "layout": method,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "query_instruction": query_instruction,
        "document_instruction": DOCUMENT_INSTRUCTION,
        "counts": {role: sum(i.role == role for i in items) for role in ROLES},
        **corpus_config(enc),
    }
    return EmbeddingMap(items, encoders, titles, embeddings, coords, metrics, meta)


def run_map(
    gen: ModelSource,
    *,
    queries: str | Path | None = None,
    data_dir: str | Path | None = None,
    n_harmful: int = 8,
    n_benign: int = 8,
    n_distractors: int = 8,
    limit: int | None = None,
    benign_source: str = "efficientqa",
    encoders: str | Sequence[str] = ENCODERS,
    method: str = "umap",
    seed: int = 0,
    max_new_tokens: int = 64,
    query_instruction: str = QUERY_INSTRUCTION,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    batch_size: int = 16,
    progress: Callable[[str], None] | None = None,
    allow_overlap: bool = False,
    corpus_embeddings: Sequence[str | Path] = (),
) -> EmbeddingMap:
    """``workbench map``: items from ``queries`` (a file) or the public sets, then :func:`build_map`.

    ``limit`` keeps the first N queries of a file, or splits N between harmful and benign for the
    public sets. ``gen`` is the model or a loader, called once the items are read. Answers and
    embeddings are cached under ``cache_dir`` (default: the workbench cache); the map's ``cache``
    says how many were reused and computed. Queries the checkpoint trained on are refused unless
    ``allow_overlap``; ``meta["overlap"]`` records the count (and the figure shows it when not 0).
    """
    names = check_encoders(encoders.split(",") if isinstance(encoders, str) else encoders)
    if queries is not None:
        items = limit_queries(read_items(queries), limit)
    else:
        if limit is not None:
            n_harmful, n_benign = split_limit(limit, n_harmful, n_benign)
        items = default_items(
            data_dir,
            n_harmful=n_harmful,
            n_benign=n_benign,
            n_distractors=n_distractors,
            benign_source=benign_source,
            seed=seed,
        )
    model = resolve_model(gen)
    overlap = check_overlap(
        model, [i.text for i in items if i.role == "query"], allow_overlap=allow_overlap, what="map queries"
    )
    emb_cache = EmbeddingCache(cache_dir / "embeddings" if cache_dir else None, enabled=use_cache)
    ans_cache = AnswerCache(cache_dir / "answers" if cache_dir else None, enabled=use_cache)
    result = build_map(
        model,
        items,
        encoders=names,
        method=method,
        seed=seed,
        max_new_tokens=max_new_tokens,
        query_instruction=query_instruction,
        cache=emb_cache,
        answer_cache=ans_cache,
        batch_size=batch_size,
        progress=progress,
        corpus_embeddings=corpus_embeddings,
    )
    result.meta["overlap"] = overlap
    result.cache = {
        "answers_reused": ans_cache.hits,
        "answers_computed": ans_cache.misses,
        "embeddings_reused": emb_cache.hits,
        "embeddings_computed": emb_cache.misses,
    }
    return result
