"""Where the workbench keeps downloaded wheels, extracted GGUF files and dequantised backbones."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import WorkbenchError


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


def require_file(path: str | Path, what: str, fix: str = "check the path") -> Path:
    """``path`` (user-expanded) if it is a file; else a one-line error saying it is missing or a folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise WorkbenchError(
            f"{what} {path} is a folder, not a file", "name a file (for example one inside it)"
        )
    if not path.is_file():
        raise WorkbenchError(f"{what} {path} does not exist", fix)
    return path
