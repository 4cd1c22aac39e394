"""Open an official ``llm2vec-gen`` folder as an :class:`LLM2VecGen` on its base model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ...core.backbone import Backbone, load_backbone
from ...core.config import GenConfig, check_dtype, torch_dtype
from ...core.errors import WorkbenchError
from ...core.model import LLM2VecGen
from ...core.registry import BACKBONES
from .layout import OfficialConfig
from .read import OfficialCheckpoint, read_official

log = logging.getLogger("workbench")


def _load_base(ck: OfficialCheckpoint, backbone: str | None, dtype: str, **kwargs: Any) -> Backbone:
    name = backbone or ck.base_model
    if backbone is None and ck.base_model not in BACKBONES and not Path(ck.base_model).expanduser().exists():
        plain = str(ck.run_config.get("model_name_or_path"))
        if plain != ck.base_model and Path(plain).expanduser().exists():
            name = plain  # an export made elsewhere: its registry name is unknown here, its folder is not
    try:
        return load_backbone(name, dtype=torch_dtype(dtype), **kwargs)
    except WorkbenchError as err:
        raise WorkbenchError(
            f"official checkpoint {ck.path} needs its base model {name!r}, which could not be loaded "
            f"({err.problem})",
            f"connect to the Hugging Face hub, or pass backbone= a local copy of {name} "
            "(a transformers folder or a registry name)",
        ) from err


def load_official(
    path: str | Path,
    *,
    backbone: str | None = None,
    dtype: str = GenConfig.dtype,
    max_length: int | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> LLM2VecGen:
    """Open an official checkpoint folder as an :class:`LLM2VecGen` (T = N − n, C = n, both heads).

    The base model is ``run_config.yml``'s ``model_name_or_path`` (a hub id needs the network) unless
    ``backbone`` names a local folder or registry backbone holding the same weights.
    """
    check_dtype(dtype)
    ck = read_official(path)
    loaded = _load_base(ck, backbone, dtype, revision=revision, trust_remote_code=trust_remote_code)
    hidden = ck.tensors["special"].shape[1]
    if loaded.info.hidden_size != hidden:
        raise WorkbenchError(
            f"official checkpoint {ck.path} has {hidden}-d rows but backbone {loaded.info.name} has "
            f"hidden size {loaded.info.hidden_size}",
            f"load it on its base model {ck.base_model}",
        )
    config = OfficialConfig(
        num_thought=ck.num_thought,
        num_compress=ck.num_compress,
        max_length=max_length or ck.max_length,
        teacher=ck.teacher,
        teacher_dim=int(ck.tensors["alignment.weight"].shape[0]),
        dtype=dtype,
        special_tokens=ck.special_tokens,
    )
    gen = LLM2VecGen(loaded, config)
    gen.load_weights(ck.tensors, trained=bool(ck.run_config.get("workbench_trained", True)))
    gen.training_prompts = None  # the official release does not list its training prompts
    if list(gen.special_ids) != list(ck.token_ids):
        log.warning(
            "special token ids differ from the official tokenizer's (%s vs %s): the backbone's tokenizer "
            "is not the base model's; embeddings are unaffected (the rows are written by position)",
            gen.special_ids[:3],
            ck.token_ids[:3],
        )
    return gen
