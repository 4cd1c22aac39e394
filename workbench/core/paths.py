"""Where the workbench keeps downloaded wheels, extracted GGUF files and dequantised backbones."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root: ``$WORKBENCH_CACHE``, else ``$XDG_CACHE_HOME/llm2vec-gen-workbench``."""
    env = os.environ.get("WORKBENCH_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
        root = root / "llm2vec-gen-workbench"
    root.mkdir(parents=True, exist_ok=True)
    return root


def dequantised_path(label: str, sha256: str) -> Path:
    """The cached dequantised folder of the GGUF called ``label`` whose file has this sha256."""
    return cache_dir() / "backbones" / f"{label}-{sha256[:16]}"


def packaged_checkpoints_dir() -> Path:
    """The folder of trained checkpoints shipped inside the package (one sub-folder per backbone)."""
    return Path(__file__).resolve().parents[1] / "checkpoints"
