"""Lens layer: the logit lens (nnsight, TransformerLens, NDIF remote) and the latent lens.

``workbench.lens`` re-exports the logit lens, so ``from workbench.lens import logit_lens`` keeps working,
and :func:`read_lens`, what ``workbench lens`` reads. The latent lens is :mod:`workbench.lens.latent`.
"""

from __future__ import annotations

from .logit import (
    BACKENDS,
    LensConfig,
    LensReading,
    add_answers,
    check_top_k,
    logit_lens,
    parse_layers,
    remote_logit_lens,
    resolve_layers,
)
from .request import LensRequest, read_lens

__all__ = [
    "BACKENDS",
    "LensConfig",
    "LensReading",
    "LensRequest",
    "add_answers",
    "check_top_k",
    "logit_lens",
    "parse_layers",
    "read_lens",
    "remote_logit_lens",
    "resolve_layers",
]
