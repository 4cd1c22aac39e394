"""The frozen LLM answers training prompts into a resumable JSONL cache (one row per prompt).

Rows are appended batch by batch with flush and fsync; a run that is killed loses at most the batch
in flight, and the next run skips every prompt already answered, so no row is duplicated or lost.

Under ``accelerate launch --num_processes N`` the prompts not yet answered are split between the
processes by a hash of their id; process ``k`` appends to ``<out>.part-k`` and, once every process is
done, the main process moves the part files' rows into ``<out>`` (each id once) and removes them. A
kill at any point keeps what was written: the next run, with any number of processes, reads ``<out>``
and every part file as done, and merges what is left over.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..core.backbone import load_backbone
from ..core.errors import WorkbenchError
from ..core.generation import chat_answer, chat_ids
from ..core.processes import gather_lists, owner, process_device, process_state
from ..core.registry import DEFAULT_BACKBONE
from .prompts import Prompt, held_out, load_prompts

ROLES = ("train", "heldout")
SETTINGS = (
    "role",
    "model",
    "sha256",
    "max_new_tokens",
    "do_sample",
    "temperature",
    "top_p",
    "seed",
    "system_prompt",
)


@dataclass
class RespondStats:
    done_before: int
    answered: int
    total: int


def read_done(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """Rows already in the cache by id, and the byte length of its complete lines."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return rows, 0
    good = 0
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break  # a line cut short by a kill: dropped and rewritten
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as err:
                raise WorkbenchError(
                    f"{path} has a damaged line after byte {good}",
                    "delete that line (or the file) and run again",
                ) from err
            if not isinstance(row, dict) or not isinstance(row.get("id"), str) or "prompt" not in row:
                raise WorkbenchError(
                    f"{path} is not a `workbench respond` cache (line after byte {good} has no id or prompt)",
                    "choose another --out",
                )
            rows.setdefault(row["id"], row)
            good += len(raw)
    return rows, good


def drop_partial_line(path: Path, good: int) -> None:
    """Cut ``path`` back to the ``good`` bytes :func:`read_done` read whole (a killed run's last line)."""
    if path.exists() and path.stat().st_size != good:
        with open(path, "r+b") as fh:
            fh.truncate(good)


def part_files(out: Path) -> list[Path]:
    """The per-process files ``<out>.part-<k>`` a launch with several processes left beside ``out``."""
    parts = out.parent.glob(f"{out.name}.part-*") if out.parent.is_dir() else []
    return sorted((p for p in parts if p.name[len(out.name) + 6 :].isdigit()), key=lambda p: p.name)


def merge_parts(out: Path) -> int:
    """Append the rows of ``out``'s part files that ``out`` lacks (by id or prompt text), fsync, then
    remove the part files; returns how many rows moved. Safe to repeat after a kill."""
    parts = part_files(out)
    if not parts:
        return 0
    done, good = read_done(out)
    drop_partial_line(out, good)
    seen_texts = {row["prompt"] for row in done.values()}
    moved = 0
    with open(out, "a", encoding="utf-8") as fh:
        for part in parts:
            rows, _ = read_done(part)  # a line cut short by a kill is left out (and answered again)
            for key, row in rows.items():
                if key in done or row["prompt"] in seen_texts:
                    continue
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                done[key] = row
                seen_texts.add(row["prompt"])
                moved += 1
        fh.flush()
        os.fsync(fh.fileno())
    for part in parts:
        part.unlink(missing_ok=True)
    return moved


def respond(
    backbone: Any,
    prompts: Sequence[Prompt],
    out: str | Path,
    *,
    batch_size: int = 16,
    max_new_tokens: int = 128,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    system_prompt: str | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    role: str = "train",
) -> RespondStats:
    """Answer every prompt not yet in ``out`` with the backbone's chat template and append the rows.

    Prompts are answered in batches of similar token length, longest first (rows are appended in that
    order). A prompt counts as done when its id or its exact text is in ``out``, so the same file named by
    another path (another id) is never answered twice. Each row records the backbone (name and
    sha256, which ``train`` checks) and its ``role``: ``train``, or ``heldout`` for evaluation
    references (``train`` refuses those). Under ``accelerate launch`` each process answers its share
    into a part file, merged into ``out`` at the end (see the module docstring); the returned counts
    are over all processes.
    """
    if do_sample and not (temperature > 0 and 0 < top_p <= 1):
        raise WorkbenchError(
            f"sampling needs temperature > 0 and 0 < top_p <= 1, got {temperature} and {top_p}",
            "raise them, or use --greedy",
        )
    if role not in ROLES:
        raise WorkbenchError(f"unknown role {role!r}", f"use one of {', '.join(ROLES)}")
    out = Path(out).expanduser()
    state = process_state()
    many = state.num_processes > 1
    if state.is_main_process:
        out.parent.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for path in [out, *part_files(out)]:
                path.unlink(missing_ok=True)
    state.wait_for_everyone()
    device = process_device(backbone.model, state)
    if device is not None:
        backbone.model.to(device)
    settings = {
        "role": role,
        "model": backbone.info.name,
        "sha256": backbone.info.sha256,
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "temperature": temperature if do_sample else None,
        "top_p": top_p if do_sample else None,
        "seed": seed if do_sample else None,
        "system_prompt": system_prompt,
    }
    target = out.with_name(f"{out.name}.part-{state.process_index}") if many else out
    done, good = read_done(out)
    for part in part_files(out):  # what earlier launches (any number of processes) answered
        for key, row in read_done(part)[0].items():
            done.setdefault(key, row)
    if done:
        first = next(iter(done.values()))
        recorded = {"role": "train"} | first  # files from before roles were recorded: training rows
        changed = [k for k in SETTINGS if recorded.get(k) != settings[k]]
        if changed:
            raise WorkbenchError(
                f"{out} was made with other settings ({', '.join(changed)})",
                "use the same options, another --out, or --overwrite",
            )
    if many:
        good = read_done(target)[1]  # this process's own file; the others belong to their writers
    drop_partial_line(target, good)
    done_texts = {row["prompt"] for row in done.values()}
    todo = [p for p in prompts if p.id not in done and p.text not in done_texts]
    missing = len(todo)
    if many:  # the same split in every process, whatever order the prompts were read in
        todo = [p for p in todo if owner(p.id, state.num_processes) == state.process_index]
    # batches of similar token length (longest first, so a memory limit shows at once): a batch is
    # left-padded to its longest prompt, and one long prompt among short ones multiplies its cost
    lengths = [len(ids) for ids in chat_ids(backbone.tokenizer, [p.text for p in todo], system_prompt)]
    todo = [todo[i] for i in sorted(range(len(todo)), key=lambda i: -lengths[i])]
    show = show_progress and state.is_main_process
    bar = tqdm(total=len(todo), desc="responding", unit="prompt", disable=not show, dynamic_ncols=True)
    with open(target, "a", encoding="utf-8") as fh:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            if do_sample:
                torch.manual_seed(seed + int(batch[0].id[:8], 16))  # same per batch on resume
            answers = chat_answer(
                backbone,
                [p.text for p in batch],
                max_new_tokens=max_new_tokens,
                system_prompt=system_prompt,
                do_sample=do_sample,
                temperature=temperature,
                top_p=top_p,
            )
            for prompt, answer in zip(batch, answers, strict=True):
                row = {"id": prompt.id, "prompt": prompt.text, "response": answer, "source": prompt.source}
                fh.write(json.dumps(row | settings, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            bar.update(len(batch))
    bar.close()
    answered = sum(gather_lists([len(todo)], state))
    state.wait_for_everyone()
    if state.is_main_process:
        merge_parts(out)
    state.wait_for_everyone()
    return RespondStats(done_before=len(prompts) - missing, answered=answered, total=len(prompts))


def respond_to_source(
    source: str,
    out: str | Path,
    *,
    model: str = DEFAULT_BACKBONE,
    field: str | None = None,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    shuffle_seed: int | None = None,
    force: bool = False,
    heldout: bool = False,
    exclude: Sequence[str | Path] = (),
    note: Callable[[str], None] | None = None,
    **options: Any,
) -> RespondStats:
    """``workbench respond``: read the prompts of ``source`` (see :func:`~.prompts.load_prompts`), leave
    out those of the ``exclude`` files, load the backbone ``model`` and :func:`respond` (``options``).

    ``heldout`` answers evaluation queries as held-out references (rows marked ``role: heldout``).
    ``note`` hears how many prompts ``exclude`` left out, if any.
    """
    items = load_prompts(
        source,
        field=field,
        data=data_dir,
        limit=limit,
        shuffle_seed=shuffle_seed,
        force=force,
        heldout=heldout,
    )
    if exclude:
        items, dropped = held_out(items, [Path(p) for p in exclude])
        if dropped and note is not None:
            note(f"left out {dropped} prompts found in {', '.join(map(str, exclude))}")
    return respond(load_backbone(model), items, out, role="heldout" if heldout else "train", **options)
