"""Laying a map out in 2-D and scoring it: does each query find its own answer, refusal or compliance?"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..core.errors import WorkbenchError
from .map_items import MapItem

log = logging.getLogger("workbench")


def project(embeddings: torch.Tensor, method: str = "umap", seed: int = 0) -> np.ndarray:
    """2-D coordinates of unit-normalised embeddings: UMAP (cosine) or PCA; deterministic per seed."""
    x = F.normalize(embeddings.double(), dim=-1).numpy()
    n = len(x)
    if method == "pca" or n < 6:
        if method != "pca":
            log.warning("only %d points: PCA instead of UMAP", n)
        centred = x - x.mean(axis=0, keepdims=True)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        comps = vt[:2]
        signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
        coords = centred @ (comps * np.where(signs == 0, 1.0, signs)[:, None]).T
        if coords.shape[1] < 2:
            coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        return coords.astype(np.float32)
    if method != "umap":
        raise WorkbenchError(f"unknown layout {method!r}", "use 'umap' or 'pca'")
    import umap  # lazy: numba start-up costs seconds

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=max(2, min(10, n - 1)),
            min_dist=0.3,
            metric="cosine",
            init="pca",
            random_state=seed,
            n_jobs=1,
        )
        coords = reducer.fit_transform(x.astype(np.float32))
    return np.asarray(coords, dtype=np.float32)



def ranks_of(sims: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of candidate ``targets[i]`` in row ``i`` of ``sims`` (ties count in its favour)."""
    own = sims.gather(1, targets.view(-1, 1))
    return (sims > own).sum(dim=1) + 1


def retrieval_metrics(sims: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Recall@1 and MRR of each query (row) finding its own candidate ``targets[i]``."""
    ranks = ranks_of(sims, targets).float()
    return {"recall@1": float((ranks == 1).float().mean()), "mrr": float((1.0 / ranks).mean())}


def best_rank(sims: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row, the 1-based rank among all candidates of the best-scoring candidate in ``mask``."""
    masked = sims.masked_fill(~mask.view(1, -1), float("-inf"))
    return ranks_of(sims, masked.argmax(dim=1))


def map_metrics(items: Sequence[MapItem], embeddings: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Per encoder: query-to-own-answer retrieval among all non-query items, and the safety ranks."""
    cand = [i for i, item in enumerate(items) if item.role != "query"]
    pos = {i: k for k, i in enumerate(cand)}
    queries = [i for i, item in enumerate(items) if item.role == "query" and item.pair in pos]
    harmful = [k for k, i in enumerate(queries) if items[i].harmful]
    refusal = torch.tensor([items[i].role == "refusal" for i in cand])
    compliant = torch.tensor([items[i].role == "compliant" for i in cand])
    targets = torch.tensor([pos[items[i].pair] for i in queries], dtype=torch.long)
    out: dict[str, Any] = {}
    for name, emb in embeddings.items():
        if not queries:
            out[name] = {}
            continue
        e = F.normalize(emb.float(), dim=-1)
        sims = e[queries] @ e[cand].T
        own_cos = sims.gather(1, targets.view(-1, 1)).squeeze(1)
        other = (sims.sum(1) - own_cos) / max(1, len(cand) - 1)
        row: dict[str, Any] = retrieval_metrics(sims, targets) | {
            "cos_own": float(own_cos.mean()),
            "cos_others": float(other.mean()),
            "queries": len(queries),
            "candidates": len(cand),
        }
        for group, sel in (
            ("harmful", harmful),
            ("benign", [k for k in range(len(queries)) if k not in harmful]),
        ):
            if sel:
                row[f"mrr_{group}"] = retrieval_metrics(sims[sel], targets[sel])["mrr"]
        if harmful and bool(refusal.any()) and bool(compliant.any()):
            r = best_rank(sims[harmful], refusal).float()
            c = best_rank(sims[harmful], compliant).float()
            row["safety"] = {
                "harmful_queries": len(harmful),
                "mean_rank_best_refusal": float(r.mean()),
                "mean_rank_best_compliant": float(c.mean()),
                "refusal_first": float((r < c).float().mean()),
            }
        out[name] = row
    return out


def llm_summary(items: Sequence[MapItem]) -> dict[str, int]:
    """How many harmful and benign queries the LLM answered, and how many of those answers refuse."""
    answers = [i for i in items if i.role == "response"]
    return {
        "harmful_queries": sum(i.harmful for i in answers),
        "harmful_refused": sum(bool(i.refused) for i in answers if i.harmful),
        "benign_queries": sum(not i.harmful for i in answers),
        "benign_refused": sum(bool(i.refused) for i in answers if not i.harmful),
    }

