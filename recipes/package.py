"""Ship a finished run inside the package: checkpoint, card, training log and loss figure.

Usage: python recipes/package.py RUN_DIR NAME [--train train3] [--earlier-log LOG ...] [--notes "..."]
RUN_DIR holds responses.jsonl, the training folder (``--train``, default train/, from `workbench train`)
and quality.json/.md. ``--earlier-log`` (repeatable, oldest first) names the training logs of the
earlier stages this run continued (``--init-from``): the loss figure then shows every stage, and the
card counts their steps.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from workbench.core.paths import packaged_checkpoints_dir
from workbench.report.card import card_markdown, read_log, stage_rows, training_figure
from workbench.store.checkpoint import CONFIG_FILE, PROMPTS_FILE, WEIGHTS_FILE
from workbench.train.quality import QualityReport

ROOT = Path(__file__).resolve().parents[1]


def main(
    run: Path, name: str, notes: str = "", train_dir: str = "train", earlier_logs: list[Path] | None = None
) -> None:
    logs = list(earlier_logs or [])
    train = run / train_dir
    target = packaged_checkpoints_dir() / name
    target.mkdir(parents=True, exist_ok=True)
    for file in (CONFIG_FILE, WEIGHTS_FILE, PROMPTS_FILE):  # the fingerprint: its training prompts
        if (train / file).is_file():
            shutil.copy2(train / file, target / file)
    figures = ROOT / "figures" / "training" / name
    figures.mkdir(parents=True, exist_ok=True)
    for file in ("train_log.jsonl", "run_config.json"):
        shutil.copy2(train / file, figures / file)
    quality = None
    if (run / "quality.json").is_file():
        shutil.copy2(run / "quality.json", figures / "quality.json")
        quality = QualityReport(**json.loads((run / "quality.json").read_text())).markdown()
    run_config = json.loads((train / "run_config.json").read_text())
    rows = read_log(train / "train_log.jsonl")
    written = training_figure(
        [*logs, train / "train_log.jsonl"], figures / "loss", f"LLM2Vec-Gen training on {name}"
    )
    earlier = stage_rows(logs)[0][-1]["step"] if logs else None  # steps, not log rows (--log-every)
    card = card_markdown(run_config, rows, quality, notes, earlier_steps=earlier)
    card += (
        f"\nTraining curves: `figures/training/{name}/loss.html` (and `.png`); log and run config "
        f"beside them. Recipe: `recipes/{name}.sh`.\n"
    )
    (target / "README.md").write_text(card)
    print(f"packaged {target} ({', '.join(p.name for p in written)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("name")
    parser.add_argument("--train", default="train", help="training folder inside RUN_DIR")
    parser.add_argument(
        "--earlier-log", type=Path, action="append", help="log of an earlier stage (repeat, oldest first)"
    )
    parser.add_argument("--notes", default="", help="sentence for the card's data line")
    args = parser.parse_args()
    main(args.run, args.name, args.notes, args.train, args.earlier_log)
