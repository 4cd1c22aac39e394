"""What a checkpoint folder holds (workbench or official layout), read without loading its backbone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoint import read_checkpoint
from .official import is_official, read_official


def describe_checkpoint(path: str | Path) -> dict[str, Any]:
    """A JSON-ready summary of a checkpoint folder: format, tokens, shapes or config, backbone."""
    if is_official(path):
        ck = read_official(path)
        return {
            "format": "official llm2vec-gen",
            "base_model": ck.base_model,
            "tokens": {"thought": ck.num_thought, "compress": ck.num_compress, "strings": ck.special_tokens},
            "tensors": {k: list(v.shape) for k, v in ck.tensors.items()},
            "max_length": ck.max_length,
            "dtype": ck.dtype,
            "teacher": ck.teacher,
        }
    data = read_checkpoint(path)
    return {k: data.meta[k] for k in ("config", "backbone", "tokens", "heads", "trained")}
