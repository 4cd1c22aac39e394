"""The latent-lens index: response-token states, the nearest-neighbour lookup, the default folder.

A compression position is described by the response tokens whose in-context states are closest to
it (cosine), each shown with a snippet of its response, e.g. ``"… the polar [bear] lives on sea ice …"``.
How an index is built is :mod:`workbench.lens.latent_build`; its files, :mod:`workbench.lens.latent_files`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..core.backbone import check_same_backbone
from ..core.errors import WorkbenchError
from ..core.hashing import sha256_text
from .latent_files import BUILD_COMMAND, INDEX_FILE, read_index_folder, write_index_folder

if TYPE_CHECKING:
    from ..core.model import LLM2VecGen

SNIPPET_CHARS = 40


@dataclass
class LatentIndex:
    """Contextual token states of the LLM's responses, with where each token came from."""

    states: torch.Tensor  # [E, H] float16, unit rows
    token_ids: list[int]
    tokens: list[str]
    text_ids: list[int]
    positions: list[int]  # token index within its tokenized source text
    spans: list[tuple[int, int]]  # character span of the token in its source text
    texts: list[str]
    layer: int
    backbone: dict[str, Any]
    probe: torch.Tensor  # the backbone fingerprint of workbench.core.backbone.backbone_probe
    meta: dict[str, Any] = field(default_factory=dict)
    _matrix: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return self.states.shape[0]

    # ----------------------------------------------------------------- lookup
    def nearest(
        self, states: torch.Tensor, k: int = 5, *, distinct: bool = False
    ) -> list[list[dict[str, Any]]]:
        """The ``k`` entries closest (cosine) to each row of ``states`` ``[P, H]``, best first.

        Each entry is ``{"token", "score", "context", "text_id", "position"}``; ``distinct``
        keeps only the best entry per token text.
        """
        if states.dim() == 1:
            states = states.unsqueeze(0)
        if states.dim() != 2 or states.shape[1] != self.states.shape[1]:
            raise WorkbenchError(
                f"latent lens states must have shape [positions, {self.states.shape[1]}], "
                f"got {list(states.shape)}",
                "pass the compression states of one query, e.g. gen.compression_states(q)[0]",
            )
        if k < 1:
            raise WorkbenchError(f"k must be at least 1, got {k}", "pass e.g. k=5")
        if self._matrix is None:
            self._matrix = self.states.float()
        query = torch.nn.functional.normalize(states.detach().float().cpu(), dim=-1)
        scores = query @ self._matrix.T  # [P, E]
        out: list[list[dict[str, Any]]] = []
        for row in scores:
            want = min(len(self), k if not distinct else max(8 * k, 64))
            top_s, top_i = row.topk(want)
            hits: list[dict[str, Any]] = []
            seen: set[str] = set()
            for s, i in zip(top_s.tolist(), top_i.tolist(), strict=True):
                key = self.tokens[i].strip()
                if distinct and key in seen:
                    continue
                seen.add(key)
                hits.append(self.entry(i, s))
                if len(hits) == k:
                    break
            out.append(hits)
        return out

    def entry(self, i: int, score: float | None = None) -> dict[str, Any]:
        """Entry ``i`` as a dict, with its context snippet."""
        return {
            "token": self.tokens[i],
            "score": None if score is None else round(float(score), 6),
            "context": self.context(i),
            "text_id": self.text_ids[i],
            "position": self.positions[i],
        }

    def context(self, i: int, chars: int = SNIPPET_CHARS) -> str:
        """A short snippet of entry ``i``'s source text with the token in brackets."""
        text = self.texts[self.text_ids[i]]
        start, end = self.spans[i]
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        left, right = max(0, start - chars), min(len(text), end + chars)
        if left > 0 and " " in text[left:start]:
            left = text.index(" ", left, start) + 1
        if right < len(text) and " " in text[end:right]:
            right = text.rindex(" ", end, right)
        before = text[left:start].replace("\n", " ")
        after = text[end:right].replace("\n", " ")
        return (
            ("… " if left > 0 else "")
            + before
            + f"[{text[start:end]}]"
            + after
            + (" …" if right < len(text) else "")
        )

    # ----------------------------------------------------------------- backbone check
    def check_backbone(self, gen: LLM2VecGen) -> None:
        """Refuse an index built on another backbone (sizes, GGUF hash, weight fingerprint)."""
        check_same_backbone(
            self.backbone,
            self.probe,
            gen.backbone,
            what="this latent index",
            fix=f"build an index for this backbone: {BUILD_COMMAND} --model " + gen.backbone.info.name,
            sizes=("hidden_size", "vocab_size", "num_layers"),
            made="built",
        )

    # ----------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        """Write the folder ``path`` (``states.safetensors`` and ``index.json``), atomically per file."""
        return write_index_folder(
            path,
            states=self.states,
            probe=self.probe,
            columns={
                "token_ids": self.token_ids,
                "tokens": self.tokens,
                "text_ids": self.text_ids,
                "positions": self.positions,
                "spans": self.spans,
            },
            texts=self.texts,
            layer=self.layer,
            backbone=self.backbone,
            built=self.meta,
        )

    @classmethod
    def load(cls, path: str | Path) -> LatentIndex:
        """Read and validate an index folder written by :meth:`save`."""
        return cls(**read_index_folder(path))

    def summary(self) -> dict[str, Any]:
        """What the index holds, for ``workbench latent-lens info``."""
        return {
            "backbone": self.backbone.get("name"),
            "sha256": self.backbone.get("sha256"),
            "layer": self.layer,
            "entries": len(self),
            "texts": len(self.texts),
            "distinct_tokens": len(set(self.token_ids)),
            "hidden_size": int(self.states.shape[1]),
            **self.meta,
        }


def index_summary(path: str | Path) -> dict[str, Any]:
    """What the index folder ``path`` holds and its size in bytes, without loading its backbone."""
    folder = Path(path).expanduser()
    summary = LatentIndex.load(folder).summary()
    return summary | {"bytes": sum(f.stat().st_size for f in folder.iterdir() if f.is_file())}


def folder_name(name: str, fallback: str, *, always_hash: bool = False) -> str:
    """A safe folder name for a backbone, path or source: its last path part with other characters
    as ``-``, plus 8 hex digits of the whole name's sha256 unless it was safe already."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).name if os.sep in name else name).strip("-.")
    if safe == name and not always_hash:
        return safe
    return f"{safe or fallback}-{sha256_text(name)[:8]}"


def default_index_path(gen: LLM2VecGen) -> Path:
    """``<cache>/latent-index/<backbone>``: where ``workbench latent-lens build`` writes by default."""
    from ..core.paths import cache_dir

    return cache_dir() / "latent-index" / folder_name(gen.backbone.info.name, "backbone")


def load_latent_index(gen: LLM2VecGen, path: str | Path | None = None) -> LatentIndex:
    """The index at ``path`` (default: :func:`default_index_path`), checked against ``gen``'s backbone."""
    target = default_index_path(gen) if path is None else Path(path).expanduser()
    if not (target / INDEX_FILE).is_file():
        where = "" if path is None else f" --out {target}"
        raise WorkbenchError(
            f"no latent index at {target}",
            f"build one first: {BUILD_COMMAND} --model {gen.backbone.info.name}{where}",
        )
    index = LatentIndex.load(target)
    index.check_backbone(gen)
    return index
