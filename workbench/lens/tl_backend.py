"""The logit lens's residual stream read through TransformerLens (``TransformerBridge``) instead of nnsight.

The bridge is booted once per backbone on a structural copy of the HF model that shares every
parameter and buffer with it: booting replaces submodules with bridge components and switches
attention to eager in place, and the workbench's own nnsight wrapper must keep the original tree.
The tokenizer handed to the bridge is a copy too (the bridge normalises it in place). Inputs are the
encoder's own ids, mask and positions (left padding, special ids in the last N positions; no BOS
added by the bridge), so the result matches :meth:`TracedBackbone.residual_stream`.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..core.errors import WorkbenchError

if TYPE_CHECKING:
    from ..core.model import LLM2VecGen

EMBED_HOOK = "embed.hook_out"
BLOCK_HOOK = "blocks.{}.hook_out"  # the block's output, TransformerLens's ``hook_resid_post``

_BRIDGES: weakref.WeakKeyDictionary[torch.nn.Module, Any] = weakref.WeakKeyDictionary()


def _import_bridge() -> Any:
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as err:
        raise WorkbenchError(
            "the transformer-lens lens backend needs TransformerLens",
            "pip install 'llm2vec-gen-workbench[lens-tl]'",
        ) from err
    return TransformerBridge


def shared_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A new module tree over the same parameter and buffer tensors (no weights are copied)."""
    memo: dict[int, Any] = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo)


def tl_bridge(gen: LLM2VecGen) -> Any:
    """The TransformerBridge over ``gen``'s backbone, booted on first use and kept for the backbone."""
    model = gen.backbone.model
    bridge = _BRIDGES.get(model)
    if bridge is not None:
        return bridge
    transformer_bridge = _import_bridge()
    weight = model.get_input_embeddings().weight
    try:
        bridge = transformer_bridge.boot_transformers(
            gen.backbone.info.name,
            hf_model=shared_copy(model),
            tokenizer=copy.deepcopy(gen.tokenizer),
            device=weight.device,
            dtype=weight.dtype,
        )
    except Exception as err:
        raise WorkbenchError(
            f"TransformerLens cannot wrap {type(model).__name__} ({gen.backbone.info.model_type}): {err}",
            "use the default lens backend: --backend nnsight",
        ) from err
    bridge.eval()
    missing = [
        name
        for name in (EMBED_HOOK, *(BLOCK_HOOK.format(i) for i in range(gen.backbone.info.num_layers)))
        if name not in bridge.hook_dict
    ]
    if missing:
        raise WorkbenchError(
            f"the TransformerLens bridge of this backbone has no hook {missing[0]}",
            "use the default lens backend: --backend nnsight",
        )
    _BRIDGES[model] = bridge
    return bridge


def _read_batch(
    bridge: Any, inputs: dict[str, torch.Tensor], special: torch.Tensor, keep_last: int, num_layers: int
) -> torch.Tensor:
    """One forward through the bridge: inject the special rows, save ``[L + 1, B, keep_last, H]``."""
    saved: list[torch.Tensor | None] = [None] * (num_layers + 1)
    n = special.shape[0]

    def inject(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        x[:, x.shape[1] - n :] = special.to(device=x.device, dtype=x.dtype)
        saved[0] = x[:, -keep_last:].float().cpu()
        return x

    def saver(index: int) -> Callable[[torch.Tensor, Any], None]:
        def save(x: torch.Tensor, hook: Any) -> None:
            saved[index] = x[:, -keep_last:].float().cpu()

        return save

    hooks = [(EMBED_HOOK, inject)] + [(BLOCK_HOOK.format(i), saver(i + 1)) for i in range(num_layers)]
    with torch.no_grad():
        bridge.run_with_hooks(**inputs, return_type=None, fwd_hooks=hooks)
    if any(s is None for s in saved):
        raise WorkbenchError(
            "a TransformerLens hook did not fire while reading the residual stream",
            "use the default lens backend: --backend nnsight",
        )
    return torch.stack(saved)  # type: ignore[arg-type]


def residual_stream_tl(
    gen: LLM2VecGen, texts: Sequence[str], keep_last: int, *, batch_size: int = 8
) -> torch.Tensor:
    """Residual stream ``[L + 1, B, keep_last, H]`` (float32, CPU) read with TransformerLens hooks.

    Index 0 is the embedding output with the special rows written over the last N positions,
    index ``l`` the output of decoder layer ``l`` before the final norm: the same tensor as
    ``gen.traced.residual_stream(gen.encoder_batch(texts), gen.special, keep_last)``.
    """
    bridge = tl_bridge(gen)
    num_layers = gen.backbone.info.num_layers
    special = gen.special.detach()
    device = gen.backbone.model.get_input_embeddings().weight.device
    out = torch.empty(num_layers + 1, len(texts), keep_last, gen.backbone.info.hidden_size)
    for idx, batch in gen._batches(list(texts), batch_size, "reading (TransformerLens)", None):
        inputs = {
            "input": gen.traced._lookup_ids(batch, special.shape[0]).to(device),
            "attention_mask": batch.attention_mask.to(device),
            "position_ids": batch.position_ids.to(device),
            "use_cache": False,
            **gen.traced._head_kwargs,  # the output head on the last position only
        }
        out[:, idx] = _read_batch(bridge, inputs, special, keep_last, num_layers)
    return out
