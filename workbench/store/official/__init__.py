"""Checkpoints in the official ``llm2vec-gen`` 0.1.3 layout: open them on the workbench model, write them.

An official checkpoint is a folder holding the tokenizer (with ``<question1>`` … ``<questionN>`` added),
``run_config.yml`` (base model, special tokens, dtype, …), ``encoder_decoder_config.json``
(``encoding_mode`` ``last_<n>_tokens``), ``encoder/`` (a PEFT adapter whose ``trainable_tokens_delta``
holds the N trained rows: they *replace* those embedding rows) and the heads ``reconstruction_mlp`` /
``alignment_mlp``, each a ``torch.save`` of ``{"state_dict", "config"}``. The first N − n special tokens
are the thought tokens, the last n the compression tokens. Nothing here needs peft; the heads are
read with ``torch.load(weights_only=True)`` and anything that needs a full unpickler is refused.

Modules: :mod:`.layout` (file names, :class:`OfficialConfig`), :mod:`.read` (a folder's contents,
validated), :mod:`.load` (a folder as an :class:`~workbench.core.model.LLM2VecGen`) and :mod:`.export`
(the other way).
"""

from __future__ import annotations

from .export import backbone_folder, copy_base_v4, export_official, v4_config
from .layout import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    ADAPTER_WEIGHTS_BIN,
    DELTA,
    DELTA_KEY,
    ENC_DEC_CONFIG,
    ENCODER_DIR,
    ENCODING_MODE,
    HEAD_FILES,
    HUB_FILES,
    RUN_CONFIG,
    TOKEN_FORMAT,
    OfficialConfig,
    config_from_dict,
    encoding_mode,
)
from .load import load_official
from .read import OfficialCheckpoint, is_official, load_head, read_official, read_run_config

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "ADAPTER_WEIGHTS_BIN",
    "DELTA",
    "DELTA_KEY",
    "ENCODER_DIR",
    "ENCODING_MODE",
    "ENC_DEC_CONFIG",
    "HEAD_FILES",
    "HUB_FILES",
    "RUN_CONFIG",
    "TOKEN_FORMAT",
    "OfficialCheckpoint",
    "OfficialConfig",
    "backbone_folder",
    "config_from_dict",
    "copy_base_v4",
    "encoding_mode",
    "export_official",
    "is_official",
    "load_head",
    "load_official",
    "read_official",
    "read_run_config",
    "v4_config",
]
