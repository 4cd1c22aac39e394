"""``workbench eval safety|reasoning|mteb``: options in, one :mod:`workbench.eval` call, the report out.

Heavy imports stay inside the commands; the evaluations themselves are ``run_safety``,
``run_reasoning`` and ``run_mteb`` (what notebooks and ``analyses/`` call too).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..core.paths import check_output
from .common import (
    DEFAULT_BACKBONE,
    CheckpointOpt,
    CorpusEmbOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    UntrainedOpt,
    note_corpus_embeddings,
    note_limit,
)

eval_app = typer.Typer(
    help="Evaluation reports: LLM2Vec-Gen against input-centric baselines on the same data.",
    no_args_is_help=True,
)

OutOpt = Annotated[Path, typer.Option("--out", help="Folder for the JSON, HTML and PNG report.")]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Use only the first N queries (quick runs).")]
SamplesOpt = Annotated[bool, typer.Option("--log-samples", help="Store per-query top-k ids and scores.")]
EncodersOpt = Annotated[
    str, typer.Option("--encoders", help="Comma list of gen, teacher, llm-mean, llm-last.")
]
BatchOpt = Annotated[int, typer.Option(min=1, help="Encoding batch size.")]
DataOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Public data folder (default $WORKBENCH_DATA or ../shared/data)."),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Embedding/answer cache folder (default in $WORKBENCH_CACHE)."),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Recompute every embedding.")]
AllowOverlapOpt = Annotated[
    bool,
    typer.Option(help="Run on queries the checkpoint trained on (the overlap is printed in the report)."),
]


def _loader(
    model: str, checkpoint: Path | None, untrained: bool, dtype: str, device: str
) -> Callable[[], Any]:
    """Loads the model when the evaluation has read its data (bad data fails before a slow load)."""
    from .common import load_model

    return lambda: load_model(model, checkpoint, untrained, dtype, device)


def _check_similarity(similarity: str) -> None:
    from ..eval.retrieval import SIMILARITIES

    if similarity not in SIMILARITIES:
        raise typer.BadParameter(f"use one of {', '.join(SIMILARITIES)}", param_hint="--similarity")


def _write(report: Any, out: Path) -> None:
    """Write the report's files, print its markdown tables and where they went.

    A write that fails (a full disk) removes the report files it began and a folder it made.
    """
    from ..report.eval_report import write_eval_report
    from ..store.atomic import undo_on_failure

    with undo_on_failure(out, prefix=f"{report.kind}-"):
        written = write_eval_report(report, out)
    typer.echo(written["markdown"])
    typer.echo(f"\nwrote {written['json']} and {written['html']}")


@eval_app.command()
def safety(
    model: ModelOpt = DEFAULT_BACKBONE,
    checkpoint: CheckpointOpt = None,
    untrained: UntrainedOpt = False,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "auto",
    out: OutOpt = Path("results"),
    limit: LimitOpt = None,
    log_samples: SamplesOpt = False,
    encoders: EncodersOpt = "gen,teacher,llm-mean,llm-last",
    batch_size: BatchOpt = 16,
    data_dir: DataOpt = None,
    distractors: Annotated[
        Path | None,
        typer.Option(help="Benign passages (.txt, or .jsonl with text/title) instead of the default mix."),
    ] = None,
    max_distractors: Annotated[int, typer.Option(min=0, help="At most this many benign passages.")] = 1000,
    similarity: Annotated[str, typer.Option(help="dot (the paper's) or cosine.")] = "dot",
    refusals: Annotated[
        bool, typer.Option(help="Generate the LLM's answers and split results by refused / answered.")
    ] = True,
    answer_tokens: Annotated[
        int, typer.Option(min=1, help="New tokens per LLM answer (refusal check).")
    ] = 48,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    allow_overlap: AllowOverlapOpt = False,
    corpus_embeddings: CorpusEmbOpt = None,
) -> None:
    """AdvBench-IR: harmful retrieval (top-k acc / any-harm, k = 1, 5, 20, 100); lower is safer."""
    from ..eval.safety import run_safety

    _check_similarity(similarity)
    out = check_output(out, "--out", folder=True)  # before the data and the model
    report = run_safety(
        _loader(model, checkpoint, untrained, dtype, device),
        model_name=model,
        checkpoint=checkpoint,
        encoders=encoders,
        limit=limit,
        log_samples=log_samples,
        batch_size=batch_size,
        data_dir=data_dir,
        distractors=distractors,
        max_distractors=max_distractors,
        similarity=similarity,
        refusals=refusals,
        answer_tokens=answer_tokens,
        cache_dir=cache_dir,
        use_cache=not no_cache,
        allow_overlap=allow_overlap,
        corpus_embeddings=corpus_embeddings or (),
    )
    note_corpus_embeddings(report.payload["config"])
    note_limit(limit, report.payload["data"]["queries"], "AdvBench-IR queries")
    _write(report, out)


@eval_app.command()
def reasoning(
    model: ModelOpt = DEFAULT_BACKBONE,
    checkpoint: CheckpointOpt = None,
    untrained: UntrainedOpt = False,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "auto",
    out: OutOpt = Path("results"),
    limit: LimitOpt = None,
    log_samples: SamplesOpt = False,
    encoders: EncodersOpt = "gen,teacher,llm-mean,llm-last",
    batch_size: BatchOpt = 16,
    data_dir: DataOpt = None,
    tasks: Annotated[
        str,
        typer.Option(help="Comma list: theoremqa-theorems, gsm8k (offline) and BRIGHT tasks (biology, ...)."),
    ] = "theoremqa-theorems,gsm8k",
    bright_dir: Annotated[
        Path | None, typer.Option(help="Local BRIGHT copy (examples/<task>.jsonl, documents/<task>.jsonl).")
    ] = None,
    similarity: Annotated[str, typer.Option(help="cosine or dot.")] = "cosine",
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    allow_overlap: AllowOverlapOpt = False,
    corpus_embeddings: CorpusEmbOpt = None,
) -> None:
    """BRIGHT-style reasoning retrieval: nDCG@10, recall@k, MRR per task and encoder."""
    from ..eval.reasoning import run_reasoning

    _check_similarity(similarity)
    out = check_output(out, "--out", folder=True)  # before the data and the model
    report = run_reasoning(
        _loader(model, checkpoint, untrained, dtype, device),
        model_name=model,
        checkpoint=checkpoint,
        encoders=encoders,
        tasks=tasks,
        limit=limit,
        log_samples=log_samples,
        batch_size=batch_size,
        data_dir=data_dir,
        bright_dir=bright_dir,
        similarity=similarity,
        cache_dir=cache_dir,
        use_cache=not no_cache,
        allow_overlap=allow_overlap,
        corpus_embeddings=corpus_embeddings or (),
    )
    note_corpus_embeddings(report.payload["config"])
    for task, size in report.payload["data"].items():
        note_limit(limit, size["queries"], f"queries of {task}")
    _write(report, out)


@eval_app.command()
def mteb(
    model: ModelOpt = DEFAULT_BACKBONE,
    checkpoint: CheckpointOpt = None,
    untrained: UntrainedOpt = False,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "auto",
    out: OutOpt = Path("results"),
    limit: LimitOpt = None,
    encoders: EncodersOpt = "gen,teacher,llm-mean,llm-last",
    batch_size: BatchOpt = 16,
    data_dir: DataOpt = None,
    tasks: Annotated[
        str | None, typer.Option(help="Comma list of mteb task names (needs their data).")
    ] = None,
    benchmark: Annotated[str | None, typer.Option(help='An mteb benchmark, e.g. "MTEB(eng, v2)".')] = None,
    lite: Annotated[bool, typer.Option("--lite", help="The paper's lite task set (10 tasks).")] = False,
    offline: Annotated[
        str,
        typer.Option(
            help="Offline custom tasks run through mteb.evaluate (theoremqa-theorems,gsm8k; '' for none)."
        ),
    ] = "theoremqa-theorems,gsm8k",
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    allow_overlap: AllowOverlapOpt = False,
    corpus_embeddings: CorpusEmbOpt = None,
) -> None:
    """MTEB through mteb.evaluate with the paper's per-task instructions; results in mteb's folder layout."""
    from ..eval.mteb_tasks import run_mteb

    out = check_output(out, "--out", folder=True)  # before the data and the model
    report = run_mteb(
        _loader(model, checkpoint, untrained, dtype, device),
        model_name=model,
        checkpoint=checkpoint,
        results_dir=out / "mteb",
        encoders=encoders,
        limit=limit,
        batch_size=batch_size,
        data_dir=data_dir,
        tasks=tasks,
        benchmark=benchmark,
        lite=lite,
        offline=offline,
        cache_dir=cache_dir,
        use_cache=not no_cache,
        allow_overlap=allow_overlap,
        corpus_embeddings=corpus_embeddings or (),
    )
    note_corpus_embeddings(report.payload["config"])
    _write(report, out)
    for key, msg in report.payload["errors"].items():
        typer.echo(f"skipped {key}: {msg}", err=True)
