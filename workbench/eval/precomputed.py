"""Corpus embeddings computed beforehand (``workbench encode --corpus``) used by evaluations and maps.

``attach_corpus_embeddings(enc, ["emb/"])`` checks each folder against the model being evaluated
(backbone, checkpoint weights, dtype, max length, special tokens: the identity its ``index.json``
records) and the corpus file it names (its sha256 must still match), then lets the ``gen`` encoder
take those texts' rows from the folder instead of computing them. A row is used only for the same
text under the same instruction (documents: :data:`~workbench.core.config.DOCUMENT_INSTRUCTION`,
the ``--corpus`` default); every other text goes through the embedding cache as before, so results
do not depend on whether a folder was given. A report records each folder and how many rows it gave.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.errors import WorkbenchError
from ..store.cache import text_hash
from ..store.textio import read_texts
from .corpus import INDEX, corpus_identity, corpus_sha256, read_corpus_embeddings
from .encoders import Encoders


def load_corpus_rows(enc: Encoders, folder: str | Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(instruction, {text hash: row}, record)`` of a finished corpus folder, checked against
    ``enc``'s model and the corpus file the folder's index names."""
    import json

    out = Path(folder).expanduser()
    emb = read_corpus_embeddings(out)  # refuses a missing, unfinished or damaged folder
    index = json.loads((out / INDEX).read_text(encoding="utf-8"))
    recorded = index.get("model") or {}
    instruction = str(recorded.get("instruction", ""))
    mine = corpus_identity(enc.gen, instruction or None)
    differs = sorted(k for k in set(recorded) | set(mine) if recorded.get(k) != mine.get(k))
    if differs:
        raise WorkbenchError(
            f"{out} holds embeddings of another model (differs: {', '.join(differs)})",
            "encode the corpus with the model you evaluate (same checkpoint, --dtype and tokens)",
        )
    corpus = index.get("corpus") or {}
    source = corpus.get("source")
    if not source:
        raise WorkbenchError(
            f"{out}/{INDEX} names no corpus file (it was encoded from Python texts)",
            "encode it with `workbench encode --corpus FILE` so the texts can be matched",
        )
    path = Path(source).expanduser()
    if not path.is_file():
        raise WorkbenchError(
            f"the corpus file {path} named in {out}/{INDEX} is not there",
            "run from the folder it was encoded in, or encode the corpus again",
        )
    texts = read_texts(path, corpus.get("field") or "text")
    if corpus_sha256(texts) != corpus.get("sha256"):
        raise WorkbenchError(
            f"{path} changed since {out} was encoded (its sha256 differs)",
            f"encode it again: `workbench encode --corpus {path} --out NEW_FOLDER`",
        )
    rows = {text_hash(t): emb[i] for i, t in enumerate(texts)}
    record = {"folder": str(out), "corpus": str(path), "rows": len(texts), "instruction": instruction}
    return instruction, rows, record


def attach_corpus_embeddings(enc: Encoders, folders: Sequence[str | Path]) -> None:
    """Let ``enc``'s ``gen`` encoder read the rows of each folder (see the module docstring)."""
    for folder in folders:
        instruction, rows, record = load_corpus_rows(enc, folder)
        enc.add_precomputed(instruction, rows, record)


def corpus_config(enc: Encoders) -> dict[str, Any]:
    """``{"corpus_embeddings": [...]}`` for a report's config when folders were attached, else ``{}``
    (reports made without them keep their old shape)."""
    return {"corpus_embeddings": enc.precomputed_summary()} if enc.precomputed else {}
