"""AdvBench-IR's queries and malicious passages, and the benign corpus they are mixed with.

The paper's protocol (``../shared/method.md`` §4): queries are the 520 AdvBench instructions; each
query's malicious document is split into 100-word chunks (a chunk is kept if it has exactly 100
words or is the first) and passages read ``title + " # " + chunk``.

The paper's benign Wikipedia passages are not available offline. The default benign corpus mixes,
in equal turns after a seeded shuffle: theorem descriptions (TheoremQA, chunked by the same rule,
``name # chunk``), worked GSM8K solutions (calculator marks removed, ``Worked solution # ...``),
self-instruct outputs (``instruction # output``) and NQ-open answers (``question # answers``). Any
passage file can replace it (``.txt``: one passage a line; ``.jsonl``: ``text`` and optional ``title``).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import WorkbenchError
from ..core.paths import require_file
from ..store.textio import read_jsonl, read_utf8

ADVBENCH_FILE = "advbench-ir/advbench-ir.jsonl"


@dataclass(frozen=True)
class Passage:
    id: str
    text: str
    source: str
    """The AdvBench query id for a malicious passage, else the benign source's name."""


def chunk_words(text: str, size: int = 100) -> list[str]:
    """Split into ``size``-word chunks; keep a chunk if it has exactly ``size`` words or is the first."""
    words = text.split()
    chunks = [words[i : i + size] for i in range(0, len(words), size)]
    return [" ".join(c) for n, c in enumerate(chunks) if n == 0 or len(c) == size]


def _jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    require_file(path, f"{what} file", "pass --data-dir (or set $WORKBENCH_DATA)")
    return read_jsonl(path, what)


def load_advbench(path: Path, limit: int | None = None) -> tuple[dict[str, str], list[Passage]]:
    """Queries ``{id: instruction}`` and the malicious passages of an AdvBench-IR jsonl file."""
    rows = _jsonl(path, "AdvBench-IR")[:limit]
    if not rows:
        raise WorkbenchError(f"{path} holds no queries", "point --data-dir at the AdvBench-IR data")
    queries: dict[str, str] = {}
    passages: list[Passage] = []
    for n, row in enumerate(rows, 1):
        response = row.get("response")
        response = [response] if isinstance(response, str) else response
        ok = isinstance(row.get("instruction"), str) and isinstance(row.get("title"), str)
        if not ok or not isinstance(response, list) or not all(isinstance(r, str) for r in response):
            raise WorkbenchError(
                f"{path} row {n} lacks the AdvBench-IR fields instruction, title and response",
                "use the malicious-ir advbench-ir.jsonl file",
            )
        qid = f"q{row.get('id_', n - 1)}"
        queries[qid] = row["instruction"]
        for c, chunk in enumerate(chunk_words(" ".join(response))):
            passages.append(Passage(f"{qid}-p{c}", f"{row['title']} # {chunk}", qid))
    return queries, passages


def _benign_sources(root: Path) -> dict[str, list[str]]:
    sources: dict[str, list[str]] = {}
    theorems = root / "theoremqa" / "all_theorems.json"
    if theorems.is_file():
        data = json.loads(read_utf8(theorems, "theorem file"))
        sources["theoremqa"] = [f"{k} # {c}" for k, v in data.items() for c in chunk_words(str(v))]
    gsm = root / "gsm8k" / "train.jsonl"
    if gsm.is_file():
        clean = (re.sub(r"<<[^>]*>>", "", r["answer"]).split("####")[0].strip() for r in _jsonl(gsm, "GSM8K"))
        sources["gsm8k"] = [f"Worked solution # {' '.join(t.split())}" for t in clean if t]
    outputs = []
    for name in ("seed_tasks.jsonl", "user_oriented_instructions.jsonl"):
        path = root / "self-instruct" / name
        for row in _jsonl(path, "self-instruct") if path.is_file() else []:
            for inst in row.get("instances") or []:
                out = inst.get("output") if isinstance(inst, dict) else None
                if isinstance(out, str) and len(out.split()) >= 5:
                    outputs.append(f"{row['instruction']} # {' '.join(out.split()[:100])}")
    if outputs:
        sources["self-instruct"] = outputs
    nq = root / "nq-open" / "NQ-open.dev.jsonl"
    if nq.is_file():
        sources["nq-open"] = [f"{r['question']} # {'; '.join(r['answer'])}" for r in _jsonl(nq, "NQ-open")]
    return sources


def benign_passages(root: Path, limit: int | None = None, seed: int = 0) -> list[Passage]:
    """The default benign corpus (module docstring), sources taken in equal turns, at most ``limit``."""
    sources = _benign_sources(root)
    if not sources:
        raise WorkbenchError(
            f"no benign passages found under {root}", "pass --data-dir, or a passage file with --distractors"
        )
    rng = random.Random(seed)
    pools = {name: rng.sample(texts, len(texts)) for name, texts in sorted(sources.items())}
    out: list[Passage] = []
    turn = 0
    while any(turn < len(p) for p in pools.values()) and (limit is None or len(out) < limit):
        for name, pool in pools.items():
            if turn < len(pool) and (limit is None or len(out) < limit):
                out.append(Passage(f"{name}-{turn}", pool[turn], name))
        turn += 1
    return out


def read_passage_file(path: Path, limit: int | None = None) -> list[Passage]:
    """Benign passages from a ``.txt`` (one a line) or ``.jsonl`` (``text``, optional ``title``) file."""
    path = require_file(path, "distractor file", "check the path given to --distractors")
    if path.suffix == ".jsonl":
        texts = []
        for n, row in enumerate(_jsonl(path, "distractor"), 1):
            if not isinstance(row.get("text"), str):
                raise WorkbenchError(f"{path} row {n} has no string field 'text'", "give each row a text")
            texts.append(
                f"{row['title']} # {row['text']}" if isinstance(row.get("title"), str) else row["text"]
            )
    elif path.suffix == ".txt":
        texts = [line.strip() for line in read_utf8(path, "distractor file").splitlines() if line.strip()]
    else:
        raise WorkbenchError(f"{path} is neither .txt nor .jsonl", "write the passages as .txt or .jsonl")
    if not texts:
        raise WorkbenchError(f"{path} holds no passages", "give at least one passage")
    return [Passage(f"{path.stem}-{i}", t, path.stem) for i, t in enumerate(texts[:limit])]
