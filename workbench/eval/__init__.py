"""Evaluation layer: encoders under comparison, retrieval metrics, safety, reasoning, MTEB and maps.

Each evaluation is a library function that returns data (an :class:`~workbench.eval.results.EvalReport`
or an :class:`~workbench.eval.maps.EmbeddingMap`); the CLI, notebooks and ``analyses/`` call the same
functions. Writing and plotting live one layer up, in :mod:`workbench.report`. The names below load
on first use (torch and the model come with them).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "run_safety": ".safety",
    "run_reasoning": ".reasoning",
    "run_mteb": ".mteb_tasks",
    "run_map": ".maps",
    "build_map": ".maps",
    "Encoders": ".encoders",
    "EvalReport": ".results",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'workbench.eval' has no attribute {name!r}")
