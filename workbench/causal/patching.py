"""Activation patching between two queries: which layers and positions carry the difference.

Both queries run through the encoder. For every layer and position group, the target run is
repeated with the site's output (residual stream, attention or MLP output) at that group's positions
replaced by the source run's, and its embedding is compared with the source's embedding and with a
refusal text's. Groups of different token lengths (two queries rarely have the same number of
tokens) meet at their end: the last ``k`` positions of each, ``k`` the shorter length, except that
position 0 (the attention sink, where the tokenizer adds no BOS) is only patched from position 0.
The thought and compression groups always have the same length.

At layer 0 of the residual stream the special positions hold the trained rows, which are the same
in every run, so patching them there changes nothing by construction; the query tokens differ from
layer 0 on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..core.config import with_instruction
from ..core.errors import WorkbenchError
from ..core.inputs import check_texts
from .sites import (
    REFUSAL_TEXT,
    Edit,
    JsonReport,
    align_by_end,
    check_layers,
    compression,
    cosine,
    embeddings,
    group_positions,
    one_text_batch,
    parse_groups,
    repeat_batch,
    text_embedding,
    traced_run,
)

if TYPE_CHECKING:
    from ..core.model import LLM2VecGen


@dataclass
class PatchResult(JsonReport):
    """The effect of patching ``source`` into ``target`` at each layer (rows) and group (columns).

    ``cos_source[i][j]``: cosine of the patched embedding with the source embedding, patching layer
    ``layers[i]`` at group ``groups[j]``; ``cos_refusal``: with the refusal text's embedding;
    ``restored``: the share of the target-to-source cosine gap closed,
    ``(cos_source - target_cos_source) / (1 - target_cos_source)``; ``decoded``: the answer the LLM
    generates from each patched embedding (when asked for).
    """

    source: str
    target: str
    site: str
    layers: list[int]
    groups: list[str]
    num_layers: int
    positions: dict[str, dict[str, int]]
    """Per group: tokens in the source, in the target, and how many were patched (aligned by end)."""
    cos_source: list[list[float]]
    cos_refusal: list[list[float]]
    restored: list[list[float]]
    baseline: dict[str, float]
    """``target_cos_source``, ``target_cos_refusal``, ``source_cos_refusal``."""
    refusal_text: str
    instruction: str | None = None
    decoded: list[list[str]] | None = None
    decoded_baseline: dict[str, str] | None = None
    max_new_tokens: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class PatchedRuns:
    """Patched runs of one target: compression states ``[V, C, H]``, embeddings ``[V, D]`` and, when
    asked for, the residual stream of every layer ``[L + 1][V, S, H]`` (for causality checks)."""

    states: torch.Tensor
    embeddings: torch.Tensor
    resid: list[torch.Tensor] | None = None


def patch_cells(
    gen: LLM2VecGen,
    source: str,
    target: str,
    cells: Sequence[tuple[int, str]],
    *,
    site: str = "resid",
    batch_size: int = 32,
    save_resid: bool = False,
) -> PatchedRuns:
    """The target run patched from the source run, once per ``(layer, group)`` cell, in batches of
    variants (each variant is one row of a repeated target batch).

    ``source`` and ``target`` are encoder inputs (any instruction already joined).
    """
    if batch_size < 1:
        raise WorkbenchError(f"batch_size must be at least 1, got {batch_size}", "use 1 or more")
    if save_resid and site != "resid":
        raise ValueError("the residual stream is saved only when patching it")
    src_batch, tgt_batch = one_text_batch(gen, source), one_text_batch(gen, target)
    src_pos, tgt_pos = group_positions(gen, src_batch), group_positions(gen, tgt_batch)
    src_site = traced_run(gen, src_batch, site=site, save_site=True).site
    assert src_site is not None
    states, resid = [], []
    for start in range(0, len(cells), batch_size):
        chunk = cells[start : start + batch_size]
        edits = []
        for row, (layer, group) in enumerate(chunk):
            s, t = align_by_end(src_pos[group], tgt_pos[group])
            if not t:
                continue
            value = src_site[layer]
            assert value is not None
            edits.append(Edit(layer, t, value[0, s], rows=[row]))
        run = traced_run(gen, repeat_batch(tgt_batch, len(chunk)), edits, site=site, save_site=save_resid)
        states.append(compression(gen, run.final).cpu())
        if save_resid:
            assert run.site is not None
            resid.append([r.cpu() for r in run.site if r is not None])
    out = torch.cat(states)
    joined = [torch.cat([part[i] for part in resid]) for i in range(len(resid[0]))] if save_resid else None
    return PatchedRuns(out, embeddings(gen, out), joined)


def patch(
    gen: LLM2VecGen,
    source: str,
    target: str,
    *,
    site: str = "resid",
    layers: Sequence[int] | None = None,
    groups: Sequence[str] | str | None = None,
    refusal_text: str = REFUSAL_TEXT,
    instruction: str | None = None,
    decode: bool = False,
    max_new_tokens: int = 8,
    batch_size: int = 32,
) -> PatchResult:
    """Patch ``source`` (e.g. a harmful query) into ``target`` (its benign twin) at every layer of
    ``site`` (``resid``, ``attn`` or ``mlp``) and every position group, and measure the embedding.

    ``instruction`` is joined before both queries (the shipped checkpoints use none); the refusal
    text is embedded as a document. ``decode`` also generates ``max_new_tokens`` tokens from every
    patched embedding (slow: one generation per cell).
    """
    source_text, target_text = check_texts([source, target])
    num_layers = gen.backbone.info.num_layers
    layer_list = check_layers(layers, num_layers, site)
    group_list = parse_groups(groups, gen)
    if max_new_tokens < 1:
        raise WorkbenchError(f"max_new_tokens must be at least 1, got {max_new_tokens}", "use 1 or more")
    check_texts([refusal_text])
    src_in, tgt_in = with_instruction([source_text, target_text], instruction)

    src_batch, tgt_batch = one_text_batch(gen, src_in), one_text_batch(gen, tgt_in)
    src_pos, tgt_pos = group_positions(gen, src_batch), group_positions(gen, tgt_batch)
    plain = [compression(gen, traced_run(gen, b).final) for b in (src_batch, tgt_batch)]
    e_src, e_tgt = embeddings(gen, torch.cat(plain))
    refusal = text_embedding(gen, refusal_text)

    cells = [(layer, group) for layer in layer_list for group in group_list]
    runs = patch_cells(gen, src_in, tgt_in, cells, site=site, batch_size=batch_size)
    cos_src = cosine(runs.embeddings, e_src).tolist()
    cos_ref = cosine(runs.embeddings, refusal).tolist()
    base_src = float(cosine(e_tgt[None], e_src)[0])
    gap = 1.0 - base_src

    def grid(values: list[float]) -> list[list[float]]:
        width = len(group_list)
        return [[round(v, 6) for v in values[i : i + width]] for i in range(0, len(values), width)]

    result = PatchResult(
        source=source_text,
        target=target_text,
        site=site,
        layers=layer_list,
        groups=group_list,
        num_layers=num_layers,
        positions={
            g: {
                "source": len(src_pos[g]),
                "target": len(tgt_pos[g]),
                "patched": len(align_by_end(src_pos[g], tgt_pos[g])[1]),
            }
            for g in group_list
        },
        cos_source=grid(cos_src),
        cos_refusal=grid(cos_ref),
        restored=grid([(c - base_src) / gap if gap > 1e-9 else 0.0 for c in cos_src]),
        baseline={
            "target_cos_source": round(base_src, 6),
            "target_cos_refusal": round(float(cosine(e_tgt[None], refusal)[0]), 6),
            "source_cos_refusal": round(float(cosine(e_src[None], refusal)[0]), 6),
        },
        refusal_text=refusal_text,
        instruction=instruction,
        meta={"model": gen.backbone.info.name, "trained": bool(gen.trained)},
    )
    if decode:
        texts = gen.generate(runs.states, max_new_tokens=max_new_tokens, show_progress=False)
        width = len(group_list)
        result.decoded = [texts[i : i + width] for i in range(0, len(texts), width)]
        src_dec, tgt_dec = gen.generate(torch.cat(plain).cpu(), max_new_tokens=max_new_tokens)
        result.decoded_baseline = {"source": src_dec, "target": tgt_dec}
        result.max_new_tokens = max_new_tokens
    return result
