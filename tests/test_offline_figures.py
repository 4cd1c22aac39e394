"""Figures open anywhere: no HTML loads plotly.js from the network, and headless Chromium with the
network switched off renders a committed figure, a fresh evaluation report and a lens heatmap."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from workbench.eval.results import BarChart, EvalReport, Table
from workbench.report import figures
from workbench.report.eval_report import write_eval_report

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (CI installs Debian's)")
SCRIPT_SRC = re.compile(r"<script[^>]*\bsrc=\"([^\"]+)\"")


def rendered_dom(page: Path, profile: Path) -> str:
    """The DOM of ``page`` after its scripts ran in headless Chromium, with every host unresolvable
    and a dead proxy, so nothing can come from the network."""
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=127.0.0.1:9",
        "--virtual-time-budget=15000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    return done.stdout


def chart_drawn(dom: str) -> bool:
    """plotly drew a chart: its SVG root and at least one trace layer are in the DOM."""
    return 'class="main-svg"' in dom and re.search(r'class="[^"]*\b(trace|heatmaplayer)\b', dom) is not None


def test_committed_figures_load_plotly_locally() -> None:
    pages = sorted(FIGURES.rglob("*.html"))
    assert len(pages) >= 14
    shared = FIGURES / figures.PLOTLY_JS
    assert figures.plotlyjs_version(shared), "figures/plotly.min.js is missing"
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "cdn.plot.ly" not in text, page
        for src in SCRIPT_SRC.findall(text):
            assert "://" not in src, f"{page} loads {src}"
            assert (page.parent / src).resolve() == shared.resolve(), f"{page}: {src}"
        assert "crossorigin" not in text, f"{page}: a CORS script tag does not load from file://"


def test_figures_share_one_plotly_js(tmp_path: Path) -> None:
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=["a"], y=[1]))
    top = figures.write_html(fig, tmp_path / "top.html")
    deep = figures.write_html(fig, tmp_path / "a" / "b" / "deep.html")
    too_deep = figures.write_html(fig, tmp_path / "a" / "b" / "c" / "far.html")
    assert SCRIPT_SRC.findall(top.read_text())[-1] == "plotly.min.js"
    assert SCRIPT_SRC.findall(deep.read_text())[-1] == "../../plotly.min.js"
    assert SCRIPT_SRC.findall(too_deep.read_text())[-1] == "plotly.min.js"  # its own copy
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("plotly.min.js")) == [
        Path("a/b/c/plotly.min.js"),
        Path("plotly.min.js"),
    ]
    staged = figures.write_html(fig, tmp_path / "a" / "b" / ".staging-1" / "later.html")
    assert SCRIPT_SRC.findall(staged.read_text())[-1] == "../../plotly.min.js"  # from a/b, its destination
    alone = figures.write_html(fig, tmp_path / "alone" / "x.html", standalone=True)
    assert not SCRIPT_SRC.findall(alone.read_text()) and not (alone.parent / "plotly.min.js").exists()


@needs_chromium
def test_committed_figure_renders_offline(tmp_path: Path) -> None:
    assert chart_drawn(rendered_dom(FIGURES / "figure1.html", tmp_path / "p1"))
    # the check has teeth: the same figure with plotly.js from the CDN draws nothing offline
    text = (FIGURES / "figure1.html").read_text(encoding="utf-8")
    cdn = tmp_path / "cdn.html"
    cdn.write_text(text.replace('src="plotly.min.js"', 'src="https://cdn.plot.ly/plotly-3.0.0.min.js"'))
    assert not chart_drawn(rendered_dom(cdn, tmp_path / "p3"))


@needs_chromium
def test_fresh_report_and_lens_heatmap_render_offline(tmp_path: Path, monkeypatch) -> None:
    import plotly.graph_objects as go

    from workbench.lens.logit import LensReading
    from workbench.report.lens_plot import heatmap, write_heatmap

    def no_png(*_a, **_k):
        raise RuntimeError("no PNG in this test: the report shows the interactive chart itself")

    monkeypatch.setattr(go.Figure, "write_image", no_png)
    report = EvalReport(
        "safety",
        {"config": {"model": "tiny"}, "metrics": {}, "wall_time_s": 1.0},
        {"scores": Table([{"encoder": "gen", "top_1_acc": 0.25}], ["encoder", "top_1_acc"])},
        {"acc": BarChart("top-k acc", {"gen": {"1": 0.25, "5": 0.5}}, "k", "share")},
    )
    written = write_eval_report(report, tmp_path / "results")
    assert (tmp_path / "results" / "plotly.min.js").is_file()
    assert chart_drawn(rendered_dom(written["html"], tmp_path / "p1"))

    reading = LensReading(
        query="q", input_text="q", layers=[1, 2], positions=["<compress_1>"], tokens=[[["a"]], [["b"]]],
        ids=[[[1]], [[2]]], probs=[[[0.4]], [[0.9]]], union=["b"], num_layers=2,
    )  # fmt: skip
    (page,) = write_heatmap(heatmap([reading]), tmp_path / "lens.html", None)
    assert not (tmp_path / "plotly.min.js").exists()  # standalone
    assert chart_drawn(rendered_dom(page, tmp_path / "p2"))
