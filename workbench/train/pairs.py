"""Training pairs: prompts and the frozen LLM's own responses, in a deterministic order."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.errors import WorkbenchError
from ..core.fingerprint import normalise
from ..core.hashing import sha256_text
from ..core.paths import require_file
from .prompts import EVALUATION_SETS, data_dir, evaluation_texts

log = logging.getLogger("workbench")


@dataclass(frozen=True)
class Pair:
    prompt: str
    response: str
    model: str | None = None
    """The backbone that answered (``workbench respond`` records it), if recorded."""
    sha256: str | None = None
    """That backbone's weights hash, if recorded."""
    role: str | None = None
    """``train`` or ``heldout`` (an evaluation reference, never a training pair), if recorded."""
    source: str | None = None
    """Where the prompt came from (``workbench respond`` records the set or file), if recorded."""


def pairs_mix(pairs: Sequence[Pair]) -> dict[str, Any]:
    """The data mix: per prompt source (file name), how many pairs and how many the LLM refused
    (:func:`~workbench.core.refusals.is_refusal` on its response); and the totals."""
    from ..core.refusals import is_refusal

    by: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        name = Path(pair.source).name if pair.source else "unrecorded"
        entry = by.setdefault(name, {"pairs": 0, "refusals": 0})
        entry["pairs"] += 1
        entry["refusals"] += is_refusal(pair.response)
    for entry in by.values():
        entry["refusal_rate"] = round(entry["refusals"] / entry["pairs"], 4)
    refusals = sum(e["refusals"] for e in by.values())
    return {
        "sources": dict(sorted(by.items(), key=lambda kv: -kv[1]["pairs"])),
        "pairs": len(pairs),
        "refusals": refusals,
        "refusal_rate": round(refusals / len(pairs), 4) if pairs else 0.0,
    }


def read_pairs(path: str | Path, limit: int | None = None) -> tuple[list[Pair], str]:
    """Pairs with a non-empty prompt and response, and the sha256 of what was read."""
    path = require_file(
        path, "responses file", "make it with `workbench respond --prompts ... --out responses.jsonl`"
    )
    pairs: list[Pair] = []
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                if not raw.endswith(b"\n"):
                    break  # the last line of an interrupted `respond` run
                raise WorkbenchError(f"{path} line {n} is not JSON", "regenerate the file") from err
            prompt, response = row.get("prompt"), row.get("response")
            if not isinstance(prompt, str) or not isinstance(response, str):
                raise WorkbenchError(
                    f"{path} line {n} lacks string fields 'prompt' and 'response'",
                    "use a file written by `workbench respond`",
                )
            if prompt.strip() and response.strip():
                model, sha, role, source = (row.get(k) for k in ("model", "sha256", "role", "source"))
                pairs.append(
                    Pair(
                        prompt,
                        response,
                        model if isinstance(model, str) else None,
                        sha if isinstance(sha, str) else None,
                        role if isinstance(role, str) else None,
                        source if isinstance(source, str) else None,
                    )
                )
            if limit is not None and len(pairs) >= limit:
                break
    if not pairs:
        raise WorkbenchError(
            f"{path} holds no usable prompt/response pairs",
            "generate responses first with `workbench respond`",
        )
    return pairs, pairs_digest(pairs)


def check_provenance(
    pairs: list[Pair],
    backbone: Any,
    *,
    allow_foreign: bool = False,
    force: bool = False,
    data: str | Path | None = None,
) -> dict[str, Any]:
    """Refuse pairs that would break self-supervision or the held-out discipline; say what was checked.

    Refused: rows ``respond --heldout`` wrote (held-out references), prompts that are the
    workbench's evaluation queries (both unless ``force``), and responses another model wrote
    (name or weights sha256 differing from ``backbone``'s; unless ``allow_foreign``, which is
    distillation and is recorded). Rows that record no model cannot be checked: they are counted.
    """
    heldout = sum(p.role == "heldout" for p in pairs)
    if heldout and not force:
        raise WorkbenchError(
            f"{heldout} of {len(pairs)} pairs are held-out references (written by `respond --heldout`)",
            "train on a file of training prompts; keep held-out answers for `workbench quality`",
        )
    held = evaluation_texts(data_dir(data))
    clash = sum(normalise(p.prompt) in held for p in pairs)
    if clash and not force:
        raise WorkbenchError(
            f"{clash} of {len(pairs)} training prompts are {EVALUATION_SETS} evaluation queries",
            "remove them from the responses file (or pass --force if you really mean it)",
        )
    info = backbone.info
    foreign: dict[str, int] = {}
    unrecorded = 0
    for p in pairs:
        if p.model is None and p.sha256 is None:
            unrecorded += 1
        elif not _same_backbone(p.model, p.sha256, info):
            key = f"{p.model} (sha256 {str(p.sha256)[:12]})"
            foreign[key] = foreign.get(key, 0) + 1
    n_foreign = sum(foreign.values())
    if n_foreign and not allow_foreign:
        who = ", ".join(f"{k}: {v}" for k, v in foreign.items())
        raise WorkbenchError(
            f"{n_foreign} of {len(pairs)} responses were written by another model ({who}), not by "
            f"{info.name} (sha256 {str(info.sha256)[:12]}): training must reproduce its own answers",
            f"answer the prompts with `workbench respond --model {info.name}`, or pass "
            "--allow-foreign-responses to distil from another model (recorded in the run config and card)",
        )
    if unrecorded:
        log.warning(
            "%d of %d pairs record no model: self-supervision not checked for them", unrecorded, len(pairs)
        )
    return {
        "self_supervised": n_foreign == 0,
        "foreign_responses": foreign,
        "unrecorded_responses": unrecorded,
        "evaluation_prompts": clash,
        "heldout_rows": heldout,
    }


def _same_backbone(model: str | None, sha: str | None, info: Any) -> bool:
    """The weights hash decides when both are known; else the name, or the same folder."""
    if sha and info.sha256:
        return bool(sha == info.sha256)
    if model is None or model == info.name:
        return model is not None
    a, b = Path(model).expanduser(), Path(info.name).expanduser()
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def pairs_digest(pairs: list[Pair]) -> str:
    """sha256 of the pairs in order (each one's JSON ``[prompt, response]``, concatenated)."""
    return sha256_text("".join(json.dumps([p.prompt, p.response]) for p in pairs))


def global_batch(step: int, n: int, batch_size: int, seed: int) -> list[int]:
    """Indices of the pairs in optimiser step ``step`` (0-based): a fresh permutation each epoch.

    The order depends only on (seed, step), so a resumed run reads exactly what it would have.
    """
    start = step * batch_size
    out: list[int] = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        out.extend(perm[offset : offset + batch_size - len(out)])
    return out
