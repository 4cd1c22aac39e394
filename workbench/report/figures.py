"""Writing plotly figures: interactive HTML always, a static PNG when kaleido finds a Chrome."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("workbench")
PNG_TIMEOUT_S = float(os.environ.get("WORKBENCH_PNG_TIMEOUT", "180"))
"""Seconds a PNG export may take: a Chrome that hangs (seen under heavy load) must not stall a run."""


def with_suffix(stem: Path, suffix: str) -> Path:
    """``stem`` plus a suffix, keeping dots in the stem (``figure1-qwen2.5`` -> ``figure1-qwen2.5.html``)."""
    return stem.parent / f"{stem.name}{suffix}"


def write_figure(fig: Any, stem: Path, width: int = 1100, height: int = 700) -> list[Path]:
    """Write ``stem.html`` and, when a Chrome for kaleido is available, ``stem.png``.

    kaleido 1.x drives a Chrome or Chromium through choreographer; on Debian or Ubuntu
    ``apt-get install chromium`` is enough (``BROWSER_PATH`` points it at another binary).
    Without one a single warning is logged and only the HTML is written.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    html, png = with_suffix(stem, ".html"), with_suffix(stem, ".png")
    fig.write_html(str(html), include_plotlyjs="cdn")
    written = [html]
    outcome: list[BaseException | None] = []

    def export() -> None:
        try:
            fig.write_image(str(png), width=width, height=height, scale=1)
            outcome.append(None)
        except Exception as err:  # kaleido needs a Chrome: apt-get install chromium, or plotly_get_chrome
            outcome.append(err)

    worker = threading.Thread(target=export, daemon=True)
    worker.start()
    worker.join(PNG_TIMEOUT_S)
    if not outcome:
        log.warning(
            "PNG not written: export took over %.0f s (set WORKBENCH_PNG_TIMEOUT to wait longer)",
            PNG_TIMEOUT_S,
        )
    elif outcome[0] is not None:
        log.warning("PNG not written (%s): install chromium for static images", type(outcome[0]).__name__)
    else:
        written.append(png)
    return written
