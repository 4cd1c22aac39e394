"""Causal layer: where and why the answer enters the compression tokens.

Four interventions on the encoder, each a library function that returns data (the CLI, notebooks
and ``analyses/causal.py`` call the same functions; figures are drawn one layer up, in
:mod:`workbench.report.causal_plot`):

- :func:`~workbench.causal.patching.patch`: activation patching between two queries, per layer and
  position group (query, thought, compression tokens);
- :func:`~workbench.causal.attribution.attribute`: integrated gradients (captum) of a scalar read
  from the embedding with respect to the input token embeddings;
- :func:`~workbench.causal.ablation.ablate`: zero, mean or resample ablation of special tokens,
  measured with the held-out quality metrics of :mod:`workbench.train.quality`;
- :func:`~workbench.causal.steering.steer`: the mean harmful-minus-benign difference of compression
  states, added with a scale to benign queries.

Every intervention runs inside one nnsight trace of the frozen backbone (:mod:`.sites`). The names
below load on first use (torch and the model come with them).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "patch": ".patching",
    "PatchResult": ".patching",
    "attribute": ".attribution",
    "Attribution": ".attribution",
    "ablate": ".ablation",
    "AblationReport": ".ablation",
    "steer": ".steering",
    "SteeringReport": ".steering",
    "Twin": ".steering",
    "read_twins": ".steering",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'workbench.causal' has no attribute {name!r}")
