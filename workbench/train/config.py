"""Typed training configuration: paper defaults, a JSON/YAML file, and command-line overrides."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..core.config import GenConfig
from ..core.errors import WorkbenchError
from ..core.paths import require_file
from ..core.registry import DEFAULT_BACKBONE

MIXED_PRECISION = ("no", "bf16")


@dataclass
class TrainConfig:
    """Every knob of a training run (defaults follow the paper where they make sense on any device).

    The model's own settings (special tokens, input length, teacher, dtype) default to
    :class:`~workbench.core.config.GenConfig`'s; ``workbench train``'s options show these defaults.
    """

    model: str = DEFAULT_BACKBONE
    """Backbone: registry name, hub id or model folder."""
    teacher: str = GenConfig.teacher
    """Teacher whose embedding of each response the alignment head matches."""
    responses: str = "responses.jsonl"
    """JSONL of prompts and the frozen LLM's own responses (from `workbench respond`)."""
    out: str = "checkpoint"
    """Output folder: final checkpoint, step checkpoints, logs, run config."""
    num_thought: int = GenConfig.num_thought
    num_compress: int = GenConfig.num_compress
    recon_weight: float = 1.0
    align_weight: float = 1.0
    lr: float = 5e-4
    """Paper: 3e-4 for Qwen3, 5e-4 for Qwen2.5 and Llama."""
    weight_decay: float = 0.0
    warmup_steps: int = 100
    schedule_steps: int = 20_000
    """Length of the linear decay (the paper plans 20,000 steps and stops at 5,000)."""
    max_steps: int = 5_000
    batch_size: int = 32
    """Global batch: pairs per optimiser step, over all processes and accumulation steps."""
    grad_accum: int = 1
    max_query_length: int = GenConfig.max_length
    """Encoder input length, special tokens included."""
    max_response_length: int = 500
    """Response tokens the decoder must reconstruct (the EOS token is added after them)."""
    query_instruction: str = ""
    """Instruction joined before each training prompt (none in the paper's training)."""
    seed: int = 42
    save_every: int = 250
    keep_checkpoints: int = 2
    log_every: int = 1
    dtype: str = GenConfig.dtype
    """The frozen backbone's dtype (the trainable rows and heads are always float32)."""
    mixed_precision: str = "no"
    """``bf16``: run the frozen LLM's matrix products in bfloat16 under autocast, trainable weights and
    optimiser state kept in float32 (about 2x faster on CPUs with AVX-512 BF16, and on recent GPUs)."""
    limit: int | None = None
    """Use only the first N pairs of the responses file."""
    init_from: str | None = None
    """Start from a trained checkpoint folder's special rows and heads instead of the untrained start."""
    allow_foreign_responses: bool = False
    """Train on responses another model wrote (distillation, not the method's self-supervision)."""
    force: bool = False
    """Train on pairs whose prompts are evaluation queries or held-out references."""
    data_dir: str | None = None
    """Data folder whose evaluation queries are refused as prompts ($WORKBENCH_DATA, ../shared/data)."""

    def validate(self, world_size: int = 1) -> None:
        positive = (
            "lr",
            "max_steps",
            "batch_size",
            "grad_accum",
            "save_every",
            "schedule_steps",
            "max_query_length",
            "max_response_length",
            "keep_checkpoints",
            "log_every",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise WorkbenchError(
                    f"{name} must be positive, got {getattr(self, name)}",
                    f"set --{name.replace('_', '-')} to a positive value",
                )
        if self.limit is not None and self.limit < 1:
            raise WorkbenchError(f"limit must be at least 1, got {self.limit}", "use --limit 1 or more")
        if self.warmup_steps < 0 or self.recon_weight < 0 or self.align_weight < 0:
            raise WorkbenchError("warm-up steps and loss weights must not be negative", "use 0 or more")
        if self.recon_weight == 0 and self.align_weight == 0:
            raise WorkbenchError("both loss weights are 0", "give at least one loss a positive weight")
        if self.max_steps > self.schedule_steps:
            raise WorkbenchError(
                f"max_steps {self.max_steps} is past schedule_steps {self.schedule_steps}, where the "
                "learning rate reaches 0: the extra steps would change nothing",
                f"set --schedule-steps to at least {self.max_steps} (or lower --max-steps)",
            )
        if self.mixed_precision not in MIXED_PRECISION:
            raise WorkbenchError(
                f"unknown mixed precision {self.mixed_precision!r}",
                f"use one of {', '.join(MIXED_PRECISION)}",
            )
        shards = self.grad_accum * world_size
        if self.batch_size % shards:
            raise WorkbenchError(
                f"batch size {self.batch_size} does not split into {self.grad_accum} accumulation "
                f"steps x {world_size} processes",
                "choose a batch size divisible by their product",
            )

    def micro_batch(self, world_size: int = 1) -> int:
        return self.batch_size // (self.grad_accum * world_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_file(cls, path: str | Path) -> dict[str, Any]:
        """Read overrides from a JSON or YAML file (unknown keys are an error)."""
        path = require_file(path, "config file")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text) or {}
            else:
                data = json.loads(text)
        except Exception as err:  # yaml and json raise different types
            raise WorkbenchError(
                f"config file {path} does not parse ({type(err).__name__})",
                "write a JSON or YAML mapping of option names to values",
            ) from err
        if not isinstance(data, dict):
            raise WorkbenchError(f"config file {path} is not a mapping", "write `name: value` lines")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise WorkbenchError(
                f"config file {path} has unknown options {unknown}",
                f"use option names from: {', '.join(sorted(known))}",
            )
        return data

    @classmethod
    def build(cls, file: str | Path | None = None, **overrides: Any) -> TrainConfig:
        """Defaults, then the file's values, then the overrides that are not None."""
        values = cls.from_file(file) if file else {}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


TRAINING_KEYS = (
    "model",
    "teacher",
    "num_thought",
    "num_compress",
    "recon_weight",
    "align_weight",
    "lr",
    "weight_decay",
    "warmup_steps",
    "schedule_steps",
    "batch_size",
    "max_query_length",
    "max_response_length",
    "query_instruction",
    "seed",
    "dtype",
    "mixed_precision",
    "limit",
    "init_from",
    "allow_foreign_responses",
    "force",
)
"""Options that must not change when a run is resumed (they change the result)."""
