"""The ``workbench`` command line: one Typer app, one module per command group.

Each command parses its options, calls one library function and prints; the same functions are
what notebooks and ``analyses/`` call.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import typer

from ..core.errors import WorkbenchError, forget_outputs, from_os_error
from .assets import backbones, fetch, info
from .causal import ablate_command, attribute_command, patch_command, steer_command
from .encode import answer, encode, generate
from .eval import eval_app
from .export import export, zoo_command
from .figures import figures_command
from .latent_lens import LENS_INDEX_HELP, latent_lens_app, lens_index_deprecated
from .lens import lens
from .map import map_command
from .quality import quality
from .respond import respond
from .train import train
from .write_prompts import write_prompts

app = typer.Typer(
    name="workbench",
    help="Train, use and look inside LLM2Vec-Gen embeddings (offline on the registry backbones).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for command in (encode, generate, answer, backbones, fetch, info, respond, train, quality):
    app.command()(command)
app.command(name="map")(map_command)
app.command()(lens)
app.add_typer(latent_lens_app, name="latent-lens")
app.add_typer(  # the old name, hidden: says on stderr that it is deprecated
    latent_lens_app, name="lens-index", hidden=True, callback=lens_index_deprecated, help=LENS_INDEX_HELP
)
app.add_typer(eval_app, name="eval")
app.command(name="write-prompts")(write_prompts)
app.command()(export)
app.command(name="zoo")(zoo_command)
app.command(name="figures")(figures_command)
app.command(name="patch")(patch_command)
app.command(name="attribute")(attribute_command)
app.command(name="ablate")(ablate_command)
app.command(name="steer")(steer_command)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; user errors print one line to stderr and return 1.

    So do file-system errors (a read-only or full disk, a folder where a file is expected, ...),
    translated by :func:`~workbench.core.errors.from_os_error` from whichever writer raised them.
    """
    forget_outputs()
    hook, background = threading.excepthook, []
    threading.excepthook = lambda args: _thread_hook(args, hook, background)
    try:
        app(args=argv, prog_name="workbench")
    except WorkbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except SystemExit as err:  # typer's own exit: 0, or 2 for usage errors
        _say_background(background)
        return err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
    except Exception as err:  # a file-system error (read-only, disk full, a folder for a file ...)
        translated = from_os_error(err)
        if translated is None:
            raise  # a bug: keep its traceback
        print(f"error: {translated}", file=sys.stderr)  # (a background writer's is the same one)
        return 1
    finally:
        threading.excepthook = hook
    _say_background(background)
    return 0


def _thread_hook(args: Any, previous: Callable[[Any], object], background: list[str]) -> None:
    """Keep, as one line, the disk error of a background writer (TensorBoard's event thread); other
    thread errors go to ``previous``."""
    translated = from_os_error(args.exc_value) if isinstance(args.exc_value, Exception) else None
    if translated is None:
        previous(args)
    else:
        background.append(str(translated))


def _say_background(background: list[str]) -> None:
    """A command that finished although a background writer failed: one warning line per failure."""
    for line in dict.fromkeys(background):
        print(f"warning: a background writer stopped: {line}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
