"""The latent-lens index in the layout of the ``latentlens`` package (PyPI 0.1.0, the LatentLens code).

``latentlens.ContextualIndex.save`` writes a folder with ``metadata.json`` (``{"layers": [...],
"hidden_dim": H}``) and, per layer ``N``, ``layer_N/embeddings_cache.pt``: a ``torch.save`` of
``{"embeddings": [E, H] float16, "metadata": [{"token_str", "token_id", "caption", "position"}]}``
(``caption`` is the whole source text, ``position`` the token's index in it, tokenizer defaults).
``ContextualIndex.from_directory`` reads that back. Its states are the model's ``hidden_states[N]``
as transformers returns them: the raw residual stream after block ``N``, except the last layer,
which transformers returns after the final norm (the workbench's layer-``L`` reading). The
workbench's own index reads every layer through the final norm, so the two agree on the last layer.

:func:`write_latentlens` writes a workbench index so that ``ContextualIndex.from_directory`` opens
it (it adds a ``workbench`` entry to ``metadata.json``, which latentlens ignores);
:func:`read_latentlens` opens such a folder, from either side, as a :class:`LatentIndex`. The ``.pt``
files are pickles by latentlens's design: they are read with ``torch.load(weights_only=True)``,
which only accepts tensors and plain containers, never arbitrary objects.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..core.errors import WorkbenchError
from ..store.atomic import atomic_write
from .latent_index import LatentIndex

if TYPE_CHECKING:
    from ..core.model import LLM2VecGen

META_FILE = "metadata.json"
CACHE_FILE = "embeddings_cache.pt"
LAYER_DIR = re.compile(r"^layer_(\d+)$")
MAX_TOKEN_MISMATCH = 0.05
"""Share of entries whose token id may differ from the model's tokenization of their caption."""


def latentlens_layers(path: str | Path) -> list[int]:
    """The layers of a latentlens index folder (``layer_N/embeddings_cache.pt``), ascending."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return []
    found = [
        int(m.group(1))
        for d in folder.iterdir()
        if (m := LAYER_DIR.match(d.name)) and (d / CACHE_FILE).is_file()
    ]
    return sorted(found)


def is_latentlens_index(path: str | Path) -> bool:
    return bool(latentlens_layers(path))


def write_latentlens(index: LatentIndex, path: str | Path) -> Path:
    """Write ``index`` as a latentlens folder (one layer: the index's), atomically per file."""
    folder = Path(path).expanduser()
    rows = [
        {
            "token_str": index.tokens[i],
            "token_id": int(index.token_ids[i]),
            "caption": index.texts[index.text_ids[i]],
            "position": int(index.positions[i]),
            "span": list(index.spans[i]),  # the workbench's own key; latentlens ignores it
        }
        for i in range(len(index))
    ]
    payload = {"embeddings": index.states.to(torch.float16).contiguous(), "metadata": rows}
    layer_dir = folder / f"layer_{index.layer}"
    layer_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(layer_dir / CACHE_FILE, lambda tmp: torch.save(payload, tmp))
    meta = {
        "layers": [index.layer],
        "hidden_dim": int(index.states.shape[1]),
        "workbench": {
            "layer": index.layer,
            "read": "final norm at every layer",
            "backbone": index.backbone,
            "probe": index.probe.float().tolist(),
            "built": index.meta,
        },
    }
    atomic_write(
        folder / META_FILE,
        lambda tmp: tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"),
    )
    return folder


def _read_layer(file: Path) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    try:
        data = torch.load(file, map_location="cpu", weights_only=True)
        embeddings, rows = data["embeddings"], list(data["metadata"])
    except Exception as err:  # a pickle that needs more than tensors and plain containers, or damage
        raise WorkbenchError(
            f"{file} is not a readable latentlens layer ({type(err).__name__}: {str(err)[:160]})",
            "rebuild it with latentlens, or check that the file is one it wrote",
        ) from err
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2 or len(rows) != len(embeddings):
        raise WorkbenchError(f"{file}: embeddings and metadata do not match", "rebuild the index")
    return embeddings, rows


def _spans(
    gen: LLM2VecGen | None, texts: list[str], rows: list[dict[str, Any]], text_of: list[int]
) -> tuple[list[tuple[int, int]], float]:
    """Character spans of each entry's token in its caption: recorded by the workbench, else from
    the model's own tokenization (latentlens records positions, not offsets); and the share of
    entries whose token id disagrees with that tokenization."""
    spans: list[tuple[int, int]] = [(0, 0)] * len(rows)
    if all("span" in row for row in rows):
        return [(int(r["span"][0]), int(r["span"][1])) for r in rows], 0.0
    if gen is None:
        return spans, 0.0
    tok = gen.tokenizer
    encoded: dict[int, tuple[list[int], list[tuple[int, int]]]] = {}
    bad = 0
    for e, row in enumerate(rows):
        t = text_of[e]
        if t not in encoded:
            enc = tok(texts[t], add_special_tokens=True, truncation=True, max_length=512,
                      return_offsets_mapping=bool(getattr(tok, "is_fast", False)))  # fmt: skip
            offsets = enc.get("offset_mapping") or [(0, 0)] * len(enc["input_ids"])
            encoded[t] = (list(enc["input_ids"]), [tuple(o) for o in offsets])
        ids, offsets = encoded[t]
        p = int(row.get("position", -1))
        if 0 <= p < len(ids) and ids[p] == int(row.get("token_id", -1)):
            spans[e] = (int(offsets[p][0]), int(offsets[p][1]))
        else:
            bad += 1
    return spans, bad / max(1, len(rows))


def read_latentlens(
    path: str | Path, gen: LLM2VecGen | None = None, *, layer: int | None = None
) -> LatentIndex:
    """A latentlens index folder as a :class:`LatentIndex` of one layer.

    ``layer``: which of its layers (default: the one the workbench wrote, else ``gen``'s last
    layer when present, else the highest). A folder written by latentlens does not record its
    model: ``gen`` must be the model it was built on, and is checked by its hidden size and by
    re-tokenizing the captions (the token ids must match). A folder written by
    :func:`write_latentlens` records its backbone and is checked like a workbench index.
    """
    folder = Path(path).expanduser()
    layers = latentlens_layers(folder)
    if not layers:
        raise WorkbenchError(
            f"{folder} is not a latentlens index (no layer_N/{CACHE_FILE})",
            "point at the folder latentlens.ContextualIndex.save wrote",
        )
    meta: dict[str, Any] = {}
    if (folder / META_FILE).is_file():
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise WorkbenchError(f"{folder / META_FILE} is not valid JSON ({err})", "rebuild it") from err
    ours = meta.get("workbench") if isinstance(meta.get("workbench"), dict) else None
    if ours is None and gen is None:
        raise WorkbenchError(
            f"{folder} was built by latentlens, which does not record its model",
            "pass the model it was built on (workbench.load(...)), or --model on the command line",
        )
    info = None if gen is None else gen.backbone.info
    num_layers = int(ours["backbone"]["num_layers"] if ours else info.num_layers)  # type: ignore[union-attr]
    if layer is None:
        layer = int(ours["layer"]) if ours else (num_layers if num_layers in layers else layers[-1])
    if layer not in layers:
        raise WorkbenchError(f"{folder} has no layer {layer}", f"use one of {', '.join(map(str, layers))}")
    embeddings, rows = _read_layer(folder / f"layer_{layer}" / CACHE_FILE)
    if gen is not None and embeddings.shape[1] != gen.backbone.info.hidden_size:
        raise WorkbenchError(
            f"{folder} holds {embeddings.shape[1]}-d states but {gen.backbone.info.name} has "
            f"{gen.backbone.info.hidden_size}",
            "open it with the model it was built on",
        )
    texts: list[str] = []
    index_of: dict[str, int] = {}
    text_of = []
    for row in rows:
        caption = str(row.get("caption", ""))
        if caption not in index_of:
            index_of[caption] = len(texts)
            texts.append(caption)
        text_of.append(index_of[caption])
    spans, mismatch = _spans(gen, texts, rows, text_of)
    if gen is not None and mismatch > MAX_TOKEN_MISMATCH:
        raise WorkbenchError(
            f"{folder}: {mismatch:.0%} of its tokens differ from {gen.backbone.info.name}'s tokenization "
            "of their texts: it was built with another tokenizer",
            "open it with the model it was built on",
        )
    if ours is not None:
        backbone, probe = dict(ours["backbone"]), torch.tensor(ours["probe"], dtype=torch.float32)
        built = dict(ours.get("built") or {})
    else:
        from ..core.backbone import backbone_probe

        info = gen.backbone.info  # type: ignore[union-attr]
        keys = ("name", "source", "sha256", "model_type", "hidden_size", "vocab_size", "num_layers")
        backbone = {k: getattr(info, k) for k in keys}
        probe = backbone_probe(gen.backbone)  # type: ignore[union-attr]
        read = "final norm" if layer == num_layers else "raw residual stream (transformers' hidden_states)"
        built = {"source": "latentlens", "latentlens_layers": layers, "read": read}
    index = LatentIndex(
        states=torch.nn.functional.normalize(embeddings.float(), dim=-1).to(torch.float16),
        token_ids=[int(r.get("token_id", -1)) for r in rows],
        tokens=[str(r.get("token_str", "")) for r in rows],
        text_ids=text_of,
        positions=[int(r.get("position", -1)) for r in rows],
        spans=spans,
        texts=texts,
        layer=layer,
        backbone=backbone,
        probe=probe,
        meta=built,
    )
    if gen is not None and ours is not None:
        index.check_backbone(gen)
    return index


def open_latent_index(gen: LLM2VecGen, path: str | Path | None = None) -> LatentIndex:
    """The index at ``path`` in either layout: a workbench folder (``index.json``) or a latentlens
    folder (``layer_N/embeddings_cache.pt``); default: the workbench's folder for ``gen``."""
    from .latent_files import INDEX_FILE
    from .latent_index import load_latent_index

    if path is not None:
        folder = Path(path).expanduser()
        if not (folder / INDEX_FILE).is_file() and is_latentlens_index(folder):
            return read_latentlens(folder, gen)
    return load_latent_index(gen, path)


def latentlens_summary(path: str | Path) -> dict[str, Any]:
    """What a latentlens folder holds, without loading a model (``workbench latent-lens info``)."""
    folder = Path(path).expanduser()
    layers = latentlens_layers(folder)
    if not layers:
        raise WorkbenchError(f"{folder} is not a latentlens index", "point at a folder with layer_N/")
    meta_file = folder / META_FILE
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    ours = meta.get("workbench") or {}
    entries, hidden = {}, 0
    for layer in layers:
        embeddings, rows = _read_layer(folder / f"layer_{layer}" / CACHE_FILE)
        entries[str(layer)] = len(rows)
        hidden = int(embeddings.shape[1])
    return {
        "format": "latentlens",
        "layers": layers,
        "entries": entries,
        "hidden_size": hidden,
        "backbone": (ours.get("backbone") or {}).get("name"),
        "bytes": sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()),
    }
