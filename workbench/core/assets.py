"""Fetch a registry backbone or teacher into the cache ahead of its first use (``workbench fetch``)."""

from __future__ import annotations

from .errors import WorkbenchError
from .paths import dequantised_path
from .registry import BACKBONES, TEACHERS


def is_cached(name: str) -> bool:
    """Whether the registry backbone ``name`` is already dequantised in the cache."""
    spec = BACKBONES[name]
    return dequantised_path(spec.name, spec.sha256).is_dir()


def fetch_asset(name: str) -> str:
    """Download, verify and dequantise a registry backbone, or fetch a teacher; say what is ready."""
    if name in TEACHERS and name != "self":
        from .teacher import load_teacher

        return f"teacher {name} ready ({load_teacher(name).dim}-d)"
    if name not in BACKBONES:
        raise WorkbenchError(
            f"unknown registry name {name!r}", f"use one of {', '.join([*BACKBONES, *TEACHERS])}"
        )
    from .backbone import load_backbone

    info = load_backbone(name).info
    return f"backbone {name} ready: {info.num_layers} layers, hidden {info.hidden_size}, sha256 {info.sha256}"
