"""Typed configuration of an LLM2Vec-Gen model, and the paper's instructions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from .errors import WorkbenchError
from .registry import DEFAULT_TEACHER

if TYPE_CHECKING:
    import torch

QUERY_INSTRUCTION = "Generate a passage that best answers this question:"
DOCUMENT_INSTRUCTION = "Summarize the following passage:"
STS_INSTRUCTION = "Generate text that is semantically similar to this text:"

DTYPES = ("float32", "bfloat16", "float16")
"""The dtypes a model runs in, by the name ``torch`` gives them."""


def check_dtype(name: str) -> str:
    """``name`` if it is one of :data:`DTYPES`, else a one-line error."""
    if name not in DTYPES:
        raise WorkbenchError(f"unknown dtype {name!r}", f"use one of {', '.join(DTYPES)}")
    return name


DTYPE_CHOICES = ("auto", *DTYPES)
"""What ``load(dtype=...)`` and ``--dtype`` accept: ``auto`` picks bfloat16 where it is native."""


def native_bf16(device: str = "cpu") -> str | None:
    """Why ``device`` runs bfloat16 matrix products in hardware, or None when it does not.

    On a CPU without AVX-512 BF16 or AMX, torch emulates bfloat16, many times slower than float32
    (``benchmarks/precision.py`` measures it; ``benchmarks/results/precision.json`` holds a run).
    """
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
        return f"{torch.cuda.get_device_name(torch.device(device))} supports bfloat16" if ok else None
    if kind != "cpu":
        return None
    checks = {"AMX": "_is_amx_tile_supported", "AVX-512 BF16": "_is_avx512_bf16_supported"}
    for label, name in checks.items():
        probe = getattr(torch.cpu, name, None)
        if probe is not None and probe():
            return f"the CPU has {label}"
    return None


def resolve_dtype(name: str, device: str = "cpu") -> tuple[str, str]:
    """The dtype to run in, and why: ``auto`` is bfloat16 where :func:`native_bf16` says so, else float32."""
    if name not in DTYPE_CHOICES:
        raise WorkbenchError(f"unknown dtype {name!r}", f"use one of {', '.join(DTYPE_CHOICES)}")
    if name != "auto":
        return name, "asked for"
    why = native_bf16(device)
    if why is not None:
        return "bfloat16", f"auto: {why}"
    return "float32", f"auto: no native bfloat16 on {device} (emulated bfloat16 is many times slower)"


def resolve_device(name: str | None) -> str:
    """``auto`` (or None): ``cuda`` when torch sees a GPU, else ``cpu``; other names are checked."""
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise WorkbenchError(f"unknown device {name!r}", "use auto, cpu, cuda or cuda:N") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WorkbenchError(f"device {name!r} asked for, but torch sees no GPU", "use --device cpu")
    return str(device)


def torch_dtype(name: str) -> torch.dtype:
    """The ``torch.dtype`` called ``name`` (checked against :data:`DTYPES`)."""
    import torch

    return getattr(torch, check_dtype(name))


def thought_count(tokens: Sequence[str], num_compress: int) -> int:
    """T = N - C: of the N special tokens in input order, all but the last ``num_compress`` are thought."""
    return len(tokens) - num_compress


@dataclass
class GenConfig:
    """What defines an LLM2Vec-Gen model on top of a frozen backbone.

    The one home of the model's defaults: ``workbench.load``, the training options and the official
    layout's reader take theirs from these fields (``GenConfig.num_compress`` and so on).
    """

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
        check_dtype(self.dtype)
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
        return torch_dtype(self.dtype)

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
