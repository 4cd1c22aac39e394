"""Model cards and training figures from real run logs, including a run continued from another."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.report.card import card_markdown, stage_rows, training_figure

ROOT = Path(__file__).resolve().parents[1]


def write_log(path: Path, steps: int, recon: float) -> Path:
    rows = [
        {
            "step": i + 1,
            "recon_loss": recon - 0.1 * i,
            "align_loss": 0.01,
            "cos_diag": 0.1,
            "cos_offdiag": 0.0,
            "elapsed_s": 3.0 * (i + 1),
        }
        for i in range(steps)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_stages_number_steps_on(tmp_path) -> None:
    rows, starts = stage_rows(
        [write_log(tmp_path / "a.jsonl", 3, 5.0), write_log(tmp_path / "b.jsonl", 2, 2.0)]
    )
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["stage"] for r in rows] == [1, 1, 1, 2, 2]
    assert starts == [3]
    assert rows[3]["recon_loss"] == 2.0  # the second log's first row


def test_two_stage_figure_and_card(tmp_path) -> None:
    logs = [write_log(tmp_path / "a.jsonl", 30, 5.0), write_log(tmp_path / "b.jsonl", 20, 2.0)]
    written = training_figure(logs, tmp_path / "loss", "two stages")
    html = (tmp_path / "loss.html").read_text()
    assert tmp_path / "loss.html" in written and "stage 2" in html
    run = {
        "train": {
            "num_thought": 10,
            "num_compress": 10,
            "teacher": "minilm",
            "recon_weight": 1.0,
            "align_weight": 100.0,
            "batch_size": 8,
            "lr": 0.002,
            "warmup_steps": 20,
            "schedule_steps": 20,
            "max_query_length": 128,
            "max_response_length": 64,
            "seed": 43,
            "dtype": "float32",
        },
        "backbone": {"name": "smollm2-135m", "model_type": "llama", "hidden_size": 576, "num_layers": 30},
        "pairs": 600,
        "responses_sha256": "ab" * 32,
        "hardware": {"device": "cpu", "cpu_threads": 1, "platform": "Linux"},
        "world_size": 1,
        "init_from": {"steps": 30, "weights_sha256": "cd" * 32, "train": {"lr": 0.001, "align_weight": 1.0}},
    }
    rows, _ = stage_rows([logs[1]])
    card = card_markdown(run, rows, None)
    assert "Continued training" in card and "50 steps in all" in card and "cdcdcdcd" in card
    assert "Steps: 20 at global batch 8" in card


def test_three_stage_figure_and_card_count_every_stage(tmp_path) -> None:
    logs = [write_log(tmp_path / f"{k}.jsonl", n, 5.0) for k, n in (("a", 30), ("b", 20), ("c", 10))]
    rows, starts = stage_rows(logs)
    assert starts == [30, 50] and rows[-1]["step"] == 60
    training_figure(logs, tmp_path / "loss", "three stages")
    html = (tmp_path / "loss.html").read_text()
    assert "stage 2" in html and "stage 3" in html
    run = json.loads((ROOT / "figures" / "training" / "smollm2-135m" / "run_config.json").read_text())
    run["init_from"] = {"steps": 20, "weights_sha256": "ef" * 32, "train": {"lr": 0.002}}
    card = card_markdown(run, stage_rows([logs[2]])[0], None, earlier_steps=50)
    assert "60 steps in all" in card and "last stage trained 20 steps" in card
