"""``workbench train``: self-supervised LLM2Vec-Gen training (see ``workbench.train.trainer``).

Options come from the defaults (the paper's where they fit), then ``--config run.yaml`` (JSON or
YAML with the same names as the flags, underscores for dashes), then the flags given. The output
folder gets step checkpoints every ``--save-every`` steps (atomic), ``train_log.jsonl``, TensorBoard
events, ``run_config.json`` and, at the end, the final checkpoint itself, loadable with
``workbench.load(out)``. ``--resume`` continues the last step checkpoint with optimiser, schedule,
RNG and data position restored. For several processes or GPUs, run the same command under
``accelerate launch -m workbench train ...``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ..train.config import TrainConfig
from .common import note_limit, quiet_transformers


def _opt(text: str, name: str, *flags: str) -> Any:
    """A ``workbench train`` option whose help ends with its default, read from :class:`TrainConfig`
    (the one home of the defaults); the option itself defaults to None, so a --config file can set it."""
    return typer.Option(*flags, help=f"{text} ({TrainConfig.__dataclass_fields__[name].default}).")


def train(
    responses: Annotated[Path | None, _opt("JSONL from `workbench respond`", "responses")] = None,
    out: Annotated[Path | None, _opt("Output folder", "out")] = None,
    model: Annotated[str | None, _opt("Backbone", "model", "--model", "-m")] = None,
    teacher: Annotated[str | None, _opt("minilm, mpnet, self, or an ST id/folder", "teacher")] = None,
    config: Annotated[Path | None, typer.Option(help="JSON or YAML file of options.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the last step checkpoint in --out.")] = False,
    num_thought: Annotated[int | None, _opt("Thought tokens", "num_thought")] = None,
    num_compress: Annotated[int | None, _opt("Compression tokens", "num_compress")] = None,
    recon_weight: Annotated[float | None, _opt("Reconstruction loss weight", "recon_weight")] = None,
    align_weight: Annotated[float | None, _opt("Alignment loss weight", "align_weight")] = None,
    lr: Annotated[float | None, _opt("Peak learning rate", "lr")] = None,
    weight_decay: Annotated[float | None, _opt("AdamW weight decay", "weight_decay")] = None,
    warmup_steps: Annotated[int | None, _opt("Linear warm-up steps", "warmup_steps")] = None,
    schedule_steps: Annotated[int | None, _opt("Linear decay length", "schedule_steps")] = None,
    max_steps: Annotated[int | None, _opt("Steps to train", "max_steps")] = None,
    batch_size: Annotated[int | None, _opt("Global batch in pairs", "batch_size")] = None,
    grad_accum: Annotated[int | None, _opt("Gradient accumulation steps", "grad_accum")] = None,
    max_query_length: Annotated[int | None, _opt("Encoder tokens", "max_query_length")] = None,
    max_response_length: Annotated[int | None, _opt("Response tokens", "max_response_length")] = None,
    query_instruction: Annotated[str | None, typer.Option(help="Instruction before prompts.")] = None,
    seed: Annotated[int | None, _opt("Seed of init and data order", "seed")] = None,
    save_every: Annotated[int | None, _opt("Steps between checkpoints", "save_every")] = None,
    keep_checkpoints: Annotated[int | None, _opt("Step checkpoints kept", "keep_checkpoints")] = None,
    log_every: Annotated[int | None, _opt("Steps between log rows", "log_every")] = None,
    dtype: Annotated[str | None, _opt("float32, bfloat16 or float16", "dtype")] = None,
    mixed_precision: Annotated[
        str | None,
        _opt("no, or bf16: the frozen LLM in bfloat16 under autocast, fast on BF16 CPUs", "mixed_precision"),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N pairs.")] = None,
    init_from: Annotated[
        Path | None, typer.Option(help="Start from this checkpoint's tokens and heads (continued training).")
    ] = None,
    allow_foreign_responses: Annotated[
        bool | None,
        _opt("Train on responses another model wrote (distillation; recorded)", "allow_foreign_responses"),
    ] = None,
    force: Annotated[bool | None, _opt("Train on evaluation queries or held-out rows", "force")] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="Data folder whose evaluation queries are refused as prompts.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train the special tokens and heads on the frozen LLM's own responses."""
    from ..train.trainer import train as run_training

    values = {k: v for k, v in locals().items() if k not in ("config", "resume", "quiet", "run_training")}
    quiet_transformers()
    values = {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
    cfg = TrainConfig.build(config, **values)
    folder = run_training(cfg, resume=resume, show_progress=not quiet)
    if os.environ.get("RANK", "0") == "0":
        if cfg.limit is not None:
            from ..train.run_dir import RUN_CONFIG

            note_limit(cfg.limit, json.loads((folder / RUN_CONFIG).read_text())["pairs"], "pairs")
        typer.echo(f"checkpoint written to {folder}")
