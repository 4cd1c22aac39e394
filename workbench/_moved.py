"""Old flat module paths (``workbench.model``, ``workbench.eval_safety``, ...) for one more release.

Version 0.2 grouped the modules into layer subpackages (see CHANGELOG.md). Importing an old path
still works and warns once with a :class:`DeprecationWarning` naming the new one; the names it
gives are the new module's own objects. ``workbench.lens`` and ``workbench.cli`` are packages now
and re-export what their old modules' users imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings
from importlib import import_module
from types import ModuleType

MOVED = {
    "api": "store.loading",
    "atomic": "store.atomic",
    "backbone": "core.backbone",
    "card": "report.card",
    "checkpoint": "store.checkpoint",
    "cli_eval": "cli.eval",
    "cli_export": "cli.export",
    "cli_figures": "cli.figures",
    "cli_lens": "cli.lens",
    "cli_lens_index": "cli.latent_lens",
    "cli_map": "cli.map",
    "cli_quality": "cli.quality",
    "cli_responses": "cli.respond",
    "cli_train": "cli.train",
    "config": "core.config",
    "embedding_cache": "store.cache",
    "errors": "core.errors",
    "eval_common": "eval.encoders",
    "eval_mteb": "eval.mteb_tasks",
    "eval_reasoning": "eval.reasoning",
    "eval_report": "report.eval_report",
    "eval_safety": "eval.safety",
    "fetch": "core.fetch",
    "figures": "report.figures",
    "figures_runner": "report.figures_runner",
    "generation": "core.generation",
    "inputs": "core.inputs",
    "latent_lens": "lens.latent",
    "lens_plot": "report.lens_plot",
    "lens_tl": "lens.tl_backend",
    "losses": "core.losses",
    "maps": "eval.maps",
    "maps_output": "report.map_figures",
    "model": "core.model",
    "official": "store.official",
    "pairs": "train.pairs",
    "paths": "core.paths",
    "prompt_sources": "train.prompts",
    "quality": "train.quality",
    "refusals": "eval.refusals",
    "registry": "core.registry",
    "remote": "lens.remote",
    "responding": "train.responding",
    "retrieval": "eval.retrieval",
    "teacher": "core.teacher",
    "textio": "store.textio",
    "tracing": "core.tracing",
    "train_config": "train.config",
    "trainer": "train.trainer",
    "zoo": "store.zoo",
}
"""Old module name under ``workbench.`` -> its new dotted path under ``workbench.``."""


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``workbench.<old>`` and loads it as a view of the module's new home."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        prefix, _, name = fullname.partition(".")
        if prefix != "workbench" or name not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return ModuleType(spec.name)

    def exec_module(self, module: ModuleType) -> None:
        new = "workbench." + MOVED[module.__name__.partition(".")[2]]
        warnings.warn(
            f"{module.__name__} moved to {new}; the old path goes away in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        real = import_module(new)
        module.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})
        module.__doc__ = real.__doc__


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())
