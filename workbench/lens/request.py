"""One lens request read end to end: what ``workbench lens`` asks for, as one library call.

:func:`read_lens` checks a :class:`LensRequest` before any work, then reads the logit lens on the
backbone here (nnsight or TransformerLens) or on NDIF (``remote``), adds the latent lens's nearest
response tokens and the decoded answers (and the LLM's own). Presenting and writing the readings is
:mod:`workbench.report.lens_output`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import WorkbenchError
from ..core.inputs import check_texts
from ..core.registry import DEFAULT_BACKBONE
from .logit import BACKENDS, LensConfig, LensReading, add_answers, check_top_k, logit_lens, remote_logit_lens

if TYPE_CHECKING:
    from ..core.model import LLM2VecGen

Loader = Callable[..., "LLM2VecGen"]
"""Loads ``(model, checkpoint, untrained)``, plus ``dtype=`` and ``device=`` when the request sets them;
:func:`workbench.load` unless the caller has its own."""


@dataclass
class LensRequest:
    """Queries, the model to read them on, and what to add to each reading."""

    queries: Sequence[str] = ()
    file: Path | None = None
    """More queries: a .txt file (one per line) or .jsonl (see ``field``)."""
    field: str = "text"
    model: str = DEFAULT_BACKBONE
    checkpoint: Path | None = None
    untrained: bool = False
    dtype: str = "float32"
    """The LLM's dtype (``auto``: bfloat16 where native); see :func:`workbench.load`."""
    device: str = "auto"
    config: LensConfig = dataclasses.field(default_factory=LensConfig)
    generate: bool | None = None
    """Decode each embedding by generation; None: on, except with ``remote``."""
    compare: bool = False
    """Add the frozen LLM's own chat answer to the bare query."""
    max_new_tokens: int = 48
    latent: bool = False
    """Add the latent lens's nearest response tokens of each compression state."""
    index: Path | None = None
    """Latent-lens index folder (default: :func:`workbench.lens.latent.default_index_path`)."""
    remote: bool = False
    """Read on NDIF (tokens only: no generation, latent lens or TransformerLens)."""


def request_texts(request: LensRequest) -> list[str]:
    """The queries of ``request`` and those of its file, checked."""
    queries = request.queries
    texts = [queries] if isinstance(queries, str) else list(queries)
    if request.file is not None:
        from ..store.textio import read_texts

        texts += read_texts(request.file, request.field)
    if not texts:
        raise WorkbenchError(
            "no queries given", 'pass a query, e.g. workbench lens "How do I bake bread?", or --file'
        )
    return check_texts(texts)


def check_remote_request(request: LensRequest) -> None:
    """Decoding, the latent lens and TransformerLens all need the backbone here: not with ``remote``."""
    asked = [
        name
        for name, on in (
            ("--generate", request.generate),
            ("--compare", request.compare),
            ("--latent", request.latent),
            ("--backend transformer-lens", request.config.backend != "nnsight"),
        )
        if on
    ]
    if asked:
        raise WorkbenchError(
            f"{asked[0]} needs the backbone on this machine, and --remote leaves it on NDIF",
            f"drop {asked[0]} (the remote lens reads tokens only)",
        )


def read_lens(request: LensRequest, load: Loader | None = None) -> list[LensReading]:
    """Read every query of ``request``: logit lens, then latent lens and answers where asked.

    Bad input (no queries, top-k, backend, options that need the backbone with ``remote``, a missing
    latent index) is refused before the logit lens runs.
    """
    config = request.config
    texts = request_texts(request)
    check_top_k(config.top_k, 10**9)
    if config.backend not in BACKENDS:
        raise WorkbenchError(f"unknown lens backend {config.backend!r}", f"use one of {', '.join(BACKENDS)}")
    if request.remote:
        check_remote_request(request)
        return remote_logit_lens(str(request.checkpoint or request.model), texts, config)
    # dtype and device go to the loader only when asked for: a (model, checkpoint, untrained) loader works
    chosen = {"dtype": request.dtype, "device": request.device}
    options = {k: v for k, v in chosen.items() if v != getattr(LensRequest, k)}
    gen = (load or _load)(request.model, request.checkpoint, request.untrained, **options)
    latent_index = None
    if request.latent:
        from .latentlens_format import open_latent_index

        latent_index = open_latent_index(gen, request.index)  # a workbench or a latentlens folder
    readings = logit_lens(gen, texts, config)
    if latent_index is not None:
        states = gen.compression_states(texts, instruction=config.instruction, batch_size=config.batch_size)
        for reading, h in zip(readings, states, strict=True):
            reading.latent = latent_index.nearest(h, config.top_k, distinct=True)
    generate = True if request.generate is None else request.generate
    if generate or request.compare:
        add_answers(
            gen,
            readings,
            generate=generate,
            compare=request.compare,
            max_new_tokens=request.max_new_tokens,
            batch_size=config.batch_size,
        )
    return readings


def _load(
    model: str, checkpoint: Path | None, untrained: bool, dtype: str = "float32", device: str = "auto"
) -> LLM2VecGen:
    from ..store.loading import load

    return load(model, checkpoint=checkpoint, untrained=untrained, dtype=dtype, device=device)
