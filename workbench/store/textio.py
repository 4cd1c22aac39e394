"""Reading user text files: UTF-8 only, one text per line or one JSON object per line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.errors import WorkbenchError
from ..core.paths import require_file


def read_utf8(path: str | Path, what: str = "file") -> str:
    """A text file's content, with one-line errors for a missing file or bytes that are not UTF-8."""
    path = require_file(path, what)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise WorkbenchError(
            f"{path} is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start})",
            "re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`",
        ) from err


def read_jsonl(path: str | Path, what: str = "file") -> list[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` file, one per non-empty line, with one-line errors."""
    path = Path(path).expanduser()
    rows = []
    for n, line in enumerate(read_utf8(path, what).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise WorkbenchError(
                f"{path} line {n} is not JSON ({err.msg})", "write one JSON object per line"
            ) from err
        if not isinstance(row, dict):
            raise WorkbenchError(f"{path} line {n} is not a JSON object", "write one JSON object per line")
        rows.append(row)
    return rows


def read_texts(path: str | Path, field: str = "text") -> list[str]:
    """Non-empty texts from a ``.txt`` file (one per line) or ``.jsonl`` file (``field`` of each row)."""
    path = Path(path).expanduser()
    if path.suffix == ".jsonl":
        lines = []
        for n, row in enumerate(read_jsonl(path), 1):
            value = row.get(field)
            if not isinstance(value, str):
                raise WorkbenchError(
                    f"{path} row {n} has no string field {field!r}", "choose the field with --field"
                )
            if value.strip():
                lines.append(value)
    else:
        lines = [line for line in read_utf8(path).splitlines() if line.strip()]
    if not lines:
        raise WorkbenchError(f"{path} holds no text", "put one text per line")
    return lines
