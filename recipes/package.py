"""Ship a finished run inside the package: checkpoint, card, training log and loss figure.

Usage: python recipes/package.py RUN_DIR BACKBONE_NAME ["notes for the card"]
RUN_DIR holds responses.jsonl, train/ (from `workbench train`) and quality.json/.md.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from workbench.card import card_markdown, read_log, training_figure
from workbench.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from workbench.paths import packaged_checkpoints_dir
from workbench.quality import QualityReport

ROOT = Path(__file__).resolve().parents[1]


def main(run: Path, name: str, notes: str = "") -> None:
    train = run / "train"
    target = packaged_checkpoints_dir() / name
    target.mkdir(parents=True, exist_ok=True)
    for file in (CONFIG_FILE, WEIGHTS_FILE):
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
    written = training_figure(train / "train_log.jsonl", figures / "loss", f"LLM2Vec-Gen training on {name}")
    card = card_markdown(run_config, rows, quality, notes)
    card += (
        f"\nTraining curves: `figures/training/{name}/loss.html` (and `.png`); log and run config "
        f"beside them. Recipe: `recipes/{name}.sh`.\n"
    )
    (target / "README.md").write_text(card)
    print(f"packaged {target} ({', '.join(p.name for p in written)})")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")
