"""Prompts the frozen LLM writes itself from seed topics (self-instruct style).

The LLM is asked for a few short questions about each topic; the questions it writes become
training prompts (or held-out prompts, from a disjoint topic list) that it then answers with
``workbench respond``. Each row records the topic, the instruction, the model and its sha256, and
``source: self-written``, so a run config can say where its prompts came from. The packaged seed
topics (``workbench/data/topics.yaml``) hold two disjoint lists: ``train`` and ``heldout``.

Rows are appended topic batch by topic batch with fsync; a killed run loses at most the batch in
flight and the next run skips the topics already written.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from ..core.errors import WorkbenchError
from ..core.fingerprint import normalise
from ..core.generation import chat_answer
from ..store.textio import read_utf8
from .prompts import prompt_id
from .responding import drop_partial_line, read_done

SOURCE = "self-written"
INSTRUCTION = (
    "Write {n} different short questions that a curious person might ask an assistant about {topic}. "
    "One question per line, no numbering, no answers."
)
TOPIC_SPLITS = ("train", "heldout")
_LEAD = re.compile(r"^\s*(?:[-*•]+|\(?\d+[.):]|Q\d*[.:])\s*")


@dataclass
class WriteStats:
    topics: int
    topics_done_before: int
    written: int


def seed_topics(spec: str) -> list[str]:
    """Topics of a packaged split (``train``, ``heldout``), or of a .yaml list or .txt file (one per line)."""
    if spec in TOPIC_SPLITS:
        text = resources.files("workbench").joinpath("data/topics.yaml").read_text(encoding="utf-8")
        return [str(t) for t in yaml.safe_load(text)[spec]]
    path = Path(spec).expanduser()
    text = read_utf8(path, "topics file")
    if path.suffix in (".yaml", ".yml"):
        data = yaml.safe_load(text)
        topics = data if isinstance(data, list) else None
        if topics is None or not all(isinstance(t, str) for t in topics):
            raise WorkbenchError(f"{path} is not a YAML list of topics", "write one `- topic` per line")
    else:
        topics = [line.strip() for line in text.splitlines() if line.strip()]
    if not topics:
        raise WorkbenchError(f"{path} holds no topics", "write one topic per line")
    return topics


def parse_questions(text: str, limit: int) -> list[str]:
    """The questions of one generated list: numbering and bullets stripped, at least three words,
    ending in a question mark, no repeats (compared normalised); at most ``limit``."""
    out: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        question = _LEAD.sub("", line).strip().strip('"').strip()
        if len(question.split()) < 3 or not question.endswith("?") or normalise(question) in seen:
            continue
        seen.add(normalise(question))
        out.append(question)
        if len(out) == limit:
            break
    return out


def write_prompts(
    backbone: Any,
    topics: Sequence[str],
    out: str | Path,
    *,
    per_topic: int = 5,
    batch_size: int = 16,
    max_new_tokens: int = 120,
    show_progress: bool = True,
) -> WriteStats:
    """Let the frozen LLM write up to ``per_topic`` questions about each topic not yet in ``out``.

    Greedy decoding, so the same model and topics give the same questions. A question already
    written for an earlier topic is dropped (each prompt occurs once in the file).
    """
    if per_topic < 1:
        raise WorkbenchError(f"per_topic must be at least 1, got {per_topic}", "ask for 1 or more questions")
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    done, good = read_done(out)
    drop_partial_line(out, good)
    settings = {
        "source": SOURCE,
        "model": backbone.info.name,
        "sha256": backbone.info.sha256,
        "instruction": INSTRUCTION,
        "per_topic": per_topic,
    }
    for row in done.values():
        changed = [k for k in settings if row.get(k) != settings[k]]
        if changed:
            raise WorkbenchError(
                f"{out} was written with other settings ({', '.join(changed)})", "use another --out"
            )
    seen = {normalise(row["prompt"]) for row in done.values()}
    topics_done = {row.get("topic") for row in done.values()}
    todo = [t for t in dict.fromkeys(topics) if t not in topics_done]
    bar = tqdm(total=len(todo), desc="writing prompts", unit="topic", disable=not show_progress)
    written = 0
    with open(out, "a", encoding="utf-8") as fh:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            lists = chat_answer(
                backbone,
                [INSTRUCTION.format(n=per_topic, topic=t) for t in batch],
                max_new_tokens=max_new_tokens,
            )
            for topic, text in zip(batch, lists, strict=True):
                questions = [q for q in parse_questions(text, per_topic) if normalise(q) not in seen]
                if not questions:  # an empty row marks the topic done (prompt readers skip it)
                    row = {"id": prompt_id(SOURCE, topic), "prompt": "", "topic": topic}
                    fh.write(json.dumps(row | settings, ensure_ascii=False) + "\n")
                for question in questions:
                    seen.add(normalise(question))
                    row = {"id": prompt_id(f"{SOURCE}:{topic}", question), "prompt": question, "topic": topic}
                    fh.write(json.dumps(row | settings, ensure_ascii=False) + "\n")
                    written += 1
            fh.flush()
            os.fsync(fh.fileno())
            bar.update(len(batch))
    bar.close()
    return WriteStats(topics=len(dict.fromkeys(topics)), topics_done_before=len(topics_done), written=written)
