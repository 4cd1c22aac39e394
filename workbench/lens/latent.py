"""The latent lens: describe a compression state by the nearest response tokens, read in context.

An index holds one entry per token of the frozen LLM's own responses: the hidden state of that
token when the LLM reads the response as plain text (no special tokens, no chat template), taken
after the final norm at the last layer by default, unit-normalised. A compression position is
then described by the response tokens whose in-context states are closest to it (cosine), each
shown with a snippet of its response, e.g. ``"… the polar [bear] lives on sea ice …"``.

An index is a folder: ``states.safetensors`` (``states`` [E, H] float16, ``backbone_probe``) and
``index.json`` (the backbone it was built on, the layer, per-entry token id, token text, source
text id, token position and character span, and the source texts). Nothing is pickled; both
files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..core.backbone import check_same_backbone
from ..core.errors import WorkbenchError
from ..core.inputs import check_texts, position_ids
from ..store.atomic import atomic_write

if TYPE_CHECKING:
    from ..core.model import LLM2VecGen

FORMAT = "llm2vec-gen-latent-index"
FORMAT_VERSION = 1
STATES_FILE = "states.safetensors"
INDEX_FILE = "index.json"
SNIPPET_CHARS = 40


@dataclass
class LatentIndex:
    """Contextual token states of the LLM's responses, with where each token came from."""

    states: torch.Tensor  # [E, H] float16, unit rows
    token_ids: list[int]
    tokens: list[str]
    text_ids: list[int]
    positions: list[int]  # token index within its tokenized source text
    spans: list[tuple[int, int]]  # character span of the token in its source text
    texts: list[str]
    layer: int
    backbone: dict[str, Any]
    probe: torch.Tensor  # the backbone fingerprint of workbench.core.backbone.backbone_probe
    meta: dict[str, Any] = field(default_factory=dict)
    _matrix: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return self.states.shape[0]

    # ----------------------------------------------------------------- lookup
    def nearest(
        self, states: torch.Tensor, k: int = 5, *, distinct: bool = False
    ) -> list[list[dict[str, Any]]]:
        """The ``k`` entries closest (cosine) to each row of ``states`` ``[P, H]``, best first.

        Each entry is ``{"token", "score", "context", "text_id", "position"}``; ``distinct``
        keeps only the best entry per token text.
        """
        if states.dim() == 1:
            states = states.unsqueeze(0)
        if states.dim() != 2 or states.shape[1] != self.states.shape[1]:
            raise WorkbenchError(
                f"latent lens states must have shape [positions, {self.states.shape[1]}], "
                f"got {list(states.shape)}",
                "pass the compression states of one query, e.g. gen.compression_states(q)[0]",
            )
        if k < 1:
            raise WorkbenchError(f"k must be at least 1, got {k}", "pass e.g. k=5")
        if self._matrix is None:
            self._matrix = self.states.float()
        query = torch.nn.functional.normalize(states.detach().float().cpu(), dim=-1)
        scores = query @ self._matrix.T  # [P, E]
        out: list[list[dict[str, Any]]] = []
        for row in scores:
            want = min(len(self), k if not distinct else max(8 * k, 64))
            top_s, top_i = row.topk(want)
            hits: list[dict[str, Any]] = []
            seen: set[str] = set()
            for s, i in zip(top_s.tolist(), top_i.tolist(), strict=True):
                key = self.tokens[i].strip()
                if distinct and key in seen:
                    continue
                seen.add(key)
                hits.append(self.entry(i, s))
                if len(hits) == k:
                    break
            out.append(hits)
        return out

    def entry(self, i: int, score: float | None = None) -> dict[str, Any]:
        """Entry ``i`` as a dict, with its context snippet."""
        return {
            "token": self.tokens[i],
            "score": None if score is None else round(float(score), 6),
            "context": self.context(i),
            "text_id": self.text_ids[i],
            "position": self.positions[i],
        }

    def context(self, i: int, chars: int = SNIPPET_CHARS) -> str:
        """A short snippet of entry ``i``'s source text with the token in brackets."""
        text = self.texts[self.text_ids[i]]
        start, end = self.spans[i]
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        left, right = max(0, start - chars), min(len(text), end + chars)
        if left > 0 and " " in text[left:start]:
            left = text.index(" ", left, start) + 1
        if right < len(text) and " " in text[end:right]:
            right = text.rindex(" ", end, right)
        before = text[left:start].replace("\n", " ")
        after = text[end:right].replace("\n", " ")
        return (
            ("… " if left > 0 else "")
            + before
            + f"[{text[start:end]}]"
            + after
            + (" …" if right < len(text) else "")
        )

    # ----------------------------------------------------------------- backbone check
    def check_backbone(self, gen: LLM2VecGen) -> None:
        """Refuse an index built on another backbone (sizes, GGUF hash, weight fingerprint)."""
        check_same_backbone(
            self.backbone,
            self.probe,
            gen.backbone,
            what="this latent index",
            fix="build an index for this backbone: workbench lens-index build --model "
            + gen.backbone.info.name,
            sizes=("hidden_size", "vocab_size", "num_layers"),
            made="built",
        )

    # ----------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        """Write the folder ``path`` (``states.safetensors`` and ``index.json``), atomically per file."""
        from safetensors.torch import save_file

        path = Path(path).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        tensors = {
            "states": self.states.to(torch.float16).contiguous(),
            "backbone_probe": self.probe.float().contiguous(),
        }
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backbone": self.backbone,
            "layer": self.layer,
            "num_entries": len(self),
            "hidden_size": int(self.states.shape[1]),
            "built": self.meta,
            "entries": {
                "token_id": self.token_ids,
                "token": self.tokens,
                "text_id": self.text_ids,
                "position": self.positions,
                "span": [list(s) for s in self.spans],
            },
            "texts": self.texts,
        }
        atomic_write(path / STATES_FILE, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))
        atomic_write(
            path / INDEX_FILE,
            lambda tmp: tmp.write_text(json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8"),
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatentIndex:
        """Read and validate an index folder written by :meth:`save`."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path).expanduser()
        fix = "rebuild it with `workbench lens-index build --out " + str(path) + "`"
        if not (path / INDEX_FILE).is_file() or not (path / STATES_FILE).is_file():
            raise WorkbenchError(f"{path} is not a latent index ({INDEX_FILE} or {STATES_FILE} missing)", fix)
        try:
            meta = json.loads((path / INDEX_FILE).read_text(encoding="utf-8"))
            entries = meta["entries"]
            columns = [entries[k] for k in ("token_id", "token", "text_id", "position", "span")]
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
        return cls(
            states=states,
            token_ids=[int(i) for i in columns[0]],
            tokens=[str(t) for t in columns[1]],
            text_ids=[int(i) for i in columns[2]],
            positions=[int(p) for p in columns[3]],
            spans=[(int(s), int(e)) for s, e in columns[4]],
            texts=texts,
            layer=layer,
            backbone=backbone,
            probe=probe,
            meta=dict(meta.get("built") or {}),
        )

    def summary(self) -> dict[str, Any]:
        """What the index holds, for ``workbench lens-index info``."""
        return {
            "backbone": self.backbone.get("name"),
            "sha256": self.backbone.get("sha256"),
            "layer": self.layer,
            "entries": len(self),
            "texts": len(self.texts),
            "distinct_tokens": len(set(self.token_ids)),
            "hidden_size": int(self.states.shape[1]),
            **self.meta,
        }


def default_index_path(gen: LLM2VecGen) -> Path:
    """``<cache>/latent-index/<backbone>``: where ``workbench lens-index build`` writes by default."""
    from ..core.paths import cache_dir

    return cache_dir() / "latent-index" / _slug(gen.backbone.info.name)


def _slug(name: str) -> str:
    """A folder name for a backbone: registry names as they are, paths and hub ids made safe."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).name if os.sep in name else name).strip("-.")
    if safe == name:
        return safe
    return f"{safe or 'backbone'}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def load_latent_index(gen: LLM2VecGen, path: str | Path | None = None) -> LatentIndex:
    """The index at ``path`` (default: :func:`default_index_path`), checked against ``gen``'s backbone."""
    target = default_index_path(gen) if path is None else Path(path).expanduser()
    if not (target / INDEX_FILE).is_file():
        where = "" if path is None else f" --out {target}"
        raise WorkbenchError(
            f"no latent index at {target}",
            f"build one first: workbench lens-index build --model {gen.backbone.info.name}{where}",
        )
    index = LatentIndex.load(target)
    index.check_backbone(gen)
    return index


# --------------------------------------------------------------------- building
def _skip_ids(gen: LLM2VecGen) -> set[int]:
    tok = gen.tokenizer
    ids = set(tok.all_special_ids) | set(gen.special_ids)
    if tok.pad_token_id is not None:
        ids.add(tok.pad_token_id)
    return ids


def _tokenize(tokenizer: Any, text: str, limit: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Ids (tokenizer defaults, BOS included where it adds one) and character spans, cut to ``limit``."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=True, split_special_tokens=True, return_offsets_mapping=True)
        return list(enc["input_ids"][:limit]), [tuple(s) for s in enc["offset_mapping"][:limit]]
    ids = tokenizer(text, add_special_tokens=True, split_special_tokens=True)["input_ids"][:limit]
    spans, done = [], 0
    for i in range(len(ids)):  # slow tokenizers: spans from growing decoded prefixes
        end = len(tokenizer.decode(ids[: i + 1], skip_special_tokens=True))
        spans.append((min(done, len(text)), min(end, len(text))))
        done = end
    return list(ids), spans


def _read_states(gen: LLM2VecGen, rows: list[list[int]], layer: int) -> torch.Tensor:
    """Post-norm states ``[B, T, H]`` at ``layer`` of left-padded ``rows`` (plain forward, nnsight)."""
    traced = gen.traced
    backbone = gen.backbone
    width = max(len(r) for r in rows)
    pad = gen.tokenizer.pad_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    device = backbone.model.get_input_embeddings().weight.device
    inputs = {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "position_ids": position_ids(mask).to(device),
        "use_cache": False,
        **traced._head_kwargs,
    }
    num_layers = backbone.info.num_layers
    with torch.no_grad():
        with traced.nn.trace(**inputs):
            if layer == num_layers:
                saved = traced.envoy(backbone.arch.final_norm).output.save()
            elif layer == 0:
                saved = traced.envoy(backbone.arch.embed).output.save()
            else:
                saved = traced.envoy(backbone.arch.layers)[layer - 1].output.save()
        states = saved if layer == num_layers else backbone.submodule(backbone.arch.final_norm)(saved)
    return states


def build_latent_index(
    gen: LLM2VecGen,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    max_tokens_per_text: int = 64,
    layer: int | None = None,
    show_progress: bool | None = None,
) -> LatentIndex:
    """Index every token of ``texts`` (the LLM's responses) by its in-context hidden state.

    Each text is read on its own terms (tokenizer defaults, first ``max_tokens_per_text`` tokens);
    the state of a token is the final norm applied to the residual stream after ``layer``
    (default: the last layer, i.e. the final post-norm state, like the compression states).
    Special, pad and whitespace-only tokens are not indexed.
    """
    from tqdm.auto import tqdm

    from ..core.backbone import backbone_probe
    from .logit import resolve_layers, token_text

    texts = check_texts(list(texts))
    if max_tokens_per_text < 1:
        raise WorkbenchError(
            f"max_tokens_per_text must be at least 1, got {max_tokens_per_text}", "use 1 or more"
        )
    if batch_size < 1:
        raise WorkbenchError(f"batch_size must be at least 1, got {batch_size}", "use 1 or more")
    num_layers = gen.backbone.info.num_layers
    layer_index = num_layers if layer is None else resolve_layers([layer], num_layers)[0]
    tok = gen.tokenizer
    skip = _skip_ids(gen)
    encoded = [_tokenize(tok, t, max_tokens_per_text) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -len(encoded[i][0]))
    vocab: dict[int, str] = {}
    parts: list[torch.Tensor] = []
    token_ids: list[int] = []
    tokens: list[str] = []
    text_ids: list[int] = []
    positions: list[int] = []
    spans: list[tuple[int, int]] = []
    starts = range(0, len(order), batch_size)
    show = len(starts) > 1 if show_progress is None else show_progress
    bar = tqdm(total=len(texts), desc="indexing", unit="text", disable=not show, dynamic_ncols=True)
    for start in starts:
        idx = order[start : start + batch_size]
        rows = [encoded[i][0] for i in idx]
        states = _read_states(gen, rows, layer_index).float().cpu()
        width = states.shape[1]
        for b, i in enumerate(idx):
            ids, offs = encoded[i]
            keep = []
            for p, token_id in enumerate(ids):
                if token_id in skip:
                    continue
                if token_id not in vocab:
                    vocab[token_id] = token_text(tok, token_id)
                if not vocab[token_id].strip():
                    continue
                keep.append(width - len(ids) + p)
                token_ids.append(token_id)
                tokens.append(vocab[token_id])
                text_ids.append(i)
                positions.append(p)
                spans.append((int(offs[p][0]), int(offs[p][1])))
            if keep:
                parts.append(states[b, keep])
        bar.update(len(idx))
    bar.close()
    if not parts:
        raise WorkbenchError("the texts gave no tokens to index", "pass non-empty responses")
    # entries were appended in batch order; restore text order so text_ids ascend
    matrix = torch.nn.functional.normalize(torch.cat(parts), dim=-1)
    perm = sorted(range(len(text_ids)), key=lambda e: (text_ids[e], positions[e]))
    info = gen.backbone.info
    return LatentIndex(
        states=matrix[perm].to(torch.float16),
        token_ids=[token_ids[e] for e in perm],
        tokens=[tokens[e] for e in perm],
        text_ids=[text_ids[e] for e in perm],
        positions=[positions[e] for e in perm],
        spans=[spans[e] for e in perm],
        texts=texts,
        layer=layer_index,
        backbone={
            k: getattr(info, k)
            for k in ("name", "source", "sha256", "model_type", "hidden_size", "vocab_size", "num_layers")
        },
        probe=backbone_probe(gen.backbone),
        meta={"max_tokens_per_text": max_tokens_per_text},
    )
