"""What every command shares: the model options, the console and model loading."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from ..core.paths import check_output
from ..core.registry import DEFAULT_BACKBONE
from ..store.atomic import undo_on_failure

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Registry backbone, hub id, model folder or checkpoint folder.")
]
CheckpointOpt = Annotated[Path | None, typer.Option(help="Checkpoint folder to put on the backbone.")]
UntrainedOpt = Annotated[bool, typer.Option("--untrained", help="Ignore shipped checkpoints.")]
CorpusEmbOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--corpus-embeddings",
        help="Folder from `workbench encode --corpus`: its gen rows are reused for the same texts "
        "(repeatable).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DtypeOpt = Annotated[
    str,
    typer.Option(
        help="The LLM's dtype: float32, bfloat16, float16, or auto (bfloat16 where the CPU or GPU runs "
        "it natively, else float32). Trained rows and heads stay float32."
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda, cuda:N, or auto (a GPU when torch sees one).")]

__all__ = [
    "DEFAULT_BACKBONE",
    "CheckpointOpt",
    "DeviceOpt",
    "DtypeOpt",
    "JsonOpt",
    "ModelOpt",
    "UntrainedOpt",
    "console",
    "load_model",
    "note_limit",
    "outputs",
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


def load_model(
    model: str, checkpoint: Path | None, untrained: bool, dtype: str = "float32", device: str = "auto"
) -> Any:
    """``workbench.load`` for a command, with notes on stderr: untrained tokens, a dtype chosen by auto."""
    from ..store.loading import load

    quiet_transformers()
    gen = load(model, checkpoint=checkpoint, untrained=untrained, dtype=dtype, device=device)
    if dtype == "auto" or gen.precision["device"] != "cpu":
        console(stderr=True).print(
            f"[dim]running in {gen.precision['dtype']} on {gen.precision['device']} "
            f"({gen.precision['why']})[/]"
        )
    if not gen.trained:
        console(stderr=True).print(
            f"[yellow]note:[/] {gen.backbone.info.name} runs with untrained special tokens "
            "(no trained checkpoint given or shipped); similarities are not meaningful yet"
        )
    return gen


@contextmanager
def outputs(
    files: dict[str, Path | None] | None = None,
    folders: dict[str, tuple[Path | None, str | None]] | None = None,
) -> Iterator[None]:
    """Check a command's outputs before any work; if the command then fails, remove what it added.

    ``files`` maps a label (the option, e.g. ``"--out"``) to a file the command writes; ``folders``
    maps a label to (folder, prefix): the folder, and the name prefix of what the command writes in
    it (None: the folder itself is the output). Each path is checked at once
    (:func:`~workbench.core.paths.check_output`: a folder where a file goes, a read-only disk, ...);
    on an exception, new files and folders of those names are removed (never what was there
    before), then the exception goes on to the one-line error of ``main``.
    """
    with ExitStack() as stack:
        for label, file in (files or {}).items():
            if file is not None:
                path = check_output(file, label)
                stack.enter_context(undo_on_failure(path.parent, prefix=path.name))
        for label, (folder, prefix) in (folders or {}).items():
            if folder is not None:
                path = check_output(folder, label, folder=True)
                stack.enter_context(undo_on_failure(path, prefix=prefix))
        yield


def note_limit(limit: int | None, available: int, what: str) -> None:
    """Say on stderr when ``--limit`` asked for more than the data holds (all of it was used)."""
    if limit is not None and limit > available:
        console(stderr=True, soft_wrap=True).print(
            f"[yellow]note:[/] --limit {limit} is more than the {available} {what} there are: "
            f"all {available} were used"
        )


def note_corpus_embeddings(config: dict[str, Any]) -> None:
    """Say what each --corpus-embeddings folder gave (on stderr); a folder that gave nothing is named."""
    for record in config.get("corpus_embeddings", []):
        typer.echo(f"{record['folder']}: {record['used']} of its {record['rows']} embeddings used", err=True)
        if not record["used"]:
            typer.echo(
                "note: none of its texts is among this run's documents under the instruction it was "
                f"encoded with ({record['instruction'] or 'none'!r})",
                err=True,
            )
