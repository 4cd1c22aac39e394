"""The items of an embedding map: queries, distractors, refusal and compliant texts, and their sources.

Default items come from the public data sets (AdvBench-IR harmful instructions, topic-matched
NQ-open or self-instruct questions, self-instruct outputs as distractors); a user file can replace
them. The LLM's answers are added later, by :func:`workbench.eval.maps.add_responses`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import WorkbenchError
from ..store.textio import read_jsonl, read_utf8
from ..train.prompts import data_dir
from .safety_data import ADVBENCH_FILE

ROLES = ("query", "response", "distractor", "refusal", "compliant")
FILE_ROLES = ("query", "distractor", "refusal", "compliant")
BENIGN_SOURCES = ("efficientqa", "nq-open", "self-instruct")
"""``efficientqa`` (NQ-open's EfficientQA test questions, held out from training) is the default;
``nq-open`` (its dev questions) and ``self-instruct`` are training prompts of the shipped checkpoints."""
ADVBENCH = ADVBENCH_FILE
NQ_OPEN = "nq-open/NQ-open.dev.jsonl"
EFFICIENTQA = "nq-open/NQ-open.efficientqa.test.1.1.jsonl"
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
    benign_source: str = "efficientqa",
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
    if n_benign and benign_source in ("nq-open", "efficientqa"):
        path = _data_file(root, NQ_OPEN if benign_source == "nq-open" else EFFICIENTQA)
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

