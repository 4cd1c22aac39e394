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

import os
from pathlib import Path
from typing import Annotated

import typer


def train(
    responses: Annotated[Path | None, typer.Option(help="JSONL from `workbench respond`.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Backbone.")] = None,
    teacher: Annotated[str | None, typer.Option(help="minilm, mpnet, self, or an ST id/folder.")] = None,
    config: Annotated[Path | None, typer.Option(help="JSON or YAML file of options.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the last step checkpoint in --out.")] = False,
    num_thought: Annotated[int | None, typer.Option(help="Thought tokens (10).")] = None,
    num_compress: Annotated[int | None, typer.Option(help="Compression tokens (10).")] = None,
    recon_weight: Annotated[float | None, typer.Option(help="Reconstruction loss weight (1.0).")] = None,
    align_weight: Annotated[float | None, typer.Option(help="Alignment loss weight (1.0).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (5e-4).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay (0).")] = None,
    warmup_steps: Annotated[int | None, typer.Option(help="Linear warm-up steps (100).")] = None,
    schedule_steps: Annotated[int | None, typer.Option(help="Linear decay length (20000).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Steps to train (5000).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Global batch in pairs (32).")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Gradient accumulation steps (1).")] = None,
    max_query_length: Annotated[int | None, typer.Option(help="Encoder tokens (512).")] = None,
    max_response_length: Annotated[int | None, typer.Option(help="Response tokens (500).")] = None,
    query_instruction: Annotated[str | None, typer.Option(help="Instruction before prompts.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of init and data order (42).")] = None,
    save_every: Annotated[int | None, typer.Option(help="Steps between checkpoints (250).")] = None,
    keep_checkpoints: Annotated[int | None, typer.Option(help="Step checkpoints kept (2).")] = None,
    log_every: Annotated[int | None, typer.Option(help="Steps between log rows (1).")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32, bfloat16 or float16.")] = None,
    mixed_precision: Annotated[
        str | None,
        typer.Option(help="no, or bf16: the frozen LLM in bfloat16 under autocast (fast on BF16 CPUs)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N pairs.")] = None,
    init_from: Annotated[
        Path | None, typer.Option(help="Start from this checkpoint's tokens and heads (continued training).")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train the special tokens and heads on the frozen LLM's own responses."""
    from transformers.utils import logging as hf_logging

    from ..train.config import TrainConfig
    from ..train.trainer import train as run_training

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    values = {
        k: v
        for k, v in locals().items()
        if k not in ("config", "resume", "quiet", "hf_logging", "TrainConfig", "run_training")
    }
    values = {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
    cfg = TrainConfig.build(config, **values)
    folder = run_training(cfg, resume=resume, show_progress=not quiet)
    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"checkpoint written to {folder}")
