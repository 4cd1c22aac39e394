"""Property: any paths, option values and texts given to a writing command end in exit 0, 1 or 2, with no
traceback, and leave nothing behind where the command would have written.

The commands run in-process through ``main(argv)`` inside a fresh folder per example (the working
folder, so relative paths and default outputs land there too); loading a model is blocked (a
one-line error), so every example stops at the latest when the command would start its real work.
"""

from __future__ import annotations

import io
import os
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.cli import main
from workbench.core.errors import WorkbenchError

FIXED_PATHS = [
    "a-file.txt",  # a file where a folder may be expected
    "a-folder",  # a folder where a file may be expected
    "a-file.txt/sub/out.json",  # a parent that is a file
    "a-folder/new/deeper/out.jsonl",  # folders the command would make
    "pairs.jsonl",  # a valid responses file
    "/proc/workbench-property/out.json",  # a place where nothing can be created
    "n" * 300,  # a name too long for the file system
    "out.csv",
    "report",
]
NAME = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\~"),
    min_size=1,
    max_size=24,
).filter(lambda s: s.strip() and ".." not in s and not s.startswith("/"))
PATH = st.one_of(st.sampled_from(FIXED_PATHS), NAME)
NUMBER = st.one_of(
    st.integers(min_value=-(10**21), max_value=10**21).map(str),
    st.sampled_from(["0", "-1", "1", "99999999999999999999", "abc", "", "1.5"]),
)
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)

COMMANDS = {
    "export": lambda d: ["export", d.draw(PATH), d.draw(PATH)],
    "encode": lambda d: ["encode", d.draw(TEXT), "--save", d.draw(PATH), "--batch-size", d.draw(NUMBER)],
    "lens": lambda d: [
        "lens",
        d.draw(TEXT),
        d.draw(st.sampled_from(["--out", "--html", "--png"])),
        d.draw(PATH),
        "--top-k",
        d.draw(NUMBER),
    ],
    "respond": lambda d: [
        "respond",
        "--prompts",
        d.draw(PATH),
        "--out",
        d.draw(PATH),
        "--limit",
        d.draw(NUMBER),
    ],
    "train": lambda d: [
        "train",
        "--responses",
        d.draw(PATH),
        "--out",
        d.draw(PATH),
        "--limit",
        d.draw(NUMBER),
        "--max-steps",
        d.draw(NUMBER),
    ],
    "map": lambda d: ["map", "--out", d.draw(PATH), "--limit", d.draw(NUMBER)],
    "eval": lambda d: [
        "eval",
        d.draw(st.sampled_from(["safety", "reasoning"])),
        "--out",
        d.draw(PATH),
        "--limit",
        d.draw(NUMBER),
    ],
    "quality": lambda d: [
        "quality",
        d.draw(PATH),
        "--heldout",
        d.draw(PATH),
        "--train-responses",
        d.draw(PATH),
        "--out",
        d.draw(PATH),
        "--limit",
        d.draw(NUMBER),
    ],
    "latent-lens": lambda d: [
        "latent-lens",
        "build",
        "--responses",
        d.draw(PATH),
        "--out",
        d.draw(PATH),
        "--limit",
        d.draw(NUMBER),
    ],
}


@st.composite
def command_lines(draw) -> list[str]:
    name = draw(st.sampled_from(sorted(COMMANDS)))
    return COMMANDS[name](type("D", (), {"draw": staticmethod(draw)})())


def tree(root: Path) -> dict[str, int | None]:
    """Every path under ``root`` with its size (None for folders)."""
    return {
        str(p.relative_to(root)): (None if p.is_dir() else p.stat().st_size) for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def blocked_models():
    """Loading any backbone is a one-line error: the examples never do the real work."""
    import workbench.core.backbone as backbone

    def blocked(*args, **kwargs):
        raise WorkbenchError("model loading is blocked in this test", "none")

    saved = backbone._from_folder
    backbone._from_folder = blocked  # every way to a backbone (registry, folder, hub) goes through it
    yield
    backbone._from_folder = saved


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(argv=command_lines())
def test_any_input_to_a_writing_command_fails_cleanly(argv, blocked_models) -> None:
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="workbench-property-") as folder:
        root = Path(folder)
        (root / "a-file.txt").write_text("Why is the sky blue?\n")
        (root / "a-folder").mkdir()
        (root / "pairs.jsonl").write_text('{"prompt": "Why?", "response": "Because."}\n')
        before = tree(root)
        out, err = io.StringIO(), io.StringIO()
        os.chdir(root)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                code = main(argv)  # an uncaught exception fails the test with its traceback
        finally:
            os.chdir(here)
        stderr = err.getvalue()
        assert code in (0, 1, 2), (argv, code, stderr)
        assert "Traceback" not in stderr, (argv, stderr)
        if code == 1:
            errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
            assert len(errors) == 1, (argv, stderr)
        assert tree(root) == before, (argv, stderr)  # nothing new, nothing half-written
