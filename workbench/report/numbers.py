"""Numbers in prose rendered from the JSON they came from: ``make docs`` writes them, CI checks them.

A result quoted in a markdown file carries a hidden reference right after it::

    MRR 0.841<!--n figures/training/smollm2-135m/quality.json#retrieval/gen/mrr-->

The reference names a JSON file (relative to the repository root) and a ``/``-separated key path in
it (list items by index). An expression of references in braces works too, for derived numbers:
``+189%<!--n {figures/eval/r.json#a} / {figures/eval/r.json#b} - 1-->``. :func:`render` rewrites the
number in front of every reference in the format it already has: its decimals, a ``%`` (the value
times 100), a leading ``+`` for signed values, thousands separators.

A word taken from a JSON string (a verdict such as ``result`` or ``hint``) is quoted the same way
with ``<!--w file.json#key/path-->`` after it.

A whole generated table goes in an include block, replaced by a markdown file's text or a JSON
string (``<!--include figures/table1.md-->`` or ``<!--include figures/eval/x.json#markdown-->``,
then the text, then ``<!--/include-->``).

:func:`check` reports where a file differs from its rendering, and :func:`unreferenced` lists
result-like numbers (two or more decimals, or a percentage with a decimal) that carry no reference
(versions, identifiers, targets after ``≤`` and constants marked ``<!--fixed-->`` are not results),
outside code blocks, include blocks and generated blocks.
"""

from __future__ import annotations

import ast
import json
import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..core.errors import WorkbenchError

NUMBER = r"[-+−]?\d[\d,]*(?:\.\d+)?%?"
REFERENCE = re.compile(rf"(?P<number>{NUMBER})<!--n (?P<ref>.+?)-->")
WORD = re.compile(r"(?P<word>[A-Za-z][\w-]*)<!--w (?P<ref>.+?)-->")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
RESULT_LIKE = re.compile(r"(?<![\w.#/-])[-+]?\d+\.\d{2,}(?![\w.])|(?<![\w.#/-])[-+]?\d+\.\d+%")
COMMENT = re.compile(r"<!--.*?-->", re.S)
VERSION_BEFORE = re.compile(r"(?:Python|transformers|torch|arXiv|version|[Vv]|[≤<>≥]|<=|>=)\s*$")
"""Words before a number that make it a version, an identifier or a target, not a result."""
FIXED = "<!--fixed-->"
"""Written right after a number that is a constant of the method or the machine, not a result."""
GENERATED = re.compile(r"<!-- begin generated.*?<!-- end generated -->", re.S)
"""A block a generator wrote from JSON (a card's top); its own test compares it with a fresh run."""
INCLUDE = re.compile(
    r"(?P<head><!--include (?P<ref>[^>]+?)-->\n)(?P<body>.*?)(?P<tail><!--/include-->)", re.S
)
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


@dataclass(frozen=True)
class Mismatch:
    """A quoted number that differs from its source."""

    file: str
    line: int
    quoted: str
    rendered: str
    ref: str


@cache
def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def resolve(root: Path, ref: str, what: str = "number reference") -> Any:
    """The JSON value at ``file.json#key/path``. A key that itself holds ``/`` (``trained / harmful``)
    is found by joining path parts until the key exists."""
    file, _, keys = ref.strip().partition("#")
    path = root / file
    if not path.is_file():
        raise WorkbenchError(f"{what} {ref!r}: {file} does not exist", "fix the reference")
    value: Any = _json(path)
    parts = keys.split("/") if keys else []
    i = 0
    while i < len(parts):
        for j in range(i + 1, len(parts) + 1):
            key = "/".join(parts[i:j])
            if isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value, i = value[int(key)], j
                break
            if isinstance(value, dict) and key in value:
                value, i = value[key], j
                break
        else:
            raise WorkbenchError(f"{what} {ref!r}: no {parts[i]!r} in {file}", "fix the key path")
    return value


def lookup(root: Path, ref: str) -> float:
    """The number a ``file.json#key/path`` reference names."""
    value = resolve(root, ref)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WorkbenchError(f"number reference {ref!r} is {value!r}, not a number", "point at a number")
    return float(value)


def evaluate(root: Path, ref: str) -> float:
    """A reference, or an arithmetic expression of ``{reference}`` terms."""
    if "{" not in ref:
        return lookup(root, ref)
    values: list[float] = []

    def slot(match: re.Match[str]) -> str:
        values.append(lookup(root, match.group(1)))
        return f"v{len(values) - 1}"

    expr = re.sub(r"\{([^}]+)\}", slot, ref)

    def calc(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return calc(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](calc(node.left), calc(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -calc(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name) and re.fullmatch(r"v\d+", node.id):
            return values[int(node.id[1:])]
        raise WorkbenchError(f"number reference {ref!r} is not plain arithmetic", "use + - * / and numbers")

    try:
        return calc(ast.parse(expr.strip(), mode="eval"))
    except SyntaxError as err:
        raise WorkbenchError(f"number reference {ref!r} does not parse", "check its braces") from err


def format_like(quoted: str, value: float) -> str:
    """``value`` written the way ``quoted`` is: decimals, ``%``, sign and thousands separators."""
    percent = quoted.endswith("%")
    body = quoted.rstrip("%").lstrip("+-−")
    decimals = len(body.split(".")[1]) if "." in body else 0
    shown = value * 100 if percent else value
    text = f"{abs(shown):,.{decimals}f}" if "," in body else f"{abs(shown):.{decimals}f}"
    if float(text.replace(",", "")) == 0:
        shown = 0.0  # no "-0.0"
    sign = "-" if shown < 0 else ("+" if quoted[:1] == "+" else "")
    return sign + text + ("%" if percent else "")


def word(root: Path, ref: str) -> str:
    """The JSON string a ``<!--w ...-->`` reference names."""
    value = resolve(root, ref, "word reference")
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z][\w-]*", value):
        raise WorkbenchError(f"word reference {ref!r} is {value!r}, not one word", "point at a word")
    return value


def included(root: Path, ref: str) -> str:
    """The text an include names: a file's, or a string in a JSON file (``file.json#key/path``)."""
    file, _, keys = ref.strip().partition("#")
    path = root / file
    if not path.is_file():
        raise WorkbenchError(f"include {ref!r}: {file} does not exist", "fix the include")
    if not keys:
        return path.read_text(encoding="utf-8").strip() + "\n"
    value = resolve(root, ref, "include")
    if not isinstance(value, str):
        raise WorkbenchError(f"include {ref!r} is not a string in {file}", "point at a markdown string")
    return value.strip() + "\n"


def render(text: str, root: Path) -> str:
    """``text`` with include blocks refilled and the number before every reference rewritten."""
    text = INCLUDE.sub(lambda m: m["head"] + included(root, m["ref"]) + m["tail"], text)
    text = WORD.sub(lambda m: word(root, m["ref"]) + f"<!--w {m['ref']}-->", text)
    return REFERENCE.sub(
        lambda m: format_like(m["number"], evaluate(root, m["ref"])) + f"<!--n {m['ref']}-->", text
    )


def check(path: Path, root: Path) -> list[Mismatch]:
    """Quoted numbers in ``path`` that differ from their sources."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in INCLUDE.finditer(text):
        if m["body"] != included(root, m["ref"]):
            line = text.count("\n", 0, m.start()) + 1
            out.append(Mismatch(str(path.relative_to(root)), line, "(included text)", "(changed)", m["ref"]))
    for m in WORD.finditer(text):
        if m["word"] != (found := word(root, m["ref"])):
            line = text.count("\n", 0, m.start()) + 1
            out.append(Mismatch(str(path.relative_to(root)), line, m["word"], found, m["ref"]))
    for m in REFERENCE.finditer(text):
        rendered = format_like(m["number"], evaluate(root, m["ref"]))
        if rendered != m["number"]:
            line = text.count("\n", 0, m.start()) + 1
            out.append(Mismatch(str(path.relative_to(root)), line, m["number"], rendered, m["ref"]))
    return out


def unreferenced(path: Path) -> list[tuple[int, str]]:
    """Result-like numbers without a reference (code blocks, code spans and comments skipped)."""
    text = path.read_text(encoding="utf-8")
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))  # noqa: E731 - keeps line numbers
    text = FENCE.sub(blank, INCLUDE.sub(blank, GENERATED.sub(blank, text)))
    text = REFERENCE.sub(lambda m: " " * len(m.group(0)), text)
    found = []
    for m in RESULT_LIKE.finditer(text):
        if text.startswith(FIXED, m.end()) or VERSION_BEFORE.search(text[max(0, m.start() - 14) : m.start()]):
            continue
        found.append(m)
    text = COMMENT.sub(blank, INLINE_CODE.sub(blank, text))
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(0))
        for m in found
        if text[m.start() : m.end()] == m.group(0)  # not inside a code span or comment
    ]


def render_files(paths: Iterable[Path], root: Path, *, write: bool = True) -> list[Path]:
    """Render every file; write the changed ones (atomically) unless ``write`` is False. Returns them."""
    from ..store.atomic import atomic_write

    _json.cache_clear()
    changed = []
    for path in paths:
        old = path.read_text(encoding="utf-8")
        new = render(old, root)
        if new != old:
            changed.append(path)
            if write:
                atomic_write(path, lambda tmp, new=new: tmp.write_text(new, encoding="utf-8"))
    return changed
