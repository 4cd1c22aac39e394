"""What an evaluation returns: data only (the JSON payload, tables, chart specs), no plotting.

:func:`workbench.report.eval_report.write_eval_report` turns an :class:`EvalReport` into the files
(``<kind>-<time>.json``, ``.html``, one ``.html`` + ``.png`` per chart); the charts become grouped
bar figures there. Keeping this layer free of plotting lets notebooks and ``analyses/`` read the
numbers without writing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.display import Displayable


@dataclass
class Table:
    """Rows (mappings) and the columns to show, in order."""

    rows: list[dict[str, Any]]
    columns: list[str]


@dataclass
class BarChart:
    """Grouped bars: one colour per series (an encoder), one group per x value."""

    title: str
    series: dict[str, dict[str, float]]
    """``{series: {x: value}}``."""
    x_title: str
    y_title: str


@dataclass
class EvalReport(Displayable):
    """One evaluation run: ``payload`` is the JSON written, ``tables`` map a heading to a table.

    In a notebook it shows its tables and charts."""

    kind: str
    payload: dict[str, Any]
    tables: dict[str, Table] = field(default_factory=dict)
    charts: dict[str, BarChart] = field(default_factory=dict)
    """Chart name (the file suffix, e.g. ``any-harm``) → chart."""

    @property
    def metrics(self) -> dict[str, Any]:
        """The payload's ``metrics`` (per encoder, or per task and encoder)."""
        return self.payload["metrics"]
