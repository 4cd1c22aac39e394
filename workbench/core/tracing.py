"""Reads and edits of the frozen backbone through its nnsight wrapper."""

from __future__ import annotations

import inspect
from functools import reduce
from typing import Any

import torch
from nnsight import NNsight

from .backbone import Backbone
from .inputs import EncoderBatch, position_ids


def _contiguous_input(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if args and isinstance(args[0], torch.Tensor) and not args[0].is_contiguous():
        return (args[0].contiguous(), *args[1:])
    return None


def contiguous_head_input(head: torch.nn.Module) -> None:
    """Give the output head a contiguous input (once per module; values unchanged).

    ``logits_to_keep`` slices the last positions out of ``[B, T, H]`` states: a strided view. On a
    CPU, torch 2.13 multiplies a strided bfloat16 input by the 150k-row head through a slow generic
    kernel: 13.8 s against 0.03 s for the same product on a contiguous copy (Qwen2.5's head, 8 rows),
    and 2.5x slower in float32. Every encode, training step and generation prefill pays it.
    """
    if not getattr(head, "_workbench_contiguous", False):
        head.register_forward_pre_hook(_contiguous_input)
        head._workbench_contiguous = True


class TracedBackbone:
    """A frozen backbone wrapped (not forked) by nnsight; one wrapper serves encoder and decoder."""

    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone
        self.nn = NNsight(backbone.model)
        params = inspect.signature(backbone.model.forward).parameters
        # Only the last position goes through the output head when we just read hidden states.
        self._head_kwargs = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        contiguous_head_input(backbone.submodule(backbone.arch.lm_head))

    def envoy(self, path: str) -> Any:
        """The nnsight envoy of a submodule given its dotted path."""
        return reduce(getattr, path.split("."), self.nn)

    def _lookup_ids(self, batch: EncoderBatch, num_special: int) -> torch.Tensor:
        """Input ids with the special positions replaced by pad (their rows are injected)."""
        ids = batch.input_ids.clone()
        if num_special:
            ids[:, -num_special:] = self.backbone.tokenizer.pad_token_id
        return ids

    def _trace_inputs(self, batch: EncoderBatch, num_special: int) -> dict[str, Any]:
        device = self.backbone.model.get_input_embeddings().weight.device
        return {
            "input_ids": self._lookup_ids(batch, num_special).to(device),
            "attention_mask": batch.attention_mask.to(device),
            "position_ids": batch.position_ids.to(device),
            "use_cache": False,
            **self._head_kwargs,
        }

    def _inject(self, special_rows: torch.Tensor) -> None:
        """Inside a trace: write the special rows over the token embeddings of the last N positions."""
        embed = self.envoy(self.backbone.arch.embed)
        tokens = embed.output
        n = special_rows.shape[0]
        rows = special_rows.to(tokens.dtype).unsqueeze(0).expand(tokens.shape[0], -1, -1)
        embed.output = torch.cat([tokens[:, : tokens.shape[1] - n], rows], dim=1)

    def final_states(
        self, batch: EncoderBatch, special_rows: torch.Tensor | None, keep_last: int
    ) -> torch.Tensor:
        """Final-layer post-norm states at the last ``keep_last`` positions.

        ``special_rows`` ([N, H]) are written over the token embeddings of the last N positions
        inside the trace, so gradients reach them through the frozen network.
        """
        n = 0 if special_rows is None else special_rows.shape[0]
        with self.nn.trace(**self._trace_inputs(batch, n)):
            if special_rows is not None:
                self._inject(special_rows)
            states = self.envoy(self.backbone.arch.final_norm).output[:, -keep_last:].save()
        return states

    def residual_stream(
        self, batch: EncoderBatch, special_rows: torch.Tensor | None, keep_last: int
    ) -> torch.Tensor:
        """The residual stream at the last ``keep_last`` positions after every layer, before the norm.

        Returns ``[L + 1, B, keep_last, H]``: index 0 is the embedding output (special rows written
        in), index ``l`` the output of decoder layer ``l``; the final norm of index ``L`` is what
        :meth:`final_states` returns.
        """
        n = 0 if special_rows is None else special_rows.shape[0]
        num_layers = len(self.backbone.submodule(self.backbone.arch.layers))
        saved: list[torch.Tensor] = []
        with self.nn.trace(**self._trace_inputs(batch, n)):
            if special_rows is not None:
                self._inject(special_rows)
            saved.append(self.envoy(self.backbone.arch.embed).output[:, -keep_last:].save())
            layers = self.envoy(self.backbone.arch.layers)
            for i in range(num_layers):
                saved.append(layers[i].output[:, -keep_last:].save())
        return torch.stack(saved)

    def pooled_states(self, batch: EncoderBatch, pooling: str) -> torch.Tensor:
        """The frozen LLM as an input-centric encoder: final post-norm states, mean or last token."""
        return self.pooled_states_all(batch, (pooling,))[pooling]

    def pooled_states_all(self, batch: EncoderBatch, poolings: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Several poolings (``mean``, ``last``) of the same final post-norm states: one forward pass."""
        inputs = self._trace_inputs(batch, 0)
        mask = inputs["attention_mask"]
        with self.nn.trace(**inputs):
            states = self.envoy(self.backbone.arch.final_norm).output.save()
        out: dict[str, torch.Tensor] = {}
        for pooling in poolings:
            if pooling == "last":
                out[pooling] = states[:, -1]
            else:
                weights = mask.to(states.dtype).unsqueeze(-1)
                out[pooling] = (states * weights).sum(1) / weights.sum(1).clamp(min=1)
        return out

    def decoder_logits(
        self, embeds: torch.Tensor, attention_mask: torch.Tensor, keep_last: int | None = None
    ) -> torch.Tensor:
        """Output-head logits for a right-padded sequence of input embeddings (soft prompt first).

        ``keep_last``: only the last positions go through the output head (``logits_to_keep``), where
        the model supports it; the head is a large share of a step for a 150k-token vocabulary.
        """
        keep = {"logits_to_keep": keep_last} if keep_last and self._head_kwargs else {}
        with self.nn.trace(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids(attention_mask),
            use_cache=False,
            **keep,
        ):
            logits = self.envoy(self.backbone.arch.lm_head).output.save()
        return logits
