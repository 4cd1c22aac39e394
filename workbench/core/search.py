"""Rank texts by an LLM2Vec-Gen model's cosine similarity: each query against documents (or the queries).

What ``workbench encode`` prints, as a library call: ``search(gen, queries, documents).to_dict()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .config import DOCUMENT_INSTRUCTION, QUERY_INSTRUCTION
from .inputs import check_texts


@dataclass
class Ranking:
    """The embeddings of a search and, per query, its ``top_k`` best texts."""

    model: str
    trained: bool
    queries: list[str]
    query_embeddings: torch.Tensor
    document_embeddings: torch.Tensor | None
    hits: list[list[dict[str, Any]]] = field(default_factory=list)
    """Per query, best first: ``{"rank", "index", "score", "text"}`` (text of a document, or a query)."""

    @property
    def dim(self) -> int:
        return int(self.query_embeddings.shape[1])

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``workbench encode --json``."""
        return {
            "model": self.model,
            "trained": self.trained,
            "dim": self.dim,
            "queries": [{"query": q, "results": h} for q, h in zip(self.queries, self.hits, strict=True)],
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        """The embeddings by role (``queries``, and ``documents`` when there were some), for safetensors."""
        out = {"queries": self.query_embeddings.contiguous()}
        if self.document_embeddings is not None:
            out["documents"] = self.document_embeddings.contiguous()
        return out


def top_hits(similarities: torch.Tensor, texts: Sequence[str], top_k: int) -> list[list[dict[str, Any]]]:
    """Per row of ``similarities`` ``[Q, len(texts)]``, its ``top_k`` columns as ranked rows, best first."""
    k = min(top_k, len(texts))
    hits = []
    for row in similarities:
        scores, idx = row.topk(k)
        hits.append(
            [
                {"rank": r + 1, "index": int(j), "score": round(float(s), 6), "text": texts[int(j)]}
                for r, (s, j) in enumerate(zip(scores, idx, strict=True))
            ]
        )
    return hits


def search(
    gen: Any,
    queries: Sequence[str],
    documents: Sequence[str] | None = None,
    *,
    top_k: int = 5,
    instruction: str | None = QUERY_INSTRUCTION,
    document_instruction: str | None = DOCUMENT_INSTRUCTION,
    batch_size: int = 16,
) -> Ranking:
    """Embed ``queries`` (and ``documents``) with ``gen`` and rank, for each query, the documents by
    cosine similarity; without documents each query ranks the queries. ``None`` instructions: raw text.
    """
    queries = check_texts(list(queries))
    q = gen.encode_queries(queries, instruction=instruction, batch_size=batch_size)
    d = None
    if documents:
        d = gen.encode_documents(list(documents), instruction=document_instruction, batch_size=batch_size)
    texts = list(documents) if d is not None else queries
    hits = top_hits(gen.similarity(q, q if d is None else d), texts, top_k)
    return Ranking(gen.backbone.info.name, bool(gen.trained), queries, q, d, hits)
