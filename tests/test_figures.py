"""write_figure: HTML always; a PNG export that hangs or fails never stalls or breaks a run."""

from __future__ import annotations

import threading
import time

import plotly.graph_objects as go

from workbench.report import figures


def test_hanging_png_export_times_out(tmp_path, monkeypatch, caplog) -> None:
    release = threading.Event()
    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    monkeypatch.setattr(fig, "write_image", lambda *a, **k: release.wait(30))
    monkeypatch.setattr(figures, "PNG_TIMEOUT_S", 0.5)
    start = time.perf_counter()
    written = figures.write_figure(fig, tmp_path / "fig")
    release.set()
    assert written == [tmp_path / "fig.html"] and (tmp_path / "fig.html").is_file()
    assert time.perf_counter() - start < 10
    assert "WORKBENCH_PNG_TIMEOUT" in caplog.text


def test_failing_png_export_keeps_the_html(tmp_path, monkeypatch, caplog) -> None:
    fig = go.Figure(go.Bar(x=["a"], y=[1]))

    def fail(*_a, **_k):
        raise RuntimeError("no chrome")

    monkeypatch.setattr(fig, "write_image", fail)
    assert figures.write_figure(fig, tmp_path / "f.v2") == [tmp_path / "f.v2.html"]
    assert "install chromium" in caplog.text
