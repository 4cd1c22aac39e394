"""Writing plotly figures: interactive HTML always, a static PNG when kaleido finds a Chrome.

The HTML never needs a network: a figure written into a folder loads ``plotly.min.js`` from that
folder, written there once (plotly's ``include_plotlyjs="directory"``), or from one up to
:data:`SHARED_LEVELS` folders above when that copy holds the same plotly.js version (so
``figures/`` keeps one copy for ``figures/eval/`` and ``figures/training/<backbone>/``). A
standalone HTML (``standalone=True``, the lens heatmap's ``--html FILE``) carries plotly.js inside.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("workbench")
PNG_TIMEOUT_S = float(os.environ.get("WORKBENCH_PNG_TIMEOUT", "180"))
"""Seconds a PNG export may take: a Chrome that hangs (seen under heavy load) must not stall a run."""
PLOTLY_JS = "plotly.min.js"
SHARED_LEVELS = 2
"""How many folders above a figure's own a shared ``plotly.min.js`` may sit."""


def plotlyjs_version(path: Path) -> str | None:
    """The plotly.js version a ``plotly.min.js`` file announces in its header (None: not plotly.js)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(200)
    except OSError:
        return None
    found = re.search(r"plotly\.js v(\S+)", head)
    return found.group(1) if found else None


def plotlyjs_src(html: Path) -> str:
    """The relative ``src`` by which ``html`` loads plotly.js with no network: the nearest
    ``plotly.min.js`` of the installed version in its folder or up to :data:`SHARED_LEVELS` above,
    else one written beside it now.

    A file written into a hidden folder (``.name-xxxx/``, where atomic writers stage files before
    renaming them into the folder above) is linked from that folder above, its destination.
    """
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    from ..store.atomic import atomic_write

    folder = Path(html).absolute().parent
    while folder.name.startswith(".") and folder.parent != folder:
        folder = folder.parent  # a hidden staging folder: the file is renamed into the one above
    version = get_plotlyjs_version()
    for up, candidate in enumerate([folder, *folder.parents][: SHARED_LEVELS + 1]):
        if plotlyjs_version(candidate / PLOTLY_JS) == version:
            return "../" * up + PLOTLY_JS
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / PLOTLY_JS, lambda tmp: tmp.write_text(get_plotlyjs(), encoding="utf-8"))
    return PLOTLY_JS


def write_html(fig: Any, path: Path, *, standalone: bool = False) -> Path:
    """``fig`` as interactive HTML that opens offline: plotly.js beside it (or shared from a folder
    above), or inside the file with ``standalone`` (about 4.8 MB more)."""
    from ..store.atomic import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    include = True if standalone else plotlyjs_src(path)
    atomic_write(path, lambda tmp: fig.write_html(str(tmp), include_plotlyjs=include))
    return path


def with_suffix(stem: Path, suffix: str) -> Path:
    """``stem`` plus a suffix, keeping dots in the stem (``figure1-qwen2.5`` -> ``figure1-qwen2.5.html``)."""
    return stem.parent / f"{stem.name}{suffix}"


def write_figure(fig: Any, stem: Path, width: int = 1100, height: int = 700) -> list[Path]:
    """Write ``stem.html`` (plotly.js from a local ``plotly.min.js``, see :func:`write_html`) and,
    when a Chrome for kaleido is available, ``stem.png``, each atomically (a temporary file renamed
    over the target).

    kaleido 1.x drives a Chrome or Chromium through choreographer; on Debian or Ubuntu
    ``apt-get install chromium`` is enough (``BROWSER_PATH`` points it at another binary).
    Without one a single warning is logged and only the HTML is written.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    html, png = with_suffix(stem, ".html"), with_suffix(stem, ".png")
    write_html(fig, html)
    written = [html]
    outcome: list[BaseException | None] = []

    def export() -> None:
        from ..store.atomic import atomic_write

        def draw(tmp: Path) -> None:
            fig.write_image(str(tmp), format="png", width=width, height=height, scale=1)
            if not tmp.stat().st_size:
                raise RuntimeError("kaleido wrote an empty image")

        try:  # a temporary file renamed over the PNG: never a half-written image
            atomic_write(png, draw)
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
