"""The two self-supervised losses and the statistics the training log reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from .inputs import pad_rows, text_ids
from .tracing import TracedBackbone


@dataclass
class ResponseBatch:
    """Response tokens plus EOS, right padded: what the decoder must reproduce."""

    ids: torch.Tensor  # [B, R]
    mask: torch.Tensor  # [B, R]

    @property
    def tokens(self) -> int:
        return int(self.mask.sum())


def response_tokens(tokenizer: Any, responses: list[str], max_tokens: int, eos_id: int) -> list[list[int]]:
    """Each response's token ids and the model's real EOS id; a response cut at ``max_tokens`` gets no
    EOS, so the decoder is never taught to stop where only the cap, not the answer, ended."""
    ids = text_ids(tokenizer, responses)
    return [list(r[:max_tokens]) if len(r) > max_tokens else [*r, eos_id] for r in ids]


def pad_right(rows: list[list[int]], pad_id: int) -> ResponseBatch:
    return ResponseBatch(*pad_rows(rows, pad_id, left=False))


def reconstruction_loss_sum(
    traced: TracedBackbone, soft: torch.Tensor, target: ResponseBatch
) -> torch.Tensor:
    """Summed cross-entropy of the response tokens given only the soft prompts ``[B, C, H]``.

    Decoder input: ``[s_1 .. s_C] + embed(response) + EOS``; no query, instruction or template.
    """
    model = traced.backbone.model
    device = soft.device
    ids, mask = target.ids.to(device), target.mask.to(device)
    tokens = model.get_input_embeddings()(ids)
    if not torch.is_autocast_enabled(device.type):
        soft = soft.to(tokens.dtype)  # float32 heads, a reduced-precision LLM: its dtype throughout
    tokens = tokens.to(soft.dtype)  # under autocast the stream stays float32 (matrix products bf16)
    embeds = torch.cat([soft, tokens], dim=1)
    attention = torch.cat([torch.ones(soft.shape[:2], dtype=mask.dtype, device=device), mask], dim=1)
    # with C soft prompts, the state at position C - 1 + j predicts response token j: the head runs
    # on the last R + 1 positions only (the first C - 1 soft-prompt positions predict nothing)
    r = ids.shape[1]
    logits = traced.decoder_logits(embeds, attention, keep_last=r + 1)
    predictions = logits[:, -(r + 1) : -1].float()
    loss = F.cross_entropy(predictions.reshape(-1, predictions.shape[-1]), ids.reshape(-1), reduction="none")
    return (loss * mask.reshape(-1)).sum()


def alignment_loss_sum(embedding: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Summed squared error between student and teacher embeddings (MSE before the mean)."""
    return (embedding.float() - teacher.to(embedding.device).float()).pow(2).sum()


@torch.no_grad()
def cosine_stats(embedding: torch.Tensor, teacher: torch.Tensor) -> dict[str, float]:
    """Mean cosine of each student embedding with its own teacher embedding, and with the others."""
    sims = (
        F.normalize(embedding.float(), dim=-1) @ F.normalize(teacher.float().to(embedding.device), dim=-1).T
    )
    n = sims.shape[0]
    diag = sims.diagonal().mean().item()
    off = ((sims.sum() - sims.diagonal().sum()) / max(n * n - n, 1)).item()
    return {"cos_diag": diag, "cos_offdiag": off}
