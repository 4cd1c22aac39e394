"""Building a latent-lens index: every response token's in-context state, read from the frozen LLM.

An index holds one entry per token of the frozen LLM's own responses: the hidden state of that
token when the LLM reads the response as plain text (no special tokens, no chat template), taken
after the final norm at the last layer by default, unit-normalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..core.errors import WorkbenchError
from ..core.inputs import check_texts, position_ids
from .latent_index import LatentIndex
from .logit import resolve_layers, token_text

if TYPE_CHECKING:
    from ..core.model import LLM2VecGen


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
