"""llm2vec-gen workbench: train, use and look inside LLM2Vec-Gen embeddings.

Heavy modules (torch, transformers, nnsight) load on first use, so ``import workbench`` is cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import WorkbenchError

__version__ = "0.1.0"

_LAZY = {
    "load": ".api",
    "LLM2VecGen": ".model",
    "GenConfig": ".config",
    "load_backbone": ".backbone",
    "load_teacher": ".teacher",
    "QUERY_INSTRUCTION": ".config",
    "DOCUMENT_INSTRUCTION": ".config",
    "STS_INSTRUCTION": ".config",
    "logit_lens": ".lens",
    "LensConfig": ".lens",
    "BACKBONES": ".registry",
    "TEACHERS": ".registry",
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
    from .api import load
    from .backbone import load_backbone
    from .config import DOCUMENT_INSTRUCTION, QUERY_INSTRUCTION, STS_INSTRUCTION, GenConfig
    from .lens import LensConfig, logit_lens
    from .model import LLM2VecGen
    from .registry import BACKBONES, TEACHERS
    from .teacher import load_teacher


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
