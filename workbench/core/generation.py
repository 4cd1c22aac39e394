"""Decoding with the frozen LLM: from soft prompts (the embedding) or as a chat answer."""

from __future__ import annotations

from typing import Any

import torch

from .backbone import Backbone
from .errors import WorkbenchError
from .inputs import pad_rows, text_ids


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


def _render(tokenizer: Any, roles: list[str], contents: list[str]) -> str:
    messages = [{"role": r, "content": c} for r, c in zip(roles, contents, strict=True)]
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False, enable_thinking=False
    )


def _name(tokenizer: Any) -> str:
    return getattr(tokenizer, "name_or_path", "") or "this backbone"


def _check_template(tokenizer: Any, name: str | None = None) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise WorkbenchError(
            f"the backbone {name or _name(tokenizer)} has no chat template",
            "use an instruction-tuned backbone with a chat template",
        )


def chat_prompts(backbone: Backbone, prompts: list[str], system_prompt: str | None) -> list[str]:
    """Render prompts with the backbone's chat template (thinking disabled where supported)."""
    tokenizer = backbone.tokenizer
    _check_template(tokenizer, backbone.info.name)
    roles = ["system", "user"] if system_prompt else ["user"]
    return [_render(tokenizer, roles, [system_prompt, p] if system_prompt else [p]) for p in prompts]


def chat_ids(tokenizer: Any, prompts: list[str], system_prompt: str | None = None) -> list[list[int]]:
    """Token ids of each chat prompt: the template's control tokens are control tokens, the user's
    (and system) text is text (:func:`~workbench.core.inputs.text_ids`), so a prompt that spells
    ``<|im_end|><|im_start|>assistant`` cannot forge a turn.

    The template is rendered once with a marker for each message; each message's text, as the
    template writes it (it may trim it), is read off a rendering where only that message is real.
    For prompts without control strings the ids equal tokenizing the rendered prompt.
    """
    _check_template(tokenizer)
    roles = ["system", "user"] if system_prompt else ["user"]
    marks = [f"\ue000workbench-message-{i}\ue001" for i in range(len(roles))]
    skeleton = _render(tokenizer, roles, marks)
    pieces = [skeleton]
    for mark in marks:
        head, found, tail = pieces.pop().partition(mark)
        if not found:
            raise WorkbenchError(
                f"the chat template of {_name(tokenizer)} does not write the message text as given",
                "use a backbone whose chat template copies each message's content",
            )
        pieces += [head, tail]
    out = []
    for prompt in prompts:
        contents = [system_prompt, prompt] if system_prompt else [prompt]
        written = []
        for i, content in enumerate(contents):
            real = _render(tokenizer, roles, [content if j == i else m for j, m in enumerate(marks)])
            before, _, after = skeleton.partition(marks[i])
            if not (real.startswith(before) and real.endswith(after)):
                raise WorkbenchError(
                    f"the chat template of {_name(tokenizer)} changes the text around a message",
                    "use a backbone whose chat template copies each message's content",
                )
            written.append(real[len(before) : len(real) - len(after)])
        ids: list[int] = []
        for k, piece in enumerate(pieces):
            ids += tokenizer(piece, add_special_tokens=False)["input_ids"] if piece else []
            if k < len(written) and written[k]:
                ids += text_ids(tokenizer, [written[k]])[0]
        out.append(ids)
    return out


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
    _check_template(backbone.tokenizer, backbone.info.name)
    input_ids, mask = pad_rows(
        chat_ids(backbone.tokenizer, prompts, system_prompt), backbone.tokenizer.pad_token_id, left=True
    )
    device = backbone.model.get_input_embeddings().weight.device
    config = generation_config(backbone, max_new_tokens, do_sample, temperature, top_p)
    out = backbone.model.generate(
        input_ids=input_ids.to(device), attention_mask=mask.to(device), generation_config=config
    )
    return decode_new_tokens(backbone, out[:, input_ids.shape[1] :])
