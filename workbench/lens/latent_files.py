"""The latent-lens index on disk: a folder of ``states.safetensors`` and ``index.json``.

``states.safetensors`` holds ``states`` [E, H] float16 and ``backbone_probe`` (the weight
fingerprint of :func:`workbench.core.backbone.backbone_probe`); ``index.json`` holds the backbone the
index was built on, the layer, one column per entry field (token id, token text, source text id,
token position, character span) and the source texts. Nothing is pickled; both files are written
atomically. This module reads and writes the folder as plain values; :class:`LatentIndex` is built
from them in :mod:`workbench.lens.latent_index`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..core.backbone import check_recorded_backbone
from ..core.errors import WorkbenchError
from ..store.atomic import atomic_write, undo_on_failure

FORMAT = "llm2vec-gen-latent-index"
FORMAT_VERSION = 1
STATES_FILE = "states.safetensors"
INDEX_FILE = "index.json"
BUILD_COMMAND = "workbench latent-lens build"
"""The command that builds an index, as the fixes of errors name it."""
COLUMNS = {  # index.json column -> LatentIndex field
    "token_id": "token_ids",
    "token": "tokens",
    "text_id": "text_ids",
    "position": "positions",
    "span": "spans",
}


def rebuild_fix(path: Path) -> str:
    """The fix for an index folder that cannot be read."""
    return f"rebuild it with `{BUILD_COMMAND} --out {path}`"


def write_index_folder(
    path: str | Path,
    *,
    states: torch.Tensor,
    probe: torch.Tensor,
    columns: dict[str, list[Any]],
    texts: list[str],
    layer: int,
    backbone: dict[str, Any],
    built: dict[str, Any],
) -> Path:
    """Write the folder ``path``; ``columns`` maps each :data:`COLUMNS` field name to its values."""
    from safetensors.torch import save_file

    path = Path(path).expanduser()
    tensors = {
        "states": states.to(torch.float16).contiguous(),
        "backbone_probe": probe.float().contiguous(),
    }
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "backbone": backbone,
        "layer": layer,
        "num_entries": int(states.shape[0]),
        "hidden_size": int(states.shape[1]),
        "built": built,
        "entries": {
            key: [list(s) for s in columns[name]] if key == "span" else columns[name]
            for key, name in COLUMNS.items()
        },
        "texts": texts,
    }
    with undo_on_failure(path):  # a failed write leaves no folder it made
        path.mkdir(parents=True, exist_ok=True)
        atomic_write(path / STATES_FILE, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))
        atomic_write(
            path / INDEX_FILE,
            lambda tmp: tmp.write_text(json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8"),
        )
    return path


def read_index_folder(path: str | Path) -> dict[str, Any]:
    """Read and validate a folder written by :func:`write_index_folder`.

    Returns the :class:`LatentIndex` fields: ``states``, ``probe``, the entry columns, ``texts``,
    ``layer``, ``backbone`` and ``meta`` (what the build recorded).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    fix = rebuild_fix(path)
    if not (path / INDEX_FILE).is_file() or not (path / STATES_FILE).is_file():
        raise WorkbenchError(f"{path} is not a latent index ({INDEX_FILE} or {STATES_FILE} missing)", fix)
    try:
        meta = json.loads((path / INDEX_FILE).read_text(encoding="utf-8"))
        entries = meta["entries"]
        columns = [entries[k] for k in COLUMNS]
        texts, layer, backbone = list(meta["texts"]), int(meta["layer"]), dict(meta["backbone"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
        raise WorkbenchError(
            f"latent index {path} is corrupt: {INDEX_FILE} is unreadable ({err})", fix
        ) from err
    if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
        raise WorkbenchError(
            f"{path} has format {meta.get('format')!r} v{meta.get('format_version')}, "
            f"not {FORMAT} v{FORMAT_VERSION}",
            "upgrade the workbench, or rebuild the index",
        )
    try:
        tensors = load_file(str(path / STATES_FILE))
    except (SafetensorError, OSError, ValueError) as err:
        raise WorkbenchError(
            f"latent index {path} is corrupt: {STATES_FILE} is unreadable ({err})", fix
        ) from err
    states, probe = tensors.get("states"), tensors.get("backbone_probe")
    count = len(columns[0])
    if (
        states is None
        or probe is None
        or states.dim() != 2
        or states.shape[0] != count
        or any(len(c) != count for c in columns)
        or any(not 0 <= t < len(texts) for t in columns[2])
    ):
        raise WorkbenchError(f"latent index {path} is corrupt: states and entries do not match", fix)
    check_recorded_backbone(backbone, probe, what=f"latent index {path}")
    return {
        "states": states,
        "token_ids": [int(i) for i in columns[0]],
        "tokens": [str(t) for t in columns[1]],
        "text_ids": [int(i) for i in columns[2]],
        "positions": [int(p) for p in columns[3]],
        "spans": [(int(s), int(e)) for s, e in columns[4]],
        "texts": texts,
        "layer": layer,
        "backbone": backbone,
        "probe": probe,
        "meta": dict(meta.get("built") or {}),
    }
