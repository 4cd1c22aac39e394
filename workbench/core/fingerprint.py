"""Which prompts a checkpoint trained on, compactly: 64-bit hashes of the normalised prompt texts.

Evaluations compare their queries with a model's ``training_prompts`` through
:func:`check_overlap`, so that no number is computed on a query the checkpoint trained on. A model's
``training_prompts`` is empty when untrained, the hashes of its training prompts when trained by the
workbench, and None when unknown (an official checkpoint, or one saved before fingerprints were
recorded). Texts are compared
after :func:`normalise` (lower case, runs of white space as one space), the same normalisation that
``workbench respond --exclude`` uses. A hash is the first 8 bytes of the sha256 of the normalised
text: for the few thousand prompts of a run the chance of a false match is below 1e-12.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import WorkbenchError

if TYPE_CHECKING:
    import torch

NORMALISATION = "lower-case, white space collapsed, ?.! stripped at the ends; sha256[:8] as int64"


def normalise(text: str) -> str:
    """Lower case, every run of white space one space, no white space or ``?.!`` at either end.

    So "who wrote hamlet" and "Who wrote Hamlet?" are one prompt (the maps capitalise NQ-open
    questions and add the question mark).
    """
    return " ".join(text.lower().split()).strip(" ?.!")


def text_hash(text: str) -> int:
    """The signed 64-bit hash of ``normalise(text)`` (the first 8 bytes of its sha256)."""
    digest = hashlib.sha256(normalise(text).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little", signed=True)


@dataclass(frozen=True)
class PromptFingerprint:
    """The set of a checkpoint's training prompts, as hashes.

    ``complete`` is False when part of the training history is unknown (continued training from a
    checkpoint that recorded no fingerprint): overlap counts are then lower bounds.
    """

    hashes: frozenset[int] = field(default_factory=frozenset)
    sources: tuple[str, ...] = ()
    complete: bool = True

    @classmethod
    def from_texts(
        cls, texts: Iterable[str], sources: Sequence[str] = (), complete: bool = True
    ) -> PromptFingerprint:
        return cls(frozenset(text_hash(t) for t in texts), tuple(sources), complete)

    @classmethod
    def from_tensor(
        cls, hashes: torch.Tensor, sources: Sequence[str] = (), complete: bool = True
    ) -> PromptFingerprint:
        return cls(frozenset(int(h) for h in hashes.tolist()), tuple(sources), complete)

    def to_tensor(self) -> torch.Tensor:
        """The hashes sorted, as an int64 tensor (what a checkpoint folder stores)."""
        import torch

        return torch.tensor(sorted(self.hashes), dtype=torch.int64)

    def union(self, other: PromptFingerprint | None) -> PromptFingerprint:
        """Both sets of prompts (continued training); ``None`` is an unknown history."""
        if other is None:
            return PromptFingerprint(self.hashes, self.sources, complete=False)
        sources = tuple(dict.fromkeys((*other.sources, *self.sources)))
        return PromptFingerprint(self.hashes | other.hashes, sources, self.complete and other.complete)

    def overlap(self, texts: Sequence[str]) -> list[int]:
        """Indices of ``texts`` that are training prompts."""
        return [i for i, t in enumerate(texts) if text_hash(t) in self.hashes]

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and text_hash(text) in self.hashes

    def __len__(self) -> int:
        return len(self.hashes)

    def summary(self) -> dict[str, object]:
        """What a config or report records about it (not the hashes)."""
        return {
            "count": len(self),
            "sources": list(self.sources),
            "complete": self.complete,
            "normalisation": NORMALISATION,
        }


log = logging.getLogger("workbench")


def overlap_record(model: Any, texts: Sequence[str]) -> dict[str, Any]:
    """How many of ``texts`` are the model's training prompts (``overlap`` None when unknown)."""
    prompts = getattr(model, "training_prompts", None)
    if prompts is None:
        return {"checked": False, "queries": len(texts), "overlap": None, "overlap_ids": []}
    hits = prompts.overlap(list(texts))
    return {
        "checked": True,
        "queries": len(texts),
        "overlap": len(hits),
        "overlap_ids": hits,
        "training_prompts": len(prompts),
        "fingerprint_complete": prompts.complete,
    }


def check_overlap(
    model: Any, texts: Sequence[str], *, allow_overlap: bool = False, what: str = "queries"
) -> dict[str, Any]:
    """Refuse ``texts`` that the model trained on (one-line error), unless ``allow_overlap``.

    Returns :func:`overlap_record`'s record (``overlap_ids`` are indices into ``texts``) for the
    report. An unknown training history is logged as a warning and recorded as ``checked: False``.
    """
    record = overlap_record(model, texts)
    if not record["checked"]:
        log.warning("the model records no training prompts: %s not checked for overlap", what)
        return record
    n = record["overlap"]
    if n and not allow_overlap:
        raise WorkbenchError(
            f"{n} of {len(texts)} {what} are training prompts of this checkpoint",
            "evaluate on held-out queries (e.g. NQ-open EfficientQA-test), or pass --allow-overlap to "
            "run anyway with the overlap printed in the report",
        )
    return record


def without_training_prompts(model: Any, texts: Sequence[str]) -> list[int]:
    """Indices of ``texts`` that are not the model's training prompts (all when unknown)."""
    prompts = getattr(model, "training_prompts", None)
    if prompts is None:
        return list(range(len(texts)))
    trained = set(prompts.overlap(list(texts)))
    return [i for i in range(len(texts)) if i not in trained]


def overlap_note(record: dict[str, Any] | None) -> str:
    """A short line for figures and tables: empty when nothing overlaps."""
    if not record:
        return ""
    if not record.get("checked"):
        return "training prompts unknown: overlap not checked"
    n = record.get("overlap") or 0
    return f"{n} of {record['queries']} queries are training prompts" if n else ""
