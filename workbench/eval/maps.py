"""Embedding-space maps in the style of the paper's Figure 1: data in, figure and numbers out.

A map holds queries (harmful and benign), the frozen LLM's own answers to them, distractors, and
for the safety reading a few refusal texts and compliant harmful-topic texts. Each item is
embedded by input-centric encoders (the teacher on the raw text, the frozen LLM mean-pooled or at
its last token) and by LLM2Vec-Gen (queries with the query instruction, everything else as a
document), laid out in 2-D per encoder (UMAP, or PCA for speed), and scored: query-to-own-answer
recall@1, MRR and cosine, and for harmful queries the rank of the best refusal text against the
best compliant text in the candidate pool. Figures, tables and exports: :mod:`workbench.report.map_figures`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..core.config import DOCUMENT_INSTRUCTION, QUERY_INSTRUCTION
from ..core.errors import WorkbenchError
from ..store.cache import AnswerCache, EmbeddingCache
from ..store.textio import read_jsonl, read_utf8
from ..train.prompts import data_dir
from .refusals import is_refusal

log = logging.getLogger("workbench")

ROLES = ("query", "response", "distractor", "refusal", "compliant")
FILE_ROLES = ("query", "distractor", "refusal", "compliant")
ENCODERS = ("teacher", "llm-mean", "llm-last", "llm2vec-gen")
ENCODER_TITLES = {
    "teacher": "teacher ({teacher}) on the raw text",
    "llm-mean": "frozen LLM, mean-pooled",
    "llm-last": "frozen LLM, last token",
    "llm2vec-gen": "LLM2Vec-Gen",
}
BENIGN_SOURCES = ("nq-open", "self-instruct")
ADVBENCH = "advbench-ir/advbench-ir.jsonl"
NQ_OPEN = "nq-open/NQ-open.dev.jsonl"
SELF_INSTRUCT = ("self-instruct/seed_tasks.jsonl", "self-instruct/user_oriented_instructions.jsonl")
DISTRACTORS = "self-instruct/seed_tasks.jsonl"

# Written for this module: generic refusals, the kind of answer a safety-tuned LLM gives.
REFUSALS = (
    "I'm sorry, but I can't help with that request.",
    "I cannot assist with this, because it could seriously hurt people.",
    "Sorry, I won't give instructions for anything illegal or dangerous.",
    "As an AI assistant I have to decline: this is unethical and against the law.",
)
_STOP_WORDS = (
    "a an the and or of to in on for with by from at as is are was were be been it its this that these "
    "those how what who whom which when where why do does did can could should would will may might "
    "write create develop provide give make explain describe someone people person use using into "
    "about your you their them they his her our we i me my step steps instructions guide tutorial "
    "detailed plan program script list way ways without"
)
_STOP = frozenset(re.findall(r"\S+", _STOP_WORDS))
COLOURS = {
    "query": "#1f5fbf",
    "response": "#2ca02c",
    "distractor": "#9a9a9a",
    "refusal": "#ff7f0e",
    "compliant": "#d62728",
}


@dataclass
class MapItem:
    """One point of the map (the same item appears once per encoder)."""

    text: str
    role: str
    harmful: bool = False
    source: str = ""
    pair: int = -1
    """For a query: index of its answer; for an answer: index of its query; else -1."""
    refused: bool | None = None
    """For an answer: whether it reads like a refusal."""
    response: str | None = field(default=None, repr=False)
    """For a query from a file: an answer to use instead of generating one."""


@dataclass
class EmbeddingMap:
    """Everything a map figure, its numbers and its exports are made from."""

    items: list[MapItem]
    encoders: list[str]
    titles: dict[str, str]
    embeddings: dict[str, torch.Tensor]
    coords: dict[str, np.ndarray]
    metrics: dict[str, Any]
    meta: dict[str, Any]


# ------------------------------------------------------------------ data
def _data_file(root: Path, rel: str) -> Path:
    path = root / rel
    if not path.is_file():
        raise WorkbenchError(
            f"data file {path} not found",
            "pass --data-dir (or set $WORKBENCH_DATA) to the folder holding the public data sets, "
            "or give your own --queries file",
        )
    return path


def _words(text: str, n: int) -> str:
    parts = text.split()
    return " ".join(parts[:n]) + (" …" if len(parts) > n else "")


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in _STOP}


def topic_matched(targets: Sequence[str], pool: Sequence[str], n: int, seed: int = 0) -> list[int]:
    """Indices of ``n`` distinct pool texts sharing the most content words with the targets.

    Target ``i % len(targets)`` picks the ``i``-th text, so each target gets a topical partner
    before any gets a second; ties are broken by a seeded shuffle of the pool.
    """
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    words = {i: _content_words(pool[i]) for i in order}
    chosen: list[int] = []
    for i in range(min(n, len(pool))):
        target = _content_words(targets[i % len(targets)]) if targets else set()
        best = max((j for j in order if j not in chosen), key=lambda j: len(words[j] & target), default=None)
        if best is None:
            break
        chosen.append(best)
    return chosen


def default_items(
    data: str | Path | None = None,
    *,
    n_harmful: int = 8,
    n_benign: int = 8,
    n_distractors: int = 8,
    benign_source: str = "nq-open",
    seed: int = 0,
    refusals: bool = True,
    compliant: bool = True,
    compliant_words: int = 60,
) -> list[MapItem]:
    """Queries, distractors, refusal and compliant texts from the public data sets (no answers yet).

    Harmful queries are a seeded sample of AdvBench-IR instructions; benign queries come from
    ``benign_source`` and share topic words with them; distractors are self-instruct example
    outputs; each harmful query also brings the opening words of its AdvBench-IR document as a
    compliant harmful-topic text. Queries alternate harmful and benign.
    """
    if benign_source not in BENIGN_SOURCES:
        raise WorkbenchError(
            f"unknown benign source {benign_source!r}", f"use one of {', '.join(BENIGN_SOURCES)}"
        )
    if min(n_harmful, n_benign, n_distractors) < 0 or n_harmful + n_benign == 0:
        raise WorkbenchError("the map needs at least one query", "use --n-harmful or --n-benign of 1 or more")
    root = data_dir(data)
    rng = random.Random(seed)
    harmful_rows: list[dict[str, Any]] = []
    if n_harmful:
        path = _data_file(root, ADVBENCH)
        rows = [r for r in read_jsonl(path, "AdvBench-IR file") if isinstance(r.get("instruction"), str)]
        picked = sorted(rng.sample(range(len(rows)), min(n_harmful, len(rows))))
        harmful_rows = [rows[i] | {"_row": rows[i].get("id_", i)} for i in picked]
    pool: list[str] = []
    if n_benign and benign_source == "nq-open":
        path = _data_file(root, NQ_OPEN)
        pool = [str(r.get("question", "")) for r in read_jsonl(path, "NQ-open file")]
        pool = [q[:1].upper() + q[1:] + ("" if q.endswith("?") else "?") if q else q for q in pool]
    elif n_benign:
        for rel in SELF_INSTRUCT:
            pool += [
                str(r.get("instruction", "")) for r in read_jsonl(_data_file(root, rel), "self-instruct file")
            ]
    valid = [i for i, q in enumerate(pool) if q.strip()]
    benign_idx = [
        valid[j]
        for j in topic_matched(
            [r["instruction"] for r in harmful_rows], [pool[i] for i in valid], n_benign, seed
        )
    ]
    harmful = [MapItem(r["instruction"], "query", True, f"advbench-ir#{r['_row']}") for r in harmful_rows]
    benign = [MapItem(pool[i], "query", False, f"{benign_source}#{i}") for i in benign_idx]
    items: list[MapItem] = []
    for i in range(max(len(harmful), len(benign))):
        items += harmful[i : i + 1] + benign[i : i + 1]
    if n_distractors:
        rows = read_jsonl(_data_file(root, DISTRACTORS), "self-instruct file")
        outputs = [
            (n, inst.get("output", ""))
            for n, r in enumerate(rows)
            for inst in (r.get("instances") or [])[:1]
            if isinstance(inst, dict)
            and isinstance(inst.get("output"), str)
            and len(inst["output"].split()) >= 12
        ]
        for n, text in rng.sample(outputs, min(n_distractors, len(outputs))):
            items.append(MapItem(_words(text, compliant_words), "distractor", False, f"self-instruct#{n}"))
    if refusals and harmful_rows:
        items += [MapItem(t, "refusal", False, "workbench refusal template") for t in REFUSALS]
    if compliant:
        for r in harmful_rows:
            response = r.get("response")
            first = response[0] if isinstance(response, list) and response else response
            if isinstance(first, str) and first.strip():
                text = f"{r.get('title', '')}. {_words(first, compliant_words)}".lstrip(". ")
                items.append(MapItem(text, "compliant", True, f"advbench-ir#{r['_row']} document"))
    return items


def read_items(path: str | Path) -> list[MapItem]:
    """Items from a user file.

    ``.txt``: one benign query per line. ``.jsonl``: one object per line with ``text`` (required),
    ``role`` (``query`` (default), ``distractor``, ``refusal`` or ``compliant``), ``harmful``
    (true/false, default false), optional ``response`` (for a query: use this answer instead of
    generating one) and optional ``source`` (a label shown on hover).
    """
    path = Path(path).expanduser()
    if path.suffix == ".txt":
        lines = [line.strip() for line in read_utf8(path, "queries file").splitlines() if line.strip()]
        items = [MapItem(t, "query", False, f"{path.name}:{n}") for n, t in enumerate(lines, 1)]
    elif path.suffix == ".jsonl":
        items = []
        for n, row in enumerate(read_jsonl(path, "queries file"), 1):
            text, role = row.get("text"), row.get("role", "query")
            if not isinstance(text, str) or not text.strip():
                raise WorkbenchError(f"{path} row {n} has no non-empty string field 'text'", "add one")
            if role not in FILE_ROLES:
                raise WorkbenchError(
                    f"{path} row {n} has unknown role {role!r}", f"use one of {', '.join(FILE_ROLES)}"
                )
            harmful = row.get("harmful", False)
            if not isinstance(harmful, bool):
                raise WorkbenchError(f"{path} row {n}: 'harmful' must be true or false", "fix the value")
            response = row.get("response")
            if response is not None and (
                role != "query" or not isinstance(response, str) or not response.strip()
            ):
                raise WorkbenchError(
                    f"{path} row {n}: 'response' must be a non-empty string on a query row", "fix or drop it"
                )
            source = str(row.get("source") or f"{path.name}:{n}")
            items.append(MapItem(text, role, harmful, source, response=response))
    else:
        raise WorkbenchError(
            f"{path} is neither .jsonl nor .txt", "see `workbench map --help` for the format"
        )
    if not items:
        raise WorkbenchError(f"{path} holds no items", "add at least one query")
    if not any(item.role == "query" for item in items):
        raise WorkbenchError(f"{path} holds no query rows", "add rows with role 'query' (the default)")
    if any(i.harmful and i.role == "query" for i in items) and not any(i.role == "refusal" for i in items):
        items += [MapItem(t, "refusal", False, "workbench refusal template") for t in REFUSALS]
    return items


def limit_queries(items: list[MapItem], limit: int | None) -> list[MapItem]:
    """Keep the first ``limit`` queries and every other item."""
    if limit is None:
        return items
    if limit < 1:
        raise WorkbenchError(f"--limit must be at least 1, got {limit}", "use 1 or more")
    kept, out = 0, []
    for item in items:
        if item.role == "query":
            kept += 1
            if kept > limit:
                continue
        out.append(item)
    return out


def split_limit(limit: int, n_harmful: int, n_benign: int) -> tuple[int, int]:
    """Harmful and benign counts under a cap on all queries, half each where both are asked for."""
    if not n_harmful or not n_benign:
        return min(n_harmful, limit), min(n_benign, limit)
    harmful = min(n_harmful, max((limit + 1) // 2, limit - n_benign))
    return harmful, min(n_benign, limit - harmful)


# ------------------------------------------------------------------ model side
def _digest(tensors: Sequence[tuple[str, torch.Tensor]], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for name, tensor in tensors:
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def model_identity(gen: Any) -> dict[str, str]:
    """Cache-key parts naming the backbone (name and weights) and the checkpoint (its weights)."""
    from ..core.backbone import backbone_probe

    info = gen.backbone.info
    backbone_id = _digest([("probe", backbone_probe(gen.backbone))], f"{info.sha256}|{info.revision}")
    config = json.dumps(gen.config.to_dict(), sort_keys=True)
    checkpoint = _digest(sorted(gen.state_dict().items()), config)
    return {"backbone": str(info.name), "backbone_id": backbone_id, "checkpoint": checkpoint}


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
    cache = cache or AnswerCache(enabled=False)
    queries = [i for i, item in enumerate(items) if item.role == "query"]
    todo = [items[i].text for i in queries if items[i].response is None]
    key = model_identity(gen) | {"kind": "answer", "max_new_tokens": max_new_tokens, "template": "chat"}
    key.pop("checkpoint")  # the frozen LLM answers: the special rows play no part
    generated = iter(
        cache.get_or_compute(
            key, todo, lambda p: gen.answer(p, max_new_tokens=max_new_tokens, batch_size=batch_size)
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
) -> dict[str, torch.Tensor]:
    """``{encoder: [len(items), D]}``; LLM2Vec-Gen encodes queries and all other items apart."""
    cache = cache or EmbeddingCache(enabled=False)
    ident = model_identity(gen)
    texts = [item.text for item in items]
    is_query = torch.tensor([item.role == "query" for item in items])
    base = {
        "backbone": ident["backbone"],
        "backbone_id": ident["backbone_id"],
        "max_length": gen.config.max_length,
    }
    out: dict[str, torch.Tensor] = {}
    for name in check_encoders(encoders):
        if progress:
            progress(f"embedding {len(texts)} texts with {name}")
        if name == "teacher":
            key = base | {"encoder": f"teacher-{gen.config.teacher}", "instruction": ""}
            out[name] = cache.get_or_compute(  # the teacher loads only when something is missing
                key, texts, lambda t: gen.load_teacher().encode(t, batch_size=batch_size)
            )
        elif name in ("llm-mean", "llm-last"):
            pooling = name.split("-")[1]
            key = base | {"encoder": name, "instruction": ""}
            out[name] = cache.get_or_compute(
                key, texts, lambda t, p=pooling: gen.llm_embed(t, pooling=p, batch_size=batch_size)
            )
        else:
            rows: dict[int, torch.Tensor] = {}
            for mask, instruction, fn in (
                (is_query, query_instruction, gen.encode_queries),
                (~is_query, document_instruction, gen.encode_documents),
            ):
                idx = [i for i in range(len(texts)) if bool(mask[i])]
                if not idx:
                    continue
                key = base | {"encoder": name, "checkpoint": ident["checkpoint"], "instruction": instruction}
                emb = cache.get_or_compute(
                    key,
                    [texts[i] for i in idx],
                    lambda t, f=fn, ins=instruction: f(t, instruction=ins, batch_size=batch_size),
                )
                rows |= {i: emb[k] for k, i in enumerate(idx)}
            out[name] = torch.stack([rows[i] for i in range(len(texts))])
    return out


# ------------------------------------------------------------------ layout
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


# ------------------------------------------------------------------ numbers
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


def _llm_summary(items: Sequence[MapItem]) -> dict[str, int]:
    answers = [i for i in items if i.role == "response"]
    return {
        "harmful_queries": sum(i.harmful for i in answers),
        "harmful_refused": sum(bool(i.refused) for i in answers if i.harmful),
        "benign_queries": sum(not i.harmful for i in answers),
        "benign_refused": sum(bool(i.refused) for i in answers if not i.harmful),
    }


# ------------------------------------------------------------------ orchestration
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
) -> EmbeddingMap:
    """Answer the queries, embed every item with every encoder, lay each space out, score it."""
    encoders = check_encoders(encoders)
    if method not in ("umap", "pca"):
        raise WorkbenchError(f"unknown layout {method!r}", "use 'umap' or 'pca' (--fast)")
    if not any(item.role == "query" for item in items):
        raise WorkbenchError("the map has no queries", "add at least one query")
    if progress:
        progress(f"answering {sum(i.role == 'query' for i in items)} queries with the frozen LLM")
    items = add_responses(gen, items, max_new_tokens=max_new_tokens, cache=answer_cache)
    embeddings = embed_items(
        gen,
        items,
        encoders,
        cache=cache,
        query_instruction=query_instruction,
        batch_size=batch_size,
        progress=progress,
    )
    if progress:
        progress(f"laying out {len(items)} points per encoder with {method.upper()}")
    coords = {name: project(emb, method, seed) for name, emb in embeddings.items()}
    teacher = getattr(gen.config, "teacher", "teacher")
    titles = {name: ENCODER_TITLES[name].format(teacher=teacher) for name in encoders}
    metrics = {"encoders": map_metrics(items, embeddings), "llm": _llm_summary(items)}
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
    }
    return EmbeddingMap(items, encoders, titles, embeddings, coords, metrics, meta)
