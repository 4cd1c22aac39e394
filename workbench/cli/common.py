"""What every command shares: the model options, the console and model loading."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..core.registry import DEFAULT_BACKBONE

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Registry backbone, hub id, model folder or checkpoint folder.")
]
CheckpointOpt = Annotated[Path | None, typer.Option(help="Checkpoint folder to put on the backbone.")]
UntrainedOpt = Annotated[bool, typer.Option("--untrained", help="Ignore shipped checkpoints.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

__all__ = [
    "DEFAULT_BACKBONE",
    "CheckpointOpt",
    "JsonOpt",
    "ModelOpt",
    "UntrainedOpt",
    "console",
    "load_model",
]


def console(stderr: bool = False, soft_wrap: bool = False) -> Any:
    """A rich console without syntax highlighting (stdout, or stderr for notes and progress)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=soft_wrap)


def quiet_transformers() -> None:
    """No transformers progress bars or warnings on the terminal."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def load_model(model: str, checkpoint: Path | None, untrained: bool) -> Any:
    """``workbench.load`` for a command, with a note on stderr when the tokens are untrained."""
    from ..store.loading import load

    quiet_transformers()
    gen = load(model, checkpoint=checkpoint, untrained=untrained)
    if not gen.trained:
        console(stderr=True).print(
            f"[yellow]note:[/] {gen.backbone.info.name} runs with untrained special tokens "
            "(no trained checkpoint given or shipped); similarities are not meaningful yet"
        )
    return gen
