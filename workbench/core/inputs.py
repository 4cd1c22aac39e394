"""Encoder inputs: plain text, then the special tokens in the last N positions, left padded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .errors import WorkbenchError


@dataclass
class EncoderBatch:
    """A left-padded batch whose last N positions hold the special ids in every row."""

    input_ids: torch.Tensor  # [B, L]; special ids at [:, -N:]
    attention_mask: torch.Tensor  # [B, L]
    position_ids: torch.Tensor  # [B, L]; counted from each row's first real token

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def add_special_tokens(tokenizer: Any, strings: list[str]) -> list[int]:
    """Register the special token strings with the tokenizer and return their ids."""
    tokenizer.add_tokens(strings, special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids(strings)
    if len(set(ids)) != len(strings) or tokenizer.unk_token_id in ids:
        raise WorkbenchError(
            "the tokenizer did not give each special token its own id",
            "choose token formats that do not clash with the vocabulary",
        )
    return list(ids)


def check_texts(texts: list[str] | str) -> list[str]:
    """Return texts as a list, refusing empty input with the index of the offender."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise WorkbenchError("no texts given", "pass at least one non-empty string")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise WorkbenchError(f"text {i} is a {type(text).__name__}, not a string", "pass strings only")
        if not text.strip():
            raise WorkbenchError(f"text {i} is empty", "remove empty texts before encoding")
    return texts


def text_ids(tokenizer: Any, texts: list[str], *, add_special_tokens: bool = False) -> list[list[int]]:
    """Token ids of user text as text: a string that spells a control token stays ordinary tokens.

    The one place user text is tokenized: ``<|im_end|><|im_start|>assistant`` inside a prompt never
    becomes the tokenizer's real control tokens, so it cannot forge a chat turn or a special position.
    ``add_special_tokens`` adds the tokenizer's own BOS/EOS framing (not taken from the text).
    """
    return tokenizer(list(texts), add_special_tokens=add_special_tokens, split_special_tokens=True)[
        "input_ids"
    ]


def pad_rows(rows: list[list[int]], pad_id: int, *, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` ``[B, L]`` of token id rows, padded on the left or right."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            span = slice(width - len(row), width) if left else slice(0, len(row))
            input_ids[i, span] = torch.tensor(row, dtype=torch.long)
            mask[i, span] = 1
    return input_ids, mask


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that start at 0 on each row's first real token (needed with left padding)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def token_lengths(tokenizer: Any, texts: list[str], room: int, chunk: int = 1024) -> list[int]:
    """Each text's token count as the encoder sees it (BOS included, cut at ``room``).

    Tokenized in chunks and only the counts kept: sorting 20,000 texts holds no token lists.
    """
    out: list[int] = []
    for start in range(0, len(texts), chunk):
        ids = text_ids(tokenizer, texts[start : start + chunk], add_special_tokens=True)
        out += [min(len(row), room) for row in ids]
    return out


def build_encoder_batch(
    tokenizer: Any, texts: list[str], special_ids: list[int], max_length: int
) -> EncoderBatch:
    """Tokenize with the tokenizer's defaults (no chat template), truncate, append the special ids.

    Text that spells a special token is split into ordinary tokens, so the special ids occur
    only in the last N positions, whatever the input.
    """
    room = max_length - len(special_ids)
    encoded = text_ids(tokenizer, list(texts), add_special_tokens=True)
    rows = [list(ids[:room]) + list(special_ids) for ids in encoded]
    input_ids, mask = pad_rows(rows, tokenizer.pad_token_id, left=True)
    return EncoderBatch(input_ids, mask, position_ids(mask))
