"""Extension points: functions of higher layers that core objects call without importing them.

``LLM2VecGen.save`` writes a checkpoint folder (:mod:`workbench.store`) and ``LLM2VecGen.lens`` runs
the logit lens (:mod:`workbench.lens`). The core may not import those layers, so the package root
(``workbench/__init__.py``, the composition root) names the provider of each extension point here,
and the provider module is imported on first use. Importing any ``workbench`` module runs the root
first, so the providers are always named before a core object can need them.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

from .errors import WorkbenchError

_PROVIDERS: dict[str, tuple[str, str]] = {}


def provide(point: str, module: str, attribute: str) -> None:
    """Name ``module.attribute`` as the function behind the extension point ``point``."""
    _PROVIDERS[point] = (module, attribute)


def extension(point: str) -> Callable[..., Any]:
    """The function behind ``point``, importing its module on first use."""
    if point not in _PROVIDERS:
        raise WorkbenchError(
            f"no provider for {point!r}", "import workbench (its root names the providers) before use"
        )
    module, attribute = _PROVIDERS[point]
    return getattr(import_module(module), attribute)
