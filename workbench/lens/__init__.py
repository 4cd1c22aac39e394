"""Lens layer: the logit lens (nnsight, TransformerLens, NDIF remote) and the latent lens.

``workbench.lens`` re-exports the logit lens, so ``from workbench.lens import logit_lens`` keeps working.
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

__all__ = [
    "BACKENDS",
    "LensConfig",
    "LensReading",
    "add_answers",
    "check_top_k",
    "logit_lens",
    "parse_layers",
    "remote_logit_lens",
    "resolve_layers",
]
