"""llm2vec-gen workbench: train, use and look inside LLM2Vec-Gen embeddings.

Heavy modules (torch, transformers, nnsight) load on first use, so ``import workbench`` is cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from . import _moved
from .core.errors import WorkbenchError
from .core.extensions import provide

# The composition root: core objects call these higher-layer functions without importing them.
provide("save_checkpoint", "workbench.store.checkpoint", "save_checkpoint")
provide("lens", "workbench.lens.logit", "lens_with_options")
provide("display", "workbench.report.notebook", "display_object")
provide("display_html", "workbench.report.notebook", "object_html")
provide("checkpoint_markdown", "workbench.report.notebook", "checkpoint_markdown")

_moved.install()  # old flat module paths keep working for one release, with a warning

__version__ = "0.2.0"

_LAZY = {
    "load": ".store.loading",
    "LLM2VecGen": ".core.model",
    "GenConfig": ".core.config",
    "load_backbone": ".core.backbone",
    "load_teacher": ".core.teacher",
    "QUERY_INSTRUCTION": ".core.config",
    "DOCUMENT_INSTRUCTION": ".core.config",
    "STS_INSTRUCTION": ".core.config",
    "logit_lens": ".lens.logit",
    "LensConfig": ".lens.logit",
    "BACKBONES": ".core.registry",
    "TEACHERS": ".core.registry",
}

__all__ = [  # noqa: RUF022 - grouped by purpose
    "load",
    "LLM2VecGen",
    "GenConfig",
    "load_backbone",
    "load_teacher",
    "QUERY_INSTRUCTION",
    "DOCUMENT_INSTRUCTION",
    "STS_INSTRUCTION",
    "logit_lens",
    "LensConfig",
    "BACKBONES",
    "TEACHERS",
    "WorkbenchError",
    "__version__",
]

if TYPE_CHECKING:
    from .core.backbone import load_backbone
    from .core.config import DOCUMENT_INSTRUCTION, QUERY_INSTRUCTION, STS_INSTRUCTION, GenConfig
    from .core.model import LLM2VecGen
    from .core.registry import BACKBONES, TEACHERS
    from .core.teacher import load_teacher
    from .lens.logit import LensConfig, logit_lens
    from .store.loading import load


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
