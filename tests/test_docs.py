"""The README and the task guides stay true: relative links resolve, and every `workbench ...` command
(and each `--option` given to it) in a guide's shell block exists in the CLI. No model is loaded."""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDES = sorted((ROOT / "docs" / "guides").glob("*.md"))
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
SEPARATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "2>&1"}

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`[^`\n]*`")


def relative_links(path: Path) -> list[str]:
    """Link targets that are neither URLs nor in-page anchors (code blocks and spans skipped)."""
    text = INLINE_CODE.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))
    targets = [t for t in LINK.findall(text) if not t.startswith("#")]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


@pytest.mark.parametrize("doc", [ROOT / "README.md", *GUIDES], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    missing = [t for t in relative_links(doc) if not (doc.parent / t.split("#", 1)[0]).exists()]
    assert not missing, f"{doc.relative_to(ROOT)} links to missing files: {missing}"


def test_guides_exist_and_are_indexed() -> None:
    names = {p.name for p in GUIDES}
    expected = {"encoding.md", "training.md", "looking-inside.md", "evaluation.md", "maps-and-figures.md"}
    assert expected | {"README.md"} <= names
    index = set(relative_links(ROOT / "docs" / "guides" / "README.md"))
    assert names - {"README.md"} <= index, "every guide must be listed in docs/guides/README.md"
    for name in expected:
        lines = (ROOT / "docs" / "guides" / name).read_text(encoding="utf-8").count("\n")
        assert 40 <= lines <= 130, f"{name} has {lines} lines (keep guides between 40 and 130)"


def shell_lines(path: Path) -> list[str]:
    """Logical lines (backslash continuations joined) of the guide's shell code blocks."""
    out: list[str] = []
    for lang, body in FENCE.findall(path.read_text(encoding="utf-8")):
        if lang.lower() not in SHELL_LANGS:
            continue
        pending = ""
        for line in body.splitlines():
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            out.append(pending + line)
            pending = ""
        if pending:
            out.append(pending)
    return out


def invocations(line: str) -> list[tuple[list[str], list[str]]]:
    """``(command path, --options)`` for each ``workbench <command> [<sub>] ...`` in a shell line."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:  # unbalanced quotes: fall back to whitespace
        tokens = line.split("#", 1)[0].split()
    found = []
    for i, token in enumerate(tokens):
        if token != "workbench" or i + 1 >= len(tokens) or tokens[i + 1].startswith("-"):
            continue
        path = [tokens[i + 1]]
        rest = tokens[i + 2 :]
        if is_group(path[0]) and rest and not rest[0].startswith("-"):
            path.append(rest.pop(0))
        options = []
        for arg in rest:
            if arg in SEPARATORS or arg == "workbench":
                break
            if arg.startswith("--"):
                options.append(arg.split("=", 1)[0])
        found.append((path, options))
    return found


@cache
def cli():
    import typer

    from workbench.cli import app

    return app, typer.main.get_command(app)


def is_group(name: str) -> bool:
    """A command with subcommands (typer vendors click, so test for the attribute, not the class)."""
    return isinstance(getattr(cli()[1].commands.get(name), "commands", None), dict)


@cache
def help_text(path: tuple[str, ...]) -> tuple[int, str]:
    from typer.testing import CliRunner

    app, _ = cli()
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    return result.exit_code, result.output


def guide_invocations() -> list[tuple[str, str, list[str], list[str]]]:
    rows = []
    for guide in GUIDES:
        for line in shell_lines(guide):
            for path, options in invocations(line):
                rows.append((guide.name, line.strip(), path, options))
    return rows


def test_guides_mention_commands() -> None:
    commands = {" ".join(path) for _, _, path, _ in guide_invocations()}
    wanted = ("encode", "train", "respond", "quality", "lens", "latent-lens build", "map", "eval safety")
    for expected in wanted:
        assert expected in commands, f"no guide shows `workbench {expected}`"


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_guide_commands_and_options_exist(guide: Path) -> None:
    problems = []
    for name, line, path, options in guide_invocations():
        if name != guide.name:
            continue
        code, text = help_text(tuple(path))
        if code != 0:
            problems.append(f"`workbench {' '.join(path)}` is not a command (in: {line})")
            continue
        for option in options:
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text):
                problems.append(f"`workbench {' '.join(path)}` has no option {option} (in: {line})")
    assert not problems, "\n".join(problems)
