"""Numbers in the README, cards and guides are rendered from the committed JSON, and stay so."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from workbench.core.errors import WorkbenchError
from workbench.report.numbers import check, format_like, render, unreferenced

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "analyses"))
import render_docs  # noqa: E402


@pytest.mark.parametrize(
    ("quoted", "value", "shown"),
    [
        ("0.841", 0.84149, "0.841"),
        ("+189%", 1.8876, "+189%"),
        ("43.2%", 0.4318, "43.2%"),
        ("-41.8%", -0.41758, "-41.8%"),
        ("3,610", 3610, "3,610"),
        ("0.00", -0.0001, "0.00"),
        ("+0.5%", -0.012, "-1.2%"),
    ],
)
def test_format_follows_the_quoted_number(quoted: str, value: float, shown: str) -> None:
    assert format_like(quoted, value) == shown


def test_render_rewrites_references_and_includes(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(
        json.dumps({"m": {"gen": [0.5, 0.25]}, "md": "| a |\n|---|\n| 1 |", "verdict": "hint"})
    )
    doc = tmp_path / "doc.md"
    doc.write_text(
        "MRR 0.300<!--n r.json#m/gen/0--> and +20%<!--n {r.json#m/gen/0} / {r.json#m/gen/1} - 1-->\n"
        "<!--include r.json#md-->\nold table\n<!--/include-->\na result<!--w r.json#verdict-->\n"
    )
    assert [m.rendered for m in check(doc, tmp_path)] == ["(changed)", "hint", "0.500", "+100%"]
    doc.write_text(render(doc.read_text(), tmp_path))
    assert "MRR 0.500<!--n" in doc.read_text() and "+100%<!--n" in doc.read_text()
    assert "| 1 |\n<!--/include-->" in doc.read_text() and "old table" not in doc.read_text()
    assert "a hint<!--w" in doc.read_text()
    assert check(doc, tmp_path) == []
    with pytest.raises(WorkbenchError, match="no 'nope'"):
        render("1.0<!--n r.json#m/nope-->", tmp_path)


def test_unreferenced_result_numbers_are_found(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "F1 0.261 here, 12.5% there, version 0.2.0, 2 cores, `0.123` in code,\n"
        "0.50<!--n r.json#x--> referenced\n```\n0.999\n```\n<!--include t.md-->\n| 0.777 |\n<!--/include-->\n"
    )
    assert unreferenced(doc) == [(1, "0.261"), (1, "12.5%")]


def test_committed_docs_quote_their_sources() -> None:
    """Every quoted result equals its JSON source, and none is quoted without one."""
    problems = render_docs.problems()
    assert not problems, "run `make docs` (or python analyses/render_docs.py):\n" + "\n".join(problems[:40])


@pytest.mark.parametrize("name", ["smollm2-135m", "qwen2.5-coder-0.5b"])
def test_card_top_is_what_card_markdown_makes_from_the_committed_json(name: str) -> None:
    from workbench.report.card import card_from_figures, card_notes

    card = (ROOT / "workbench" / "checkpoints" / name / "README.md").read_text(encoding="utf-8")
    fresh = card_from_figures(ROOT / "figures" / "training" / name, card_notes(card))
    assert card.startswith(fresh), "regenerate the card's top with recipes/package.py"
    assert "4-bit" in fresh and "quantised model" in fresh
