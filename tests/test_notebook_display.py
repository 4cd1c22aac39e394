"""Results show themselves in a notebook: lens readings, evaluation reports, maps, checkpoint cards.

Each is evaluated as a cell's last expression in a real IPython shell; what the front end receives
is an HTML table, then each chart as plotly's mimetype (drawn by JupyterLab's plotly extension) plus
a PNG when a Chrome is there.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import tiny_gen

from workbench.eval.map_items import MapItem
from workbench.eval.maps import EmbeddingMap
from workbench.eval.results import BarChart, EvalReport, Table

PLOTLY = "application/vnd.plotly.v1+json"


@pytest.fixture(scope="module")
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    return InteractiveShell.instance()


def outputs_of(shell, **names) -> list[dict]:
    """The display data a cell ``obj`` sends to the front end (one dict per output)."""
    from IPython.utils.capture import capture_output

    shell.user_ns.update(names)
    with capture_output() as captured:
        result = shell.run_cell(next(iter(names)))
    result.raise_error()
    return [o.data for o in captured.outputs]


def tiny_map() -> EmbeddingMap:
    items = [
        MapItem("where do polar bears live?", "query", pair=1, source="nq-open#1"),
        MapItem("On Arctic sea ice.", "response", pair=0),
        MapItem("Bake bread at 220 C.", "distractor"),
    ]
    coords = {"gen": np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])}
    metrics = {
        "encoders": {
            "gen": {"recall@1": 1.0, "mrr": 1.0, "cos_own": 0.8, "cos_others": 0.1, "candidates": 2}
        },
        "llm": {"harmful_refused": 0, "harmful_queries": 0},
    }
    meta = {"layout": "pca", "trained": True, "model": "tiny"}
    emb = {"gen": torch.eye(3)}
    return EmbeddingMap(items, ["gen"], {"gen": "LLM2Vec-Gen"}, emb, coords, metrics, meta)


def tiny_report() -> EvalReport:
    return EvalReport(
        "reasoning",
        {"config": {"model": "tiny"}, "metrics": {}},
        {"nDCG@10": Table([{"encoder": "gen", "ndcg@10": 0.5}], ["encoder", "ndcg@10"])},
        {"ndcg10": BarChart("nDCG@10", {"gen": {"gsm8k": 0.5}, "teacher": {"gsm8k": 0.7}}, "task", "nDCG")},
    )


def test_results_display_tables_then_charts(shell, tiny_dirs, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_NOTEBOOK_PNG", "0")  # the PNG has its own test
    gen = tiny_gen(tiny_dirs)
    readings = gen.lens(["where do polar bears live?", "how is bread made?"], layers=[0, -1])
    for obj, table_text in (
        (readings, "union"),
        (readings[0], "polar bears"),
        (tiny_report(), "ndcg@10"),
        (tiny_map(), "R@1"),
    ):
        out = outputs_of(shell, obj=obj)
        assert "text/html" in out[0] and table_text in out[0]["text/html"], type(obj)
        figures = out[1:]
        assert figures and all(PLOTLY in f and "text/plain" in f for f in figures)
        assert figures[0][PLOTLY]["data"], "an empty chart"
        assert "<table>" in obj._repr_html_()  # the same as one HTML page, for other tools
    (heat,) = outputs_of(shell, obj=readings)[1:]
    assert heat[PLOTLY]["data"][0]["type"] == "heatmap" and len(heat[PLOTLY]["data"]) == 2


def test_checkpoint_card_displays_itself(shell) -> None:
    from workbench.store.checkpoint import read_checkpoint
    from workbench.store.loading import packaged_checkpoint

    out, _ = shell.display_formatter.format(read_checkpoint(packaged_checkpoint("smollm2-135m")))
    assert "# LLM2Vec-Gen checkpoint for `smollm2-135m`" in out["text/markdown"]
    assert out["text/plain"] == "<checkpoint smollm2-135m: smollm2-135m, trained>"  # no machine path


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no Chromium for kaleido")
def test_charts_carry_a_png_for_viewers_without_javascript(shell) -> None:
    out = outputs_of(shell, obj=tiny_report())
    png = out[1].get("image/png")
    assert png and png.startswith("iVBOR")  # base64 of the PNG signature
