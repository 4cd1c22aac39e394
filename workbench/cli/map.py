"""``workbench map``: Figure-1-style embedding maps; options in, ``eval.maps.run_map``, files out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import (
    DEFAULT_BACKBONE,
    CheckpointOpt,
    CorpusEmbOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    UntrainedOpt,
)


def map_command(
    model: ModelOpt = DEFAULT_BACKBONE,
    checkpoint: CheckpointOpt = None,
    queries: Annotated[
        Path | None,
        typer.Option(
            help="Your own items instead of the public sets: .txt (one benign query per line) or .jsonl "
            "with 'text', 'role' (query|distractor|refusal|compliant), 'harmful' (bool), optional "
            "'response' and 'source'."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Public data folder (default $WORKBENCH_DATA or ../shared/data)."),
    ] = None,
    n_harmful: Annotated[int, typer.Option(min=0, help="AdvBench-IR harmful queries.")] = 8,
    n_benign: Annotated[int, typer.Option(min=0, help="Benign queries sharing topic words with them.")] = 8,
    n_distractors: Annotated[int, typer.Option(min=0, help="Self-instruct example outputs.")] = 8,
    limit: Annotated[
        int | None, typer.Option(min=1, help="At most this many queries (split evenly for the public sets).")
    ] = None,
    benign_source: Annotated[
        str, typer.Option(help="efficientqa (held out), or nq-open / self-instruct (training prompts).")
    ] = "efficientqa",
    encoders: Annotated[
        str, typer.Option(help="Comma-separated: teacher, llm-mean, llm-last, llm2vec-gen.")
    ] = "teacher,llm-mean,llm-last,llm2vec-gen",
    fast: Annotated[bool, typer.Option("--fast", help="PCA instead of UMAP.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the sampling and the layout.")] = 0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Length cap of the LLM's answers.")] = 64,
    instruction: Annotated[
        str,
        typer.Option(help="LLM2Vec-Gen query instruction (default: retrieval's; 'none' for no instruction)."),
    ] = "",
    out: Annotated[Path, typer.Option(help="Output stem: writes STEM.html, .png, .json, .parquet.")] = Path(
        "maps/map"
    ),
    export: Annotated[bool, typer.Option(help="Also write parquet and TensorBoard Projector TSVs.")] = True,
    full_text: Annotated[
        bool, typer.Option(help="Put the texts in hover labels and exports (else only their source).")
    ] = True,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Cache folder (default: the workbench cache).")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute answers and embeddings.")] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    untrained: UntrainedOpt = False,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "auto",
    allow_overlap: Annotated[
        bool, typer.Option(help="Run on queries the checkpoint trained on (the overlap is printed).")
    ] = False,
    corpus_embeddings: CorpusEmbOpt = None,
) -> None:
    """Map queries, the LLM's own answers and distractors in several embedding spaces (paper Figure 1)."""
    from ..core.config import QUERY_INSTRUCTION
    from ..core.paths import check_output
    from ..eval.maps import run_map
    from ..report.map_figures import metrics_table, write_map
    from ..store.atomic import undo_on_failure
    from .common import console, load_model, note_corpus_embeddings, note_limit

    out = out.expanduser()
    check_output(out.with_name(f"{out.name}.json"), "--out")  # STEM's folder, before any work
    progress = console(stderr=True)
    result = run_map(
        lambda: load_model(model, checkpoint, untrained, dtype, device),
        queries=queries,
        data_dir=data_dir,
        n_harmful=n_harmful,
        n_benign=n_benign,
        n_distractors=n_distractors,
        limit=limit,
        benign_source=benign_source,
        encoders=encoders,
        method="pca" if fast else "umap",
        seed=seed,
        max_new_tokens=max_new_tokens,
        query_instruction="" if instruction.lower() == "none" else instruction or QUERY_INSTRUCTION,
        cache_dir=cache_dir,
        use_cache=not no_cache,
        batch_size=batch_size,
        progress=lambda msg: progress.print(f"[dim]... {msg}[/]"),
        allow_overlap=allow_overlap,
        corpus_embeddings=corpus_embeddings or (),
    )
    note_corpus_embeddings(result.meta)
    with undo_on_failure(out.parent, prefix=out.name):  # a failed write leaves no STEM* file
        written = write_map(result, out, export=export, full_text=full_text)
    if limit is not None:
        note_limit(limit, sum(item.role == "query" for item in result.items), "queries")
    console().print(metrics_table(result))
    c = result.cache
    typer.echo(
        f"cache: {c['answers_reused']} answers and {c['embeddings_reused']} embeddings reused, "
        f"{c['answers_computed']} answers and {c['embeddings_computed']} embeddings computed"
    )
    for path in written:
        typer.echo(f"wrote {path}")
