"""The sentence-transformers calling convention on :class:`~workbench.core.model.LLM2VecGen`.

sentence-transformers 5 (and 6) encode with ``encode``, ``encode_query`` and ``encode_document``,
which take ``prompt`` / ``prompt_name`` (a prefix joined to each text verbatim), ``batch_size``,
``show_progress_bar``, ``precision``, ``normalize_embeddings``, ``truncate_dim``,
``convert_to_numpy`` and ``convert_to_tensor``, and return a numpy array by default (one row per
text, a single vector for a single string). This module holds that convention so the model's methods
stay thin; the embeddings themselves come from :meth:`LLM2VecGen.embed`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .config import DOCUMENT_INSTRUCTION, QUERY_INSTRUCTION
from .errors import WorkbenchError

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


def default_prompts() -> dict[str, str]:
    """The prompt table: the paper's instructions as verbatim prefixes (so ``prompt + text`` is the
    exact text :meth:`~workbench.core.model.LLM2VecGen.encode_queries` encodes)."""
    return {"query": f"{QUERY_INSTRUCTION} ", "document": f"{DOCUMENT_INSTRUCTION} "}


def resolve_prompt(
    prompts: Mapping[str, str], prompt: str | None, prompt_name: str | None, default_name: str | None
) -> str | None:
    """``prompt`` wins; else ``prompts[prompt_name]``; else the default prompt name's, if any."""
    if prompt is not None:
        return prompt
    name = prompt_name if prompt_name is not None else default_name
    if name is None:
        return None
    if name not in prompts:
        raise ValueError(
            f"Prompt name {name!r} not found in the configured prompts dictionary "
            f"with keys {list(prompts)!r}."
        )
    return prompts[name]


def as_texts(inputs: str | Sequence[str]) -> tuple[list[str], bool]:
    """The texts and whether the input was a single string (then one vector comes back)."""
    if isinstance(inputs, str):
        return [inputs], True
    if isinstance(inputs, np.ndarray):
        return [str(t) for t in inputs.tolist()], False
    return list(inputs), False


def check_options(
    *, output_value: str | None, precision: str, batch_size: int, device: Any, extra: Mapping[str, Any]
) -> None:
    """Refuse what this model cannot do, naming the fix (token embeddings, multi-process pools)."""
    if extra:
        raise TypeError(f"encode() got unexpected keyword argument(s) {', '.join(sorted(extra))}")
    if output_value != "sentence_embedding":
        raise WorkbenchError(
            f"output_value={output_value!r} is not available: an LLM2Vec-Gen model has one embedding "
            "per text, no token embeddings",
            "use output_value='sentence_embedding' (or compression_states() for the per-position states)",
        )
    if precision not in PRECISIONS:
        raise ValueError(f"Precision {precision!r} is not supported, must be one of {PRECISIONS}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    if isinstance(device, list | tuple):
        raise WorkbenchError(
            "multi-process encoding (a list of devices) is not supported",
            "pass one device, or None for the model's own",
        )


def finish(
    embeddings: torch.Tensor,
    single: bool,
    *,
    precision: str,
    normalize_embeddings: bool,
    truncate_dim: int | None,
    convert_to_numpy: bool,
    convert_to_tensor: bool,
    device: torch.device | None = None,
) -> Any:
    """Truncate, normalise, quantise and convert ``[B, D]`` float32 embeddings as
    sentence-transformers does: a tensor (``convert_to_tensor``), a numpy array
    (``convert_to_numpy``, the default) or a list of tensors; one row for a single string."""
    if truncate_dim is not None:
        embeddings = embeddings[:, :truncate_dim]
    if normalize_embeddings:
        embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=1)
    out: Any = embeddings
    if len(embeddings) and precision != "float32":
        from sentence_transformers import quantize_embeddings

        out = quantize_embeddings(embeddings.numpy(), precision=precision)
    if convert_to_tensor:
        out = torch.as_tensor(out)
        if device is not None:
            out = out.to(device)
    elif convert_to_numpy:
        out = out.numpy() if isinstance(out, torch.Tensor) else out
        if not len(out):
            out = np.array([])
    else:
        out = list(torch.from_numpy(out) if isinstance(out, np.ndarray) else out)
    return out[0] if single else out


def as_matrix(x: Any) -> torch.Tensor:
    """A 2-D float tensor from a tensor, an array, or a list of vectors (a vector becomes one row)."""
    if isinstance(x, list | tuple) and x and isinstance(x[0], torch.Tensor):
        x = torch.stack(list(x))
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    return t.unsqueeze(0) if t.dim() == 1 else t


def cos_sim(a: Any, b: Any) -> torch.Tensor:
    """Cosine similarity matrix ``[len(a), len(b)]`` (sentence-transformers' ``cos_sim``)."""
    a, b = as_matrix(a), as_matrix(b)
    b = b.to(a.device)
    return torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T


def pairwise_cos_sim(a: Any, b: Any) -> torch.Tensor:
    """Cosine similarity of matching rows ``[len(a)]``."""
    a, b = as_matrix(a), as_matrix(b)
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)
