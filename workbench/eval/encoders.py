"""What every evaluation shares: the encoders compared, their embedding cache, and run metadata.

Encoders: ``gen`` (LLM2Vec-Gen, with the query or document instruction), ``teacher`` (the teacher
on the raw text), ``llm-mean`` and ``llm-last`` (the frozen LLM on the raw text, mean-pooled or
last token). Only ``gen`` sees instructions: the baselines are input-centric.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.backbone import backbone_probe
from ..core.errors import WorkbenchError
from ..core.model import LLM2VecGen
from ..store.cache import AnswerCache, EmbeddingCache
from ..store.checkpoint import WEIGHTS_FILE, is_checkpoint

ENCODERS = ("gen", "teacher", "llm-mean", "llm-last")
PACKAGES = ("llm2vec-gen-workbench", "torch", "transformers", "nnsight", "sentence-transformers", "mteb")


def parse_encoders(spec: str) -> list[str]:
    """``"gen,teacher"`` → ``["gen", "teacher"]``, checked against :data:`ENCODERS`."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in ENCODERS]
    if bad or not names:
        raise WorkbenchError(
            f"unknown encoder(s) {', '.join(bad) or '(none)'}", f"use a comma list of {','.join(ENCODERS)}"
        )
    return list(dict.fromkeys(names))


def file_sha256(path: Path) -> str:
    """sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    """Embeds texts with any of :data:`ENCODERS`, through the on-disk embedding cache."""

    gen: LLM2VecGen
    batch_size: int = 16
    cache: EmbeddingCache = field(default_factory=EmbeddingCache)
    seconds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        info = self.gen.backbone.info
        self._base = {
            "backbone": info.name,
            "backbone_id": backbone_id(self.gen),
            "max_length": self.gen.config.max_length,
            "dtype": self.gen.config.dtype,
        }
        self._weights = weights_hash(self.gen)

    def embed(self, encoder: str, texts: Sequence[str], instruction: str | None = None) -> torch.Tensor:
        """``[len(texts), D]`` float32; ``instruction`` applies to ``gen`` only."""
        key: dict[str, Any] = {**self._base, "encoder": encoder}
        if encoder == "gen":
            key |= {"weights": self._weights, "instruction": instruction or ""}
            fn = lambda t: self.gen.encode(  # noqa: E731
                t, instruction=instruction, batch_size=self.batch_size, show_progress=True
            )
        elif encoder == "teacher":
            teacher = self.gen.load_teacher()
            key |= {"teacher": teacher.name}
            fn = lambda t: teacher.encode(t, batch_size=self.batch_size)  # noqa: E731
        elif encoder in ("llm-mean", "llm-last"):
            pooling = encoder.split("-")[1]
            fn = lambda t: self.gen.llm_embed(  # noqa: E731
                t, pooling=pooling, batch_size=self.batch_size, show_progress=True
            )
        else:
            raise WorkbenchError(f"unknown encoder {encoder!r}", f"use one of {', '.join(ENCODERS)}")
        start = time.perf_counter()
        out = self.cache.get_or_compute(key, list(texts), fn)
        self.seconds[encoder] = self.seconds.get(encoder, 0.0) + time.perf_counter() - start
        return out


def llm_answers(
    gen: LLM2VecGen, prompts: Sequence[str], *, max_new_tokens: int, cache_root: Path | None, enabled: bool
) -> list[str]:
    """The frozen LLM's own greedy chat answers, cached per backbone and length."""
    info = gen.backbone.info
    key = {
        "backbone": info.name,
        "backbone_id": backbone_id(gen),
        "kind": "answer",
        "max_new_tokens": max_new_tokens,
        "dtype": gen.config.dtype,
    }
    cache = AnswerCache(cache_root / "answers" if cache_root else None, enabled=enabled)
    return cache.get_or_compute(
        key, list(prompts), lambda p: gen.answer(p, max_new_tokens=max_new_tokens, show_progress=True)
    )


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
        "checkpoint_sha256": file_sha256(weights) if weights is not None and weights.is_file() else None,
        "trained": gen.trained,
        "gen_config": gen.config.to_dict(),
        "teacher": teacher,
        "dtype": gen.config.dtype,
        "batch_size": enc.batch_size,
        "max_length": gen.config.max_length,
        "versions": package_versions(),
        **config,
    }
