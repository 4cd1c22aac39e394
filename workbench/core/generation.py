"""Decoding with the frozen LLM: from soft prompts (the embedding) or as a chat answer."""

from __future__ import annotations

from typing import Any

import torch

from .backbone import Backbone
from .errors import WorkbenchError


def eos_ids(backbone: Backbone) -> list[int]:
    """Every id that ends an answer: the tokenizer's EOS and the generation config's."""
    ids: list[int] = []
    for source in (
        backbone.tokenizer.eos_token_id,
        getattr(backbone.model.generation_config, "eos_token_id", None),
    ):
        for i in source if isinstance(source, list) else [source]:
            if i is not None and i not in ids:
                ids.append(int(i))
    return ids


def generation_config(
    backbone: Backbone, max_new_tokens: int, do_sample: bool, temperature: float, top_p: float
) -> Any:
    """A fresh generation config, so the backbone's stored defaults never change the decoding."""
    from transformers import GenerationConfig

    if max_new_tokens < 1:
        raise WorkbenchError(
            f"max_new_tokens must be at least 1, got {max_new_tokens}", "ask for 1 or more new tokens"
        )
    sampling = {"temperature": temperature, "top_p": top_p} if do_sample else {}
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        use_cache=True,
        pad_token_id=backbone.tokenizer.pad_token_id,
        eos_token_id=eos_ids(backbone),
        **sampling,
    )


def decode_new_tokens(backbone: Backbone, ids: torch.Tensor) -> list[str]:
    return [t.strip() for t in backbone.tokenizer.batch_decode(ids, skip_special_tokens=True)]


@torch.no_grad()
def generate_from_embeds(
    backbone: Backbone,
    embeds: torch.Tensor,
    *,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> list[str]:
    """Greedy (or sampled) decoding with a KV cache from soft-prompt embeddings ``[B, C, H]``.

    The decoder sees only the soft prompts: no query, instruction or chat template, as in training.
    """
    if embeds.dim() != 3 or embeds.shape[-1] != backbone.info.hidden_size:
        raise WorkbenchError(
            f"soft prompts must have shape [batch, positions, {backbone.info.hidden_size}], "
            f"got {list(embeds.shape)}",
            "pass compression states from compression_states()",
        )
    weight = backbone.model.get_input_embeddings().weight
    embeds = embeds.to(device=weight.device, dtype=weight.dtype)
    mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=weight.device)
    config = generation_config(backbone, max_new_tokens, do_sample, temperature, top_p)
    out = backbone.model.generate(inputs_embeds=embeds, attention_mask=mask, generation_config=config)
    return decode_new_tokens(backbone, out)


def chat_prompts(backbone: Backbone, prompts: list[str], system_prompt: str | None) -> list[str]:
    """Render prompts with the backbone's chat template (thinking disabled where supported)."""
    tokenizer = backbone.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        raise WorkbenchError(
            f"the backbone {backbone.info.name} has no chat template",
            "use an instruction-tuned backbone with a chat template",
        )
    rendered = []
    for prompt in prompts:
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages.append({"role": "user", "content": prompt})
        rendered.append(
            tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False, enable_thinking=False
            )
        )
    return rendered


@torch.no_grad()
def chat_answer(
    backbone: Backbone,
    prompts: list[str],
    *,
    max_new_tokens: int = 128,
    system_prompt: str | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> list[str]:
    """The frozen LLM's own answers to prompts, via its chat template, batched with left padding."""
    tokenizer = backbone.tokenizer
    batch = tokenizer(
        chat_prompts(backbone, prompts, system_prompt),
        add_special_tokens=False,
        padding=True,
        return_tensors="pt",
    )
    device = backbone.model.get_input_embeddings().weight.device
    config = generation_config(backbone, max_new_tokens, do_sample, temperature, top_p)
    out = backbone.model.generate(
        input_ids=batch["input_ids"].to(device),
        attention_mask=batch["attention_mask"].to(device),
        generation_config=config,
    )
    return decode_new_tokens(backbone, out[:, batch["input_ids"].shape[1] :])
