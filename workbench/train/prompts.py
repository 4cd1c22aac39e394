"""Training prompts from files, the public sets in ``../shared/data``, or Hugging Face datasets.

Every data source has a role. Training prompts: the sets of :data:`PUBLIC_SETS` (NQ-open's dev
questions, GSM8K's train file, self-instruct) and any file a user names. Evaluation queries: the
files of :data:`EVALUATION_FILES` (AdvBench-IR, TheoremQA, NQ-open's EfficientQA test questions),
which are refused as training prompts, unless forced, and which ``respond --heldout`` answers for
held-out references (rows marked ``role: heldout``, which ``train`` refuses). GSM8K questions serve
both: the reasoning evaluation leaves out the questions a checkpoint trained on
(:mod:`workbench.eval.heldout`).
"""

from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import WorkbenchError
from ..core.fingerprint import normalise as _normal
from ..core.hashing import sha256_text
from ..core.paths import require_file
from ..store.textio import read_utf8

# name -> (files relative to the data folder, text field)
PUBLIC_SETS: dict[str, tuple[tuple[str, ...], str]] = {
    "nq-open": (("nq-open/NQ-open.dev.jsonl",), "question"),
    "gsm8k": (("gsm8k/train.jsonl",), "question"),
    "self-instruct": (
        ("self-instruct/user_oriented_instructions.jsonl", "self-instruct/seed_tasks.jsonl"),
        "instruction",
    ),
}
EVALUATION_FILES: dict[str, tuple[str, str]] = {
    "advbench-ir.jsonl": ("advbench-ir/advbench-ir.jsonl", "instruction"),
    "theoremqa_test.json": ("theoremqa/theoremqa_test.json", "Question"),
    "NQ-open.efficientqa.test.1.1.jsonl": ("nq-open/NQ-open.efficientqa.test.1.1.jsonl", "question"),
}
"""Evaluation queries by file name: (path in the data folder, text field)."""
EVALUATION_SETS = "AdvBench-IR, TheoremQA or NQ-open EfficientQA-test"


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    source: str


def data_dir(path: str | Path | None = None) -> Path:
    """The public data folder: the argument, ``$WORKBENCH_DATA``, or ``../shared/data``."""
    return Path(path or os.environ.get("WORKBENCH_DATA") or "../shared/data").expanduser()


def prompt_id(source: str, text: str) -> str:
    return sha256_text(f"{source}\n{text}")[:16]


def _rows(path: Path, field: str | None) -> list[str]:
    """Texts of a .jsonl, .json (list of objects), .csv or .txt file."""
    text = read_utf8(path, "prompt file")
    if path.suffix == ".txt":
        return [line for line in text.splitlines() if line.strip()]
    if path.suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    elif path.suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise WorkbenchError(f"{path} is not JSON ({err.msg}, line {err.lineno})", "fix it") from err
        rows = rows if isinstance(rows, list) else [rows]
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise WorkbenchError(f"{path} line {n} is not JSON", "write one object per line") from err
    field = field or "prompt"
    out = []
    for n, row in enumerate(rows, 1):
        value = row.get(field) if isinstance(row, dict) else None
        if not isinstance(value, str):
            raise WorkbenchError(f"{path} row {n} has no text field {field!r}", "name the field with --field")
        instances = row.get("instances")
        instances = instances if isinstance(instances, list) else []
        inputs = [i.get("input", "") for i in instances if isinstance(i, dict)]
        extra = next((i for i in inputs if isinstance(i, str) and i.strip()), "")
        out.append(f"{value}\n\n{extra}" if extra else value)
    return out


def _hub_rows(spec: str, field: str | None) -> list[str]:
    name, _, split = spec.partition(":")
    try:
        import datasets
    except ImportError as err:
        raise WorkbenchError(
            "Hugging Face dataset sources need the `datasets` package", "pip install datasets (and be online)"
        ) from err
    try:
        data = datasets.load_dataset(name, split=split or "train")
    except Exception as err:  # network and hub errors come in many types
        raise WorkbenchError(
            f"could not load the dataset {name!r} ({type(err).__name__})",
            "check the id and your network, or pass a local file",
        ) from err
    field = field or "prompt"
    if field not in data.column_names:
        raise WorkbenchError(f"dataset {name} has no column {field!r}", f"use one of {data.column_names}")
    return [str(v) for v in data[field]]


def evaluation_texts(root: Path) -> set[str]:
    """Normalised evaluation queries found in the data folder (empty when it is absent)."""
    texts: set[str] = set()
    for rel, field in EVALUATION_FILES.values():
        path = root / rel
        if path.is_file():
            texts.update(_normal(t) for t in _rows(path, field))
    return texts


def load_prompts(
    source: str,
    *,
    field: str | None = None,
    data: str | Path | None = None,
    limit: int | None = None,
    shuffle_seed: int | None = None,
    force: bool = False,
    heldout: bool = False,
) -> list[Prompt]:
    """Prompts from a public set name (``nq-open``, ``gsm8k``, ``self-instruct``), a file, or ``hf:id``.

    Duplicates collapse (first kept); ``shuffle_seed`` shuffles before ``limit``. Evaluation queries
    are refused unless ``force``, or ``heldout`` (they are read as held-out queries, not to train on).
    """
    root = data_dir(data)
    if source in PUBLIC_SETS:
        files, default_field = PUBLIC_SETS[source]
        texts = [t for rel in files for t in _rows(root / rel, field or default_field)]
    elif source.startswith("hf:"):
        texts = _hub_rows(source[3:], field)
    else:
        path = Path(source).expanduser()
        parts = {part.lower() for part in path.parts}
        names = {name.lower() for name in EVALUATION_FILES}
        is_eval = path.name.lower() in names or {"advbench-ir", "theoremqa"} & parts
        if is_eval and not (force or heldout):
            raise WorkbenchError(
                f"{path} holds evaluation queries, which must not be training prompts",
                "choose training prompts, answer them as held-out references with --heldout, or pass --force",
            )
        texts = _rows(path, field)
    if not (force or heldout):
        held = evaluation_texts(root)
        clash = sum(_normal(t) in held for t in texts)
        if clash:
            raise WorkbenchError(
                f"{clash} prompts of {source} are {EVALUATION_SETS} evaluation queries",
                "remove them, answer them as held-out references with --heldout, or pass --force",
            )
    seen: set[str] = set()
    prompts = []
    for text in texts:
        if text.strip() and text not in seen:
            seen.add(text)
            prompts.append(Prompt(prompt_id(source, text), text, source))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(prompts)
    prompts = prompts[:limit] if limit is not None else prompts
    if not prompts:
        raise WorkbenchError(f"{source} gave no prompts", "check the source and --field")
    return prompts


def held_out(items: list[Prompt], files: list[Path]) -> tuple[list[Prompt], int]:
    """``items`` without the prompts of ``files`` (JSONL with a ``prompt`` field, such as a held-out
    set written by ``workbench respond``), compared case- and space-insensitively; and how many went."""
    drop: set[str] = set()
    for path in files:
        path = require_file(path, "--exclude file")
        drop.update(_normal(t) for t in _rows(path, "prompt"))
    kept = [p for p in items if _normal(p.text) not in drop]
    return kept, len(items) - len(kept)
