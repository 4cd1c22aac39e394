"""Reading user text files: UTF-8 only, one text per line or one JSON object per line."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import WorkbenchError


def read_utf8(path: str | Path, what: str = "file") -> str:
    """A text file's content, with one-line errors for a missing file or bytes that are not UTF-8."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WorkbenchError(f"{what} {path} does not exist", "check the path")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise WorkbenchError(
            f"{path} is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start})",
            "re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`",
        ) from err


def read_texts(path: str | Path, field: str = "text") -> list[str]:
    """Non-empty texts from a ``.txt`` file (one per line) or ``.jsonl`` file (``field`` of each row)."""
    path = Path(path).expanduser()
    content = read_utf8(path)
    lines = [line for line in content.splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        texts = []
        for n, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise WorkbenchError(
                    f"{path} line {n} is not JSON ({err.msg})", "write one JSON object per line"
                ) from err
            value = row.get(field) if isinstance(row, dict) else None
            if not isinstance(value, str):
                raise WorkbenchError(
                    f"{path} line {n} has no string field {field!r}", "choose the field with --field"
                )
            texts.append(value)
        lines = [t for t in texts if t.strip()]
    if not lines:
        raise WorkbenchError(f"{path} holds no text", "put one text per line")
    return lines
