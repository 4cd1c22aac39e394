"""The README's two opening commands are exactly what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```(?:bash|sh)\n(.*?)```", text, re.S)
    assert first_block, "README must open with a bash block"
    return [line for line in first_block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_two_commands_that_ci_runs() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for command in commands:
        assert command in ci, f"CI does not run the README command: {command}"
    assert "pip install torch==2.13.0" in commands[0]  # never an unpinned (CUDA) torch
    assert "pytest" in commands[1]


def test_example_documents_exist() -> None:
    docs = ROOT / "examples" / "documents.txt"
    assert len([line for line in docs.read_text(encoding="utf-8").splitlines() if line.strip()]) >= 5
