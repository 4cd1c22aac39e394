"""The official layout's file names and keys, and the config whose special token strings are a list."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ...core.config import GenConfig
from ...core.errors import WorkbenchError

RUN_CONFIG = "run_config.yml"
ENC_DEC_CONFIG = "encoder_decoder_config.json"
ENCODER_DIR = "encoder"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_WEIGHTS_BIN = "adapter_model.bin"
HEAD_FILES = {"reconstruction": "reconstruction_mlp", "alignment": "alignment_mlp"}
DELTA = "trainable_tokens_delta"
DELTA_KEY = f"base_model.model.embed_tokens.{DELTA}"
TOKEN_FORMAT = "<question{i}>"
ENCODING_MODE = re.compile(r"last_(\d+)_tokens")
HUB_FILES = ["*.json", "*.yml", "*.yaml", "*.txt", "*.model", "*.jinja", "encoder/*", *HEAD_FILES.values()]


def encoding_mode(num_compress: int) -> str:
    """The official ``encoding_mode`` that reads the last ``num_compress`` positions."""
    return f"last_{num_compress}_tokens"


@dataclass
class OfficialConfig(GenConfig):
    """A :class:`GenConfig` whose special token strings are given as a list (the official names)."""

    special_tokens: list[str] = field(default_factory=list)
    """The N special token strings in input order (thought first); empty: use the formats."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.special_tokens and len(self.special_tokens) != self.num_special:
            raise WorkbenchError(
                f"{len(self.special_tokens)} special token strings for {self.num_special} special tokens",
                "give one string per thought and compression token",
            )

    def token_strings(self) -> list[str]:
        return list(self.special_tokens) if self.special_tokens else super().token_strings()


def config_from_dict(data: dict[str, Any]) -> GenConfig:
    """The config class a checkpoint's dict needs (an explicit token list makes it official-named)."""
    return OfficialConfig.from_dict(data) if data.get("special_tokens") else GenConfig.from_dict(data)
