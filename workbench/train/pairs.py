"""Training pairs: prompts and the frozen LLM's own responses, in a deterministic order."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.errors import WorkbenchError
from ..core.hashing import sha256_text
from ..core.paths import require_file


@dataclass(frozen=True)
class Pair:
    prompt: str
    response: str


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
                pairs.append(Pair(prompt, response))
            if limit is not None and len(pairs) >= limit:
                break
    if not pairs:
        raise WorkbenchError(
            f"{path} holds no usable prompt/response pairs",
            "generate responses first with `workbench respond`",
        )
    return pairs, pairs_digest(pairs)


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
