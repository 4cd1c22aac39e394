"""The workbench's one sha256: of a file (read in chunks) and of a text (its UTF-8 bytes)."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 22


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    """The hex sha256 of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
