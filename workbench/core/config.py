"""Typed configuration of an LLM2Vec-Gen model, and the paper's instructions."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from .errors import WorkbenchError
from .registry import DEFAULT_TEACHER

QUERY_INSTRUCTION = "Generate a passage that best answers this question:"
DOCUMENT_INSTRUCTION = "Summarize the following passage:"
STS_INSTRUCTION = "Generate text that is semantically similar to this text:"

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class GenConfig:
    """What defines an LLM2Vec-Gen model on top of a frozen backbone."""

    num_thought: int = 10
    """Thought tokens: extra computation whose outputs are discarded."""
    num_compress: int = 10
    """Compression tokens: their final states are the bottleneck."""
    max_length: int = 512
    """Encoder input length after truncation, special tokens included."""
    thought_format: str = "<think_{i}>"
    compress_format: str = "<compress_{i}>"
    teacher: str = DEFAULT_TEACHER
    """Teacher whose response embeddings the alignment head is trained to match."""
    teacher_dim: int = 384
    """Output size D of the alignment head (the teacher's embedding size)."""
    dtype: str = "float32"
    seed: int = 0
    """Seed of the initial special rows and heads."""

    def __post_init__(self) -> None:
        if self.num_compress < 1:
            raise WorkbenchError(
                f"num_compress must be at least 1, got {self.num_compress}",
                "use 1 or more compression tokens (the paper uses 10)",
            )
        if self.num_thought < 0:
            raise WorkbenchError(
                f"num_thought must be 0 or more, got {self.num_thought}",
                "use 0 (paper v2) or 10 (paper v1) thought tokens",
            )
        if self.max_length <= self.num_special:
            raise WorkbenchError(
                f"max_length {self.max_length} leaves no room for text beside {self.num_special} "
                "special tokens",
                f"use a max_length above {self.num_special}",
            )
        if self.dtype not in DTYPES:
            raise WorkbenchError(f"unknown dtype {self.dtype!r}", f"use one of {', '.join(DTYPES)}")
        if self.teacher_dim < 1:
            raise WorkbenchError(
                f"teacher_dim must be positive, got {self.teacher_dim}",
                "set it to the teacher's embedding size",
            )

    @property
    def num_special(self) -> int:
        return self.num_thought + self.num_compress

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def token_strings(self) -> list[str]:
        """The N = T + C special token strings, thought tokens first."""
        thought = [self.thought_format.format(i=i + 1) for i in range(self.num_thought)]
        compress = [self.compress_format.format(i=i + 1) for i in range(self.num_compress)]
        return thought + compress

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def with_instruction(texts: list[str], instruction: str | None) -> list[str]:
    """Join an instruction and each text with one space (the paper's format)."""
    if not instruction:
        return list(texts)
    return [f"{instruction.strip()} {t}" for t in texts]
