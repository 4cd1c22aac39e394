"""On-disk caches of embeddings (safetensors) and generated answers (JSON), so re-plotting is cheap.

An entry lives in one file per key: the key is a mapping such as ``{"backbone": ..., "checkpoint":
..., "instruction": ..., "encoder": ...}`` and rows inside the file are addressed by the sha256 of
each text. ``get_or_compute`` computes only the texts that are missing, chunk by chunk, merging
each chunk in and rewriting the file atomically (temporary file, then ``os.replace``), so a long
run that is stopped keeps what it computed. Nothing is pickled.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..core.errors import WorkbenchError
from ..core.hashing import sha256_text
from ..core.paths import cache_dir
from .atomic import atomic_write

log = logging.getLogger("workbench")

FORMAT = "workbench-cache-1"


def text_hash(text: str) -> str:
    """sha256 of the UTF-8 text: the row address inside a cache file."""
    return sha256_text(text)


def cache_key(parts: Mapping[str, Any]) -> str:
    """A stable hash of the key parts (order of the mapping does not matter)."""
    blob = json.dumps(dict(parts), sort_keys=True, ensure_ascii=False, default=str)
    return sha256_text(blob)


def _slug(value: Any) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", str(value)).strip("-.")
    return text[-48:] or "x"


class _KeyedFiles:
    """Shared layout: ``root/<backbone>/<encoder or kind>-<key>.<suffix>``."""

    suffix = ""
    default_sub = ""
    default_chunk = 256

    def __init__(
        self, root: str | Path | None = None, *, enabled: bool = True, chunk_size: int | None = None
    ) -> None:
        self.root = Path(root).expanduser() if root is not None else cache_dir() / self.default_sub
        self.enabled = enabled
        self.chunk_size = chunk_size or self.default_chunk
        """Texts computed between two writes of the cache file."""
        self.hits = 0
        """Texts served from the cache (each position counts)."""
        self.misses = 0
        """Distinct texts computed."""
        self._fresh: dict[Path, set[str]] = {}

    def path(self, key_parts: Mapping[str, Any]) -> Path:
        """The file that holds the rows for this key."""
        name = key_parts.get("encoder", key_parts.get("kind", "entry"))
        folder = _slug(key_parts.get("backbone", "any"))
        return self.root / folder / f"{_slug(name)}-{cache_key(key_parts)[:24]}{self.suffix}"

    def _count(self, hits: int, misses: int) -> None:
        self.hits += hits
        self.misses += misses


class EmbeddingCache(_KeyedFiles):
    """Embeddings per (key, text), one safetensors file per key (``vectors`` plus row hashes)."""

    suffix = ".safetensors"
    default_sub = "embeddings"

    def _read(self, path: Path) -> dict[str, torch.Tensor]:
        if not path.is_file():
            return {}
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                vectors = f.get_tensor("vectors")
            hashes = json.loads(meta.get("hashes", "[]"))
        except Exception as err:  # a damaged file is recomputed, never trusted
            log.warning("ignoring unreadable embedding cache %s (%s)", path, type(err).__name__)
            return {}
        if meta.get("format") != FORMAT or len(hashes) != len(vectors):
            log.warning("ignoring embedding cache %s with an unknown layout", path)
            return {}
        return {h: vectors[i] for i, h in enumerate(hashes)}

    def _write(self, path: Path, rows: dict[str, torch.Tensor], key_parts: Mapping[str, Any]) -> None:
        from safetensors.torch import save_file

        hashes = list(rows)
        vectors = torch.stack([rows[h] for h in hashes]).float().contiguous()
        meta = {
            "format": FORMAT,
            "hashes": json.dumps(hashes),
            "key": json.dumps(dict(key_parts), sort_keys=True, default=str),
        }
        atomic_write(path, lambda tmp: save_file({"vectors": vectors}, str(tmp), metadata=meta))

    def put(self, key_parts: Mapping[str, Any], texts: Sequence[str], vectors: torch.Tensor) -> None:
        """Store rows computed alongside others (one pass, two poolings); not counted as hits or misses."""
        if not self.enabled or not texts:
            return
        path = self.path(key_parts)
        new = {text_hash(t): vectors[i].detach().float().cpu() for i, t in enumerate(texts)}
        dim = int(vectors.shape[1])
        rows = {h: v for h, v in self._read(path).items() if int(v.shape[0]) == dim} | new
        self._write(path, rows, key_parts)
        self._fresh.setdefault(path, set()).update(new)

    def get_or_compute(
        self,
        key_parts: Mapping[str, Any],
        texts: Sequence[str],
        fn: Callable[[list[str]], torch.Tensor],
        *,
        _retry: bool = True,
    ) -> torch.Tensor:
        """Embeddings ``[len(texts), D]`` (float32); ``fn`` sees only missing texts, ``chunk_size`` at
        a time, and each chunk is written before the next is computed."""
        texts = list(texts)
        if not self.enabled:
            self._count(0, len(texts))
            return fn(texts).float().cpu() if texts else torch.empty(0, 0)
        path = self.path(key_parts)
        rows = self._read(path)
        missing = list(dict.fromkeys(t for t in texts if text_hash(t) not in rows))
        # rows put() in this run were computed now, not reused: the first read counts them as computed
        fresh = self._fresh.get(path, set())
        first = {h for h in map(text_hash, texts) if h in fresh and h in rows}
        fresh -= first
        served = len(texts) - sum(text_hash(t) not in rows for t in texts)
        self._count(served - sum(text_hash(t) in first for t in texts), len(missing) + len(first))
        for start in range(0, len(missing), self.chunk_size):
            part = missing[start : start + self.chunk_size]
            new = fn(part).detach().float().cpu()
            if new.dim() != 2 or len(new) != len(part):
                raise WorkbenchError(
                    f"the encoder returned shape {list(new.shape)} for {len(part)} texts",
                    "return one row per text",
                )
            dim = int(new.shape[1])
            merged = self._read(path) | rows | {text_hash(t): new[i] for i, t in enumerate(part)}
            rows = {h: v for h, v in merged.items() if int(v.shape[0]) == dim}  # keep another
            if len(rows) != len(merged):  # process's rows; drop rows of another size
                log.warning("embedding size changed under %s: recomputing its rows", path.name)
            self._write(path, rows, key_parts)
        if any(text_hash(t) not in rows for t in texts):
            if not _retry:
                raise WorkbenchError(
                    "the encoder returns embeddings of different sizes from call to call",
                    "use an encoder with a fixed output size",
                )
            return self.get_or_compute(key_parts, texts, fn, _retry=False)
        if not texts:
            return torch.empty(0, 0)
        return torch.stack([rows[text_hash(t)] for t in texts]).float()


class AnswerCache(_KeyedFiles):
    """Generated texts per (key, prompt), one JSON file per key: ``{"key": ..., "rows": {hash: text}}``."""

    suffix = ".json"
    default_sub = "answers"
    default_chunk = 32

    def _read(self, path: Path) -> dict[str, str]:
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            rows = data["rows"]
            if data.get("format") != FORMAT or not isinstance(rows, dict):
                raise ValueError("layout")
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("ignoring unreadable answer cache %s (%s)", path, type(err).__name__)
            return {}
        return {str(k): str(v) for k, v in rows.items()}

    def get_or_compute(
        self,
        key_parts: Mapping[str, Any],
        prompts: Sequence[str],
        fn: Callable[[list[str]], list[str]],
    ) -> list[str]:
        """One text per prompt; ``fn`` sees only the prompts not cached yet, ``chunk_size`` at a time,
        and each chunk is written before the next is generated."""
        prompts = list(prompts)
        if not self.enabled:
            self._count(0, len(prompts))
            return list(fn(prompts)) if prompts else []
        path = self.path(key_parts)
        rows = self._read(path)
        missing = list(dict.fromkeys(p for p in prompts if text_hash(p) not in rows))
        self._count(len(prompts) - sum(text_hash(p) not in rows for p in prompts), len(missing))
        for start in range(0, len(missing), self.chunk_size):
            part = missing[start : start + self.chunk_size]
            new = list(fn(part))
            if len(new) != len(part):
                raise WorkbenchError(
                    f"the generator returned {len(new)} texts for {len(part)} prompts",
                    "return one text per prompt",
                )
            rows = self._read(path) | rows | {text_hash(p): t for p, t in zip(part, new, strict=True)}
            data = {"format": FORMAT, "key": dict(key_parts), "rows": rows}
            blob = json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True, default=str)
            atomic_write(path, lambda tmp, blob=blob: tmp.write_text(blob + "\n", encoding="utf-8"))
        return [rows[text_hash(p)] for p in prompts]
