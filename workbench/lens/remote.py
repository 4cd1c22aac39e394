"""Opt-in remote execution on NDIF (nnsight 0.8) for backbones too large for the user's machine.

Nothing here runs unless asked for, and nothing here is needed to use the workbench. The remote model
is the backbone's *hub* checkpoint as deployed on NDIF: nnsight builds it on the meta device locally
(only its config is downloaded), the trace below is shipped to NDIF with ``remote=True``, and only the
top-k ids and probabilities come back. The special rows travel with the request; the tokenizer,
heads and inputs stay local. The API key is nnsight's: ``NDIF_API_KEY``, or the key saved by
``nnsight.login()`` in nnsight's config file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..core.config import thought_count
from ..core.errors import WorkbenchError
from ..core.hub import hub_offline

if TYPE_CHECKING:
    from ..core.backbone import Architecture
    from ..core.inputs import EncoderBatch

KEY_FIX = (
    "get a key at https://login.ndif.us, then export NDIF_API_KEY=... (or run "
    "`python -c 'import nnsight; nnsight.login()'`); or drop --remote to run locally"
)


def ndif_api_key() -> str | None:
    """The NDIF API key nnsight will send (environment first, then nnsight's config file)."""
    env = os.environ.get("NDIF_API_KEY")
    if env:
        return env
    from nnsight import CONFIG

    return CONFIG.API.APIKEY or None


def check_remote(model_id: str) -> str:
    """Validate a remote request before any work: a hub id, a key, a network. Returns the key."""
    from pathlib import Path

    from ..core.registry import BACKBONES

    if model_id in BACKBONES:
        raise WorkbenchError(
            f"remote execution runs hub checkpoints, and {model_id!r} is a local GGUF backbone",
            f"use its hub id {BACKBONES[model_id].hub_id} (full-precision weights) or run locally",
        )
    if model_id.count("/") != 1 or Path(model_id).expanduser().exists():
        raise WorkbenchError(
            f"remote execution needs a Hugging Face hub id deployed on NDIF, not {model_id!r}",
            "pass the base model's hub id, e.g. Qwen/Qwen3-8B",
        )
    key = ndif_api_key()
    if not key:
        raise WorkbenchError("remote execution on NDIF needs an API key, and none is set", KEY_FIX)
    if hub_offline():
        raise WorkbenchError(
            "remote execution needs the network, and HF_HUB_OFFLINE is set",
            "unset HF_HUB_OFFLINE and connect to the network, or drop --remote to run locally",
        )
    return key


@dataclass
class RemoteBackbone:
    """A backbone that lives on NDIF: nnsight's meta-device wrapper plus the paths the lens reads."""

    model_id: str
    lm: Any  # nnsight TransformersModel (text-generation) on the meta device
    arch: Architecture
    num_layers: int


def connect(model_id: str, *, revision: str | None = None, require_running: bool = True) -> RemoteBackbone:
    """Build the meta-device wrapper of ``model_id`` and check that NDIF serves it."""
    check_remote(model_id)
    import nnsight
    from nnsight.modeling.transformers import TransformersModel

    from ..core.backbone import find_architecture

    if require_running:
        try:
            running = nnsight.is_model_running(model_id)
        except Exception as err:  # httpx / hub errors: the service or the hub is unreachable
            raise WorkbenchError(
                f"cannot reach NDIF or the hub to check {model_id} ({type(err).__name__})",
                "check your network, or drop --remote to run locally",
            ) from err
        if not running:
            raise WorkbenchError(
                f"{model_id} is not running on NDIF right now",
                "see `python -c 'import nnsight; print(nnsight.ndif_status())'` for the models it serves",
            )
    try:
        lm = TransformersModel(model_id, task="text-generation", revision=revision)
    except Exception as err:  # config download failures surface as OSError / HTTP errors
        raise WorkbenchError(
            f"could not read the config of {model_id} from the hub ({type(err).__name__})",
            "check the id and your network",
        ) from err
    module = lm._module
    arch = find_architecture(module)
    return RemoteBackbone(model_id, lm, arch, len(module.get_submodule(arch.layers)))


def _envoy(root: Any, path: str) -> Any:
    for part in path.split("."):
        root = getattr(root, part)
    return root


def remote_lens_topk(
    model: RemoteBackbone,
    batch: EncoderBatch,
    special_rows: torch.Tensor,
    keep_last: int,
    layers: list[int],
    top_k: int,
    *,
    remote: bool | str = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logit lens at the last ``keep_last`` positions, run on NDIF.

    Same read as the local lens: layer 0 is the embedding output with the special rows written over
    the last N positions, layer ``l`` the output of decoder layer ``l``; each goes through the final
    norm and the output head on the server, and only the top-k comes back. Returns ``(probs, ids)``,
    both ``[len(layers), B, keep_last, top_k]``. ``remote="local"`` is nnsight's in-process dry run of
    the remote path (the request is serialized and run here): the tests use it.
    """
    n = special_rows.shape[0]
    rows = special_rows.detach().float().cpu()
    inputs = {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "position_ids": batch.position_ids,
    }
    lm, arch = model.lm, model.arch
    probs: list[Any] = []
    ids: list[Any] = []
    with lm.trace(inputs, remote=remote):
        embed = _envoy(lm, arch.embed)
        tokens = embed.output
        embed.output = torch.cat(
            [
                tokens[:, : tokens.shape[1] - n],
                rows.to(tokens.dtype).unsqueeze(0).expand(tokens.shape[0], -1, -1),
            ],
            dim=1,
        )
        decoder_layers = _envoy(lm, arch.layers)
        norm, head = _envoy(lm, arch.final_norm), _envoy(lm, arch.lm_head)
        for layer in layers:
            resid = embed.output if layer == 0 else decoder_layers[layer - 1].output
            resid = resid[0] if isinstance(resid, tuple) else resid
            logits = head(norm(resid[:, -keep_last:]))
            top = logits.float().softmax(-1).topk(top_k, dim=-1)
            probs.append(top.values.save())
            ids.append(top.indices.save())
    return torch.stack([p.detach().cpu() for p in probs]), torch.stack([i.cpu() for i in ids])


@dataclass
class RemoteLens:
    """What the lens needs to read a checkpoint on NDIF without loading its backbone locally.

    The tokenizer, special rows and token counts come from the checkpoint folder (an official one
    carries its tokenizer; a workbench one is read with its backbone's tokenizer from the hub).
    """

    backbone: RemoteBackbone
    tokenizer: Any
    special: torch.Tensor  # [N, H]
    special_ids: list[int]
    token_strings: list[str]
    num_compress: int
    max_length: int
    mode: bool | str = True  # nnsight's ``remote=``: True for NDIF, "local" for a dry run

    @property
    def num_thought(self) -> int:
        return thought_count(self.token_strings, self.num_compress)

    def read(
        self, texts: list[str], layers: list[int], top_k: int, *, thought: bool = False, batch_size: int = 8
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k ``(probs, ids)`` ``[len(layers), B, P, k]`` at the compression (or all special) positions."""
        from ..core.inputs import build_encoder_batch

        keep = len(self.token_strings) if thought else self.num_compress
        probs, ids = [], []
        for start in range(0, len(texts), batch_size):
            batch = build_encoder_batch(
                self.tokenizer, texts[start : start + batch_size], self.special_ids, self.max_length
            )
            p, i = remote_lens_topk(self.backbone, batch, self.special, keep, layers, top_k, remote=self.mode)
            probs.append(p)
            ids.append(i)
        return torch.cat(probs, dim=1), torch.cat(ids, dim=1)


def open_remote(model: str, *, backbone: RemoteBackbone | None = None, mode: bool | str = True) -> RemoteLens:
    """A :class:`RemoteLens` for an official checkpoint (folder, zoo name or hub id) or a workbench one.

    The base model must be a hub id that NDIF serves; ``backbone`` replaces the connection (tests
    pass a local nnsight model with ``mode="local"``).
    """
    from transformers import AutoTokenizer

    from ..core.backbone import prepare_tokenizer
    from ..core.inputs import add_special_tokens
    from ..store.checkpoint import is_checkpoint, read_checkpoint
    from ..store.official import read_official
    from ..store.zoo import resolve_official

    folder = resolve_official(model)
    if folder is not None:
        ck = read_official(folder)
        base, tok_source = ck.base_model, str(folder)
        special, strings, compress, max_length = (
            ck.tensors["special"],
            ck.special_tokens,
            ck.num_compress,
            ck.max_length,
        )
    elif is_checkpoint(model):
        data = read_checkpoint(model)
        base = tok_source = str(data.backbone["name"])
        special, strings = data.tensors["special"], data.config.token_strings()
        compress, max_length = data.config.num_compress, data.config.max_length
    else:
        raise WorkbenchError(
            f"{model!r} is not a checkpoint: remote execution reads a trained checkpoint's special tokens",
            "pass an official checkpoint (folder, zoo name or hub id) or a workbench checkpoint folder",
        )
    if backbone is None:
        backbone = connect(base)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(tok_source))
    ids = add_special_tokens(tokenizer, list(strings))
    return RemoteLens(backbone, tokenizer, special.float(), ids, list(strings), compress, max_length, mode)
