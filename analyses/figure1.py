"""Reproduce the paper's Figure 1 on a workbench backbone: queries move next to their answers.

Harmful AdvBench-IR queries and topic-matched benign NQ-open questions (EfficientQA test: held out
from every shipped checkpoint's training, which the run checks), the frozen LLM's own
answers, self-instruct distractors, refusal texts and compliant harmful-topic texts, embedded by
the teacher, the frozen LLM (mean and last token) and LLM2Vec-Gen; one UMAP per encoder, side by
side, with an arrow from each query to its own answer. Writes ``figures/figure1.html``, ``.png``
and ``.json`` (the numbers); for another ``--model`` the stem is ``figures/figure1-<model>``.

The committed figure keeps data-set text out of the repository: hover labels and the JSON name
each point by its source row (``advbench-ir#41``) unless ``--full-text`` is given. Use
``workbench map`` (same library, full text by default) for exploring, and ``--export DIR`` here to
also write parquet and TensorBoard Projector files.

    python analyses/figure1.py                      # smollm2-135m with its shipped checkpoint
    python analyses/figure1.py --model qwen2.5-coder-0.5b --untrained   # a backbone that refuses
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from workbench.core.registry import DEFAULT_BACKBONE

ROOT = Path(__file__).resolve().parents[1]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_BACKBONE)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--untrained", action="store_true", help="ignore shipped checkpoints")
    p.add_argument("--data-dir", default=None, help="default $WORKBENCH_DATA or ../shared/data")
    p.add_argument("--n-harmful", type=int, default=8)
    p.add_argument("--n-benign", type=int, default=8)
    p.add_argument("--n-distractors", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast", action="store_true", help="PCA instead of UMAP")
    p.add_argument("--full-text", action="store_true", help="put data-set texts in hover labels and JSON")
    p.add_argument("--out", type=Path, default=None, help="output stem (default figures/figure1[-MODEL])")
    p.add_argument("--export", type=Path, default=None, help="also write parquet + Projector TSVs here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from rich.console import Console
    from transformers.utils import logging as hf_logging

    import workbench
    from workbench.core.errors import WorkbenchError
    from workbench.eval.maps import run_map
    from workbench.report.map_figures import metrics_table, write_map, write_parquet, write_projector

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    console = Console(highlight=False)
    default_stem = "figure1" if args.model == DEFAULT_BACKBONE else f"figure1-{Path(args.model).name}"
    stem = args.out or ROOT / "figures" / default_stem
    start = time.time()
    try:
        result = run_map(
            lambda: workbench.load(args.model, checkpoint=args.checkpoint, untrained=args.untrained),
            data_dir=args.data_dir,
            n_harmful=args.n_harmful,
            n_benign=args.n_benign,
            n_distractors=args.n_distractors,
            method="pca" if args.fast else "umap",
            seed=args.seed,
            max_new_tokens=args.max_new_tokens,
            progress=lambda msg: console.print(f"[dim]{time.time() - start:6.1f}s  {msg}[/]"),
        )
    except WorkbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    written = write_map(result, stem, export=False, full_text=args.full_text)
    if args.export is not None:
        written.append(write_parquet(result, args.export / f"{stem.name}.parquet", full_text=args.full_text))
        written += write_projector(result, args.export / f"{stem.name}-projector", full_text=args.full_text)
    console.print(metrics_table(result))
    for path in written:
        console.print(f"wrote {path}")
    console.print(f"{time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
