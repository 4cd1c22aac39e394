"""What every evaluation and the Figure-1 maps share: the encoders compared, their caches, run metadata.

Encoders: ``gen`` (LLM2Vec-Gen, with the query or document instruction), ``teacher`` (the teacher
on the raw text), ``llm-mean`` and ``llm-last`` (the frozen LLM on the raw text, mean-pooled or
last token). Only ``gen`` sees instructions: the baselines are input-centric. One cache key per
(model, encoder, instruction), so ``workbench eval`` and ``workbench map`` reuse each other's vectors.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.backbone import backbone_probe
from ..core.errors import WorkbenchError
from ..core.hashing import sha256_file
from ..core.model import LLM2VecGen
from ..store.cache import AnswerCache, EmbeddingCache, text_hash
from ..store.checkpoint import WEIGHTS_FILE, is_checkpoint

ENCODERS = ("gen", "teacher", "llm-mean", "llm-last")
PACKAGES = ("llm2vec-gen-workbench", "torch", "transformers", "nnsight", "sentence-transformers", "mteb")

ModelSource = LLM2VecGen | Callable[[], LLM2VecGen]
"""A model, or a function that loads one: evaluations read and check their data before calling it."""


def resolve_model(model: ModelSource) -> LLM2VecGen:
    """The model itself, or what the loader returns."""
    return model if isinstance(model, LLM2VecGen) else model()


def comma_list(spec: str | Sequence[str]) -> list[str]:
    """``"a, b,"`` or ``["a", " b"]`` → ``["a", "b"]`` (stripped, empty entries dropped)."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    return [s.strip() for s in parts if s.strip()]


def parse_encoders(spec: str | Sequence[str]) -> list[str]:
    """``"gen,teacher"`` → ``["gen", "teacher"]``, checked against :data:`ENCODERS`."""
    names = comma_list(spec)
    bad = [n for n in names if n not in ENCODERS]
    if bad or not names:
        raise WorkbenchError(
            f"unknown encoder(s) {', '.join(bad) or '(none)'}", f"use a comma list of {','.join(ENCODERS)}"
        )
    return list(dict.fromkeys(names))


def weights_hash(gen: LLM2VecGen) -> str:
    """sha256 of the trainable tensors (special rows and heads): ties cached embeddings to weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(gen.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def backbone_id(gen: LLM2VecGen) -> str:
    """The GGUF sha256 of a registry backbone, else a hash of its embedding-matrix fingerprint."""
    if gen.backbone.info.sha256:
        return gen.backbone.info.sha256
    probe = backbone_probe(gen.backbone).float().cpu().contiguous().numpy().tobytes()
    return "probe-" + hashlib.sha256(probe).hexdigest()


def model_identity(gen: LLM2VecGen) -> dict[str, str]:
    """Cache-key parts naming the backbone (name and weights) and the checkpoint (its trainable weights)."""
    return {
        "backbone": str(gen.backbone.info.name),
        "backbone_id": backbone_id(gen),
        "checkpoint": weights_hash(gen),
    }


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape the numbers."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


@dataclass
class Encoders:
    """Embeds texts with any of :data:`ENCODERS`, through the on-disk embedding cache.

    The cache key names the backbone (and its weights), max length, dtype and encoder; for ``gen``
    also the checkpoint's weights and the instruction, for ``teacher`` the teacher's name (the
    teacher loads only when a text is missing). The batch size is not part of the key.
    """

    gen: LLM2VecGen
    batch_size: int = 16
    cache: EmbeddingCache = field(default_factory=EmbeddingCache)
    seconds: dict[str, float] = field(default_factory=dict)
    show_progress: bool | None = True
    """Progress bars of the model's encoders (``None``: only when there is more than one batch)."""
    planned: tuple[str, ...] = ()
    """The encoders the run will ask for: with both ``llm-mean`` and ``llm-last`` planned, one LLM
    pass gives both (the other pooling goes to the cache, or is held until asked for without one)."""
    precomputed: list[dict[str, Any]] = field(default_factory=list)
    """Corpus folders whose ``gen`` rows are used (see :mod:`workbench.eval.precomputed`)."""

    def __post_init__(self) -> None:
        identity = model_identity(self.gen)
        self._base = {
            "backbone": identity["backbone"],
            "backbone_id": identity["backbone_id"],
            "max_length": self.gen.config.max_length,
            "dtype": self.gen.config.dtype,
        }
        self._weights = identity["checkpoint"]
        self._tables: dict[str, list[tuple[dict[str, torch.Tensor], int]]] = {}
        self._used: list[set[str]] = []
        self._held: dict[str, dict[str, torch.Tensor]] = {}

    def key(self, encoder: str, instruction: str | None = None) -> dict[str, Any]:
        """The cache key of ``encoder`` (with ``instruction``, which only ``gen`` sees)."""
        if encoder not in ENCODERS:
            raise WorkbenchError(f"unknown encoder {encoder!r}", f"use one of {', '.join(ENCODERS)}")
        key: dict[str, Any] = {**self._base, "encoder": encoder}
        if encoder == "gen":
            key |= {"weights": self._weights, "instruction": instruction or ""}
        elif encoder == "teacher":
            key |= {"teacher": self.gen.config.teacher}  # the name load_teacher gives the teacher
        return key

    def add_precomputed(
        self, instruction: str, rows: dict[str, torch.Tensor], record: dict[str, Any]
    ) -> None:
        """Use ``rows`` (text hash → ``gen`` embedding under ``instruction``) instead of computing them;
        ``record`` describes their source in reports."""
        self._tables.setdefault(instruction or "", []).append((rows, len(self.precomputed)))
        self.precomputed.append(record | {"used": 0})
        self._used.append(set())

    def precomputed_summary(self) -> list[dict[str, Any]]:
        """Each attached corpus folder and how many distinct texts it gave (empty: none attached)."""
        return [dict(r) for r in self.precomputed]

    def _from_precomputed(self, texts: list[str], instruction: str | None) -> dict[int, torch.Tensor]:
        """Rows of ``texts`` found in the attached folders for ``instruction``, by position."""
        found: dict[int, torch.Tensor] = {}
        for rows, n in self._tables.get(instruction or "", []):
            for i, text in enumerate(texts):
                h = text_hash(text)
                if i not in found and h in rows:
                    found[i] = rows[h]
                    self._used[n].add(h)
            self.precomputed[n]["used"] = len(self._used[n])
        return found

    def embed(self, encoder: str, texts: Sequence[str], instruction: str | None = None) -> torch.Tensor:
        """``[len(texts), D]`` float32; ``instruction`` applies to ``gen`` only."""
        if encoder == "gen" and self._tables.get(instruction or ""):
            texts = list(texts)
            found = self._from_precomputed(texts, instruction)
            if found:
                rest = [i for i in range(len(texts)) if i not in found]
                missing = [texts[i] for i in rest]
                computed = self._embed_cached(encoder, missing, instruction) if rest else None
                dim = next(iter(found.values())).shape[0]
                out = torch.empty(len(texts), dim)
                for i, row in found.items():
                    out[i] = row
                if computed is not None:
                    out[rest] = computed
                return out
        return self._embed_cached(encoder, texts, instruction)

    def _embed_cached(self, encoder: str, texts: Sequence[str], instruction: str | None) -> torch.Tensor:
        """Rows through the embedding cache, computing the missing ones (no corpus-folder lookup)."""
        key = self.key(encoder, instruction)
        gen, bs, show = self.gen, self.batch_size, self.show_progress
        if encoder == "gen":
            fn = lambda t: gen.embed(t, instruction=instruction, batch_size=bs, show_progress=show)  # noqa: E731
        elif encoder == "teacher":
            fn = lambda t: gen.load_teacher().encode(t, batch_size=bs)  # noqa: E731
        else:
            pooling = encoder.split("-")[1]
            fn = lambda t: self._llm_pooled(t, pooling)  # noqa: E731
        start = time.perf_counter()
        out = self.cache.get_or_compute(key, list(texts), fn)
        self.seconds[encoder] = self.seconds.get(encoder, 0.0) + time.perf_counter() - start
        return out

    def _llm_pooled(self, texts: list[str], pooling: str) -> torch.Tensor:
        """``llm-<pooling>`` rows; computes the other pooling in the same pass when it is planned."""
        other = "last" if pooling == "mean" else "mean"
        held = self._held.setdefault(pooling, {})
        unique = list(dict.fromkeys(texts))
        rows = {t: held.pop(t) for t in unique if t in held}
        todo = [t for t in unique if t not in rows]
        if todo:
            share = f"llm-{other}" in self.planned
            got = self.gen.llm_embed_poolings(
                todo,
                (pooling, other) if share else (pooling,),
                batch_size=self.batch_size,
                show_progress=self.show_progress,
            )
            rows |= {t: got[pooling][i] for i, t in enumerate(todo)}
            if share and self.cache.enabled:  # the other encoder's request then finds them cached
                self.cache.put(self.key(f"llm-{other}"), todo, got[other])
            elif share:
                self._held.setdefault(other, {}).update({t: got[other][i] for i, t in enumerate(todo)})
        return torch.stack([rows[t] for t in texts])

    def cache_summary(self) -> dict[str, Any]:
        """Where the embedding cache lives and how many texts it served and computed."""
        return {"root": str(self.cache.root), "hits": self.cache.hits, "misses": self.cache.misses}


def open_encoders(
    gen: LLM2VecGen, *, batch_size: int = 16, cache_dir: Path | None = None, use_cache: bool = True
) -> Encoders:
    """:class:`Encoders` over ``cache_dir/embeddings`` (default: the workbench cache)."""
    store = EmbeddingCache(cache_dir / "embeddings" if cache_dir else None, enabled=use_cache)
    return Encoders(gen, batch_size=batch_size, cache=store)


def answer_key(gen: LLM2VecGen, max_new_tokens: int) -> dict[str, Any]:
    """Cache key of the frozen LLM's greedy chat answers (the special rows play no part)."""
    return {
        "backbone": gen.backbone.info.name,
        "backbone_id": backbone_id(gen),
        "kind": "answer",
        "max_new_tokens": max_new_tokens,
        "dtype": gen.config.dtype,
    }


def llm_answers(
    gen: LLM2VecGen,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    cache_root: Path | None = None,
    enabled: bool = True,
    cache: AnswerCache | None = None,
    batch_size: int = 32,
    show_progress: bool | None = True,
) -> list[str]:
    """The frozen LLM's own greedy chat answers, cached per backbone, length and dtype.

    ``batch_size`` 32: a greedy step costs about the same for 8 prompts as for 32 on a CPU (Qwen2.5-
    Coder-0.5B, 32 AdvBench-IR prompts, 48 tokens: 43 s at 32 against 91 s at 8 on 2 cores).

    ``cache`` is used as given; else the cache lives in ``cache_root/answers`` (default: the
    workbench cache), switched off with ``enabled=False``.
    """
    if cache is None:
        cache = AnswerCache(cache_root / "answers" if cache_root else None, enabled=enabled)
    def answer(texts: list[str]) -> list[str]:
        return gen.answer(
            texts, max_new_tokens=max_new_tokens, batch_size=batch_size, show_progress=show_progress
        )

    return cache.get_or_compute(answer_key(gen, max_new_tokens), list(prompts), answer)


def run_metadata(
    gen: LLM2VecGen, model: str, checkpoint: Path | None, enc: Encoders, **config: Any
) -> dict[str, Any]:
    """Everything needed to reproduce a run: model, hashes, dtype, batch size, versions."""
    from ..store.loading import packaged_checkpoint

    ckpt = checkpoint or (Path(model) if is_checkpoint(model) else None)
    ckpt = ckpt or (packaged_checkpoint(model) if gen.trained else None)
    weights = Path(ckpt) / WEIGHTS_FILE if ckpt is not None else None
    info = gen.backbone.info
    teacher = gen.config.teacher
    return {
        "model": model,
        "backbone": info.name,
        "backbone_source": info.source,
        "backbone_sha256": info.sha256,
        "checkpoint": str(ckpt) if ckpt is not None else None,
        "checkpoint_sha256": sha256_file(weights) if weights is not None and weights.is_file() else None,
        "trained": gen.trained,
        "gen_config": gen.config.to_dict(),
        "teacher": teacher,
        "dtype": gen.config.dtype,
        "precision": dict(gen.precision),
        "batch_size": enc.batch_size,
        "max_length": gen.config.max_length,
        "versions": package_versions(),
        **config,
    }
