"""``workbench patch``, ``attribute``, ``ablate`` and ``steer``: causal looks inside the encoder.

Each command checks its options and outputs before the model loads, calls one function of
:mod:`workbench.causal`, prints a table (or JSON with ``--json``) and writes what was asked for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import DEFAULT_BACKBONE, CheckpointOpt, DeviceOpt, DtypeOpt, ModelOpt, UntrainedOpt

REFUSAL_DEFAULT = "I'm sorry, but I can't help with that request."
"""The default refusal text (:data:`workbench.causal.sites.REFUSAL_TEXT`, repeated so that ``--help``
needs no import of the model code; a test checks that they agree)."""

OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write every number as JSON to this file.")]
HtmlOpt = Annotated[Path | None, typer.Option(help="Write the figure as a standalone HTML file.")]
PngOpt = Annotated[Path | None, typer.Option(help="Write the figure as a PNG (needs a Chrome for kaleido).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print every number as JSON instead of tables.")]
RefusalOpt = Annotated[
    str, typer.Option(help="The refusal text whose embedding (as a document) is compared.")
]
InstructionOpt = Annotated[
    str, typer.Option(help="Instruction joined before each query (the shipped checkpoints use none).")
]


def _progress() -> Any:
    from .common import console

    err = console(stderr=True)
    return lambda msg: err.print(f"[dim]... {msg}[/]")


def _finish(result: Any, chart: str, out: Path | None, html: Path | None, png: Path | None) -> list[Path]:
    """Write the JSON and the figure (``workbench.report.causal_plot.<chart>``) where asked, atomically."""
    from ..report import causal_plot
    from ..report.lens_plot import write_heatmap

    written = []
    if out is not None:
        written.append(result.write_json(out))
    if html is not None or png is not None:
        written += write_heatmap(getattr(causal_plot, chart)(result), html, png)
    return written


def _say_written(paths: list[Path]) -> None:
    from .common import console

    for path in paths:
        console(stderr=True).print(f"wrote {path}", style="dim")


# ----------------------------------------------------------------------------- patch
def patch_command(
    queries: Annotated[
        list[str] | None,
        typer.Argument(
            help="Two queries: the source (e.g. a harmful request), then the target (its benign twin)."
        ),
    ] = None,
    model: ModelOpt = DEFAULT_BACKBONE,
    checkpoint: CheckpointOpt = None,
    untrained: UntrainedOpt = False,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "auto",
    site: Annotated[
        str, typer.Option(help="resid (residual stream), attn or mlp (block outputs).")
    ] = "resid",
    layers: Annotated[
        str, typer.Option(help="Layers to patch: all, or e.g. '0,10,20:30,-1' (0 = embeddings, resid only).")
    ] = "all",
    groups: Annotated[
        str, typer.Option(help="Position groups: all, or a comma list of query, thought, compression.")
    ] = "all",
    refusal_text: RefusalOpt = REFUSAL_DEFAULT,
    instruction: InstructionOpt = "",
    decode: Annotated[
        bool, typer.Option("--decode/--no-decode", help="Decode every patched embedding (slow).")
    ] = False,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="New tokens per decoded answer.")] = 8,
    batch_size: Annotated[int, typer.Option(min=1, help="Patched variants per forward pass.")] = 32,
    out: OutOpt = None,
    html: HtmlOpt = None,
    png: PngOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Patch the source run into the target run at every layer and position group.

    Prints, per layer and group, the patched embedding's cosine with the source embedding and with a
    refusal text's embedding; --html/--png write the layers x groups heatmap.
    """
    from ..causal.patching import patch
    from ..causal.sites import GROUPS, check_site
    from ..core.errors import WorkbenchError
    from ..core.inputs import check_texts
    from ..lens.logit import parse_layers
    from .common import load_model, outputs

    texts = list(queries or [])
    if len(texts) != 2:
        raise WorkbenchError(
            f"patch needs two queries, a source and a target; got {len(texts)}",
            'pass both, e.g. workbench patch "How do I pick a lock?" "How do I fit a lock?"',
        )
    check_texts([*texts, refusal_text])
    check_site(site)
    layer_list = parse_layers(layers)
    group_names = None if groups.strip() in ("", "all") else groups
    for name in (group_names or "").split(","):
        if name.strip() and name.strip() not in GROUPS:
            raise WorkbenchError(
                f"unknown position group {name.strip()!r}", f"use one or more of {', '.join(GROUPS)}"
            )
    with outputs(files={"--out": out, "--html": html, "--png": png}):
        gen = load_model(model, checkpoint, untrained, dtype, device)
        _progress()(f"patching the {site} at {'all layers' if layer_list is None else layers}")
        result = patch(
            gen,
            texts[0],
            texts[1],
            site=site,
            layers=layer_list,
            groups=group_names,
            refusal_text=refusal_text,
            instruction=instruction or None,
            decode=decode,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
        )
        written = _finish(result, "patch_heatmap", out, html, png)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        _print_patch(result)
    _say_written(written)


def _print_patch(result: Any) -> None:
    from rich.markup import escape

    from ..report.causal_plot import patch_table
    from .common import console

    out = console()
    out.print(f"[bold]source[/]: {escape(result.source)}")
    out.print(f"[bold]target[/]: {escape(result.target)}")
    out.print(patch_table(result))
    b = result.baseline
    out.print(
        f"unpatched: target cos with source {b['target_cos_source']:.3f}; cos with refusal: target "
        f"{b['target_cos_refusal']:.3f}, source {b['source_cos_refusal']:.3f}"
    )
    if result.decoded is not None:
        out.print(f"[cyan]decoded, source[/]: {escape(result.decoded_baseline['source'])}")
        out.print(f"[cyan]decoded, target[/]: {escape(result.decoded_baseline['target'])}")
        last = len(result.layers) - 1
        for j, group in enumerate(result.groups):
            out.print(
                f"[cyan]decoded, {group} patched at layer {result.layers[last]}[/]: "
                f"{escape(result.decoded[last][j])}"
            )


# ----------------------------------------------------------------------------- attribute
def attribute_command(
    query: Annotated[str, typer.Argument(help="The query whose embedding is explained.")],
    model: ModelOpt = DEFAULT_BACKBONE,
    checkpoint: CheckpointOpt = None,
    untrained: UntrainedOpt = False,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "auto",
    direction: Annotated[
        str,
        typer.Option(
            help="self (the embedding's own direction: its length) or refusal (toward the refusal)."
        ),
    ] = "self",
    baseline: Annotated[
        str, typer.Option(help="zero, pad or mean: the token embedding every token starts from.")
    ] = "zero",
    keep_first: Annotated[
        bool,
        typer.Option(
            "--keep-first/--move-first",
            help="Keep the first position (the attention sink) in the baseline (its score is 0).",
        ),
    ] = True,
    steps: Annotated[int, typer.Option(min=2, help="Integration points (captum, Gauss-Legendre).")] = 64,
    refusal_text: RefusalOpt = REFUSAL_DEFAULT,
    instruction: InstructionOpt = "",
    batch_size: Annotated[int, typer.Option(min=1, help="Integration points per forward pass.")] = 16,
    out: OutOpt = None,
    html: Annotated[
        Path | None, typer.Option(help="Write the query with coloured tokens as an HTML page.")
    ] = None,
    png: Annotated[Path | None, typer.Option(help="Write a bar chart of the scores as a PNG.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Integrated gradients of the embedding's projection on a direction, per input token.

    Prints the query with each token coloured by its score (red raises the projection, blue lowers
    it), the scores, and the completeness check: the scores sum to f(x) - f(baseline) up to captum's
    convergence delta.
    """
    from ..causal.attribution import BASELINES, DIRECTIONS, attribute
    from ..core.errors import WorkbenchError
    from ..core.inputs import check_texts
    from .common import console, load_model, outputs

    check_texts([query, refusal_text])
    if direction not in DIRECTIONS:
        raise WorkbenchError(f"unknown direction {direction!r}", f"use one of {', '.join(DIRECTIONS)}")
    if baseline not in BASELINES:
        raise WorkbenchError(f"unknown baseline {baseline!r}", f"use one of {', '.join(BASELINES)}")
    with outputs(files={"--out": out, "--html": html, "--png": png}):
        gen = load_model(model, checkpoint, untrained, dtype, device)
        _progress()(f"integrated gradients, {steps} steps")
        result = attribute(
            gen,
            query,
            direction=direction,
            baseline=baseline,
            steps=steps,
            refusal_text=refusal_text,
            instruction=instruction or None,
            internal_batch_size=batch_size,
            keep_first=keep_first,
        )
        written = []
        if out is not None:
            written.append(result.write_json(out))
        if html is not None:
            from ..report.causal_plot import attribution_html
            from ..store.atomic import atomic_write

            page = attribution_html(result)
            path = html.expanduser()
            atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
            written.append(path)
        if png is not None:
            written += _finish(result, "attribution_figure", None, None, png)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        from ..report.causal_plot import attribution_table, attribution_text, completeness_line

        con = console()
        con.print(attribution_text(result))
        con.print(attribution_table(result))
        con.print(completeness_line(result))
    _say_written(written)


# ----------------------------------------------------------------------------- ablate
def ablate_command(
    heldout: Annotated[
        Path | None,
        typer.Option(help="Held-out prompts with the LLM's own answers: a `workbench respond` JSONL."),
    ] = None,
    prompts: Annotated[
        Path | None,
        typer.Option(help="Held-out prompts only (.txt or .jsonl, see --field): the LLM answers them first."),
    ] = None,
    field: Annotated[
        str, typer.Option(help="JSONL field holding the prompt text (with --prompts).")
    ] = "text",
    limit: Annotated[int, typer.Option(min=2, help="Held-out prompts used (the first ones).")] = 50,
    model: ModelOpt = DEFAULT_BACKBONE,
    checkpoint: CheckpointOpt = None,
    untrained: UntrainedOpt = False,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "auto",
    mode: Annotated[str, typer.Option(help="zero, mean or resample.")] = "mean",
    targets: Annotated[
        str,
        typer.Option(
            help="Comma list of t<i>, c<i>, thought, compression (default: each thought and compression "
            "token, then all thought tokens)."
        ),
    ] = "default",
    layers: Annotated[
        str, typer.Option(help="Layers where the positions are ablated: all, or e.g. '0:10'.")
    ] = "all",
    instruction: InstructionOpt = "",
    decode: Annotated[
        bool, typer.Option("--decode/--no-decode", help="Measure decoding token F1 (generates per target).")
    ] = True,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="New tokens per decoded answer.")] = 16,
    answer_tokens: Annotated[
        int, typer.Option(min=1, help="Length cap of the LLM's answers (--prompts).")
    ] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the resample donors.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    allow_overlap: Annotated[
        bool, typer.Option(help="Run on prompts the checkpoint trained on (the count is recorded).")
    ] = False,
    out: OutOpt = None,
    html: HtmlOpt = None,
    png: PngOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ablate special tokens on held-out prompts: change in retrieval MRR, decoding F1 and alignment.

    Each target's positions are set to zeros, to their mean over the prompts, or to another prompt's
    values, in the residual stream at the chosen layers.
    """
    from ..causal.ablation import MODES, ablate, parse_targets
    from ..core.errors import WorkbenchError
    from ..lens.logit import parse_layers
    from ..store.textio import read_texts
    from ..train.pairs import read_pairs
    from .common import console, load_model, note_limit, outputs

    if (heldout is None) == (prompts is None):
        raise WorkbenchError(
            "ablate needs held-out prompts: one of --heldout or --prompts",
            "pass --heldout responses.jsonl (from `workbench respond`) or --prompts prompts.txt",
        )
    if mode not in MODES:
        raise WorkbenchError(f"unknown ablation mode {mode!r}", f"use one of {', '.join(MODES)}")
    layer_list = parse_layers(layers)
    if heldout is not None:
        pairs, _ = read_pairs(heldout, limit)
        texts, answers = [p.prompt for p in pairs], [p.response for p in pairs]
        available = len(pairs)
    else:
        assert prompts is not None
        everything = read_texts(prompts, field)
        texts, answers, available = everything[:limit], None, len(everything)
    with outputs(files={"--out": out, "--html": html, "--png": png}):
        gen = load_model(model, checkpoint, untrained, dtype, device)
        parse_targets(targets, gen)  # before the LLM answers anything
        say = _progress()
        if answers is None:
            say(f"the LLM answers {len(texts)} prompts ({answer_tokens} new tokens)")
            answers = gen.answer(texts, max_new_tokens=answer_tokens, batch_size=batch_size)
            kept = [i for i, a in enumerate(answers) if a.strip()]
            if len(kept) < len(texts):
                console(stderr=True, soft_wrap=True).print(
                    f"[yellow]note:[/] the LLM gave an empty answer to {len(texts) - len(kept)} of "
                    f"{len(texts)} prompts: they are left out"
                )
                texts, answers = [texts[i] for i in kept], [answers[i] for i in kept]
        report = ablate(
            gen,
            texts,
            answers,
            targets=targets,
            mode=mode,
            layers=layer_list,
            instruction=instruction or None,
            decode=decode,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            seed=seed,
            allow_overlap=allow_overlap,
            progress=say,
        )
        written = _finish(report, "ablation_chart", out, html, png)
    note_limit(limit, available, "held-out prompts")
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        console().print(report.markdown(), markup=False)
    _say_written(written)


# ----------------------------------------------------------------------------- steer
def steer_command(
    twins: Annotated[
        Path | None,
        typer.Option(
            help='Twin pairs: a .jsonl of {"harmful": ..., "benign": ...} (default: the packaged '
            "workbench/data/twins.jsonl)."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=2, help="Use only the first N pairs.")] = None,
    heldout: Annotated[
        int | None, typer.Option(min=1, help="Pairs held out for measuring (the last ones; default half).")
    ] = None,
    scales: Annotated[str, typer.Option(help="Comma list of scales of the steering vector.")] = "0,0.5,1,2,4",
    layer: Annotated[
        int | None,
        typer.Option(
            help="Steer the residual stream after this layer (default: the final compression states)."
        ),
    ] = None,
    model: ModelOpt = DEFAULT_BACKBONE,
    checkpoint: CheckpointOpt = None,
    untrained: UntrainedOpt = False,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "auto",
    refusal_text: RefusalOpt = REFUSAL_DEFAULT,
    instruction: InstructionOpt = "",
    decode: Annotated[
        bool, typer.Option("--decode/--no-decode", help="Decode the steered embeddings.")
    ] = True,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="New tokens per decoded answer.")] = 24,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    allow_overlap: Annotated[
        bool, typer.Option(help="Run on twins the checkpoint trained on (the count is recorded).")
    ] = False,
    out: OutOpt = None,
    html: HtmlOpt = None,
    png: PngOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Steer benign queries along the mean harmful-minus-benign difference of compression states.

    The vector is fitted on the first twin pairs; on the held-out ones, prints per scale the steered
    embedding's cosine with the refusal and with the harmful twin, and how often the decoded answer
    reads as a refusal.
    """
    from ..causal.sites import parse_floats
    from ..causal.steering import packaged_twins, read_twins, split_twins, steer
    from ..core.inputs import check_texts
    from .common import console, load_model, note_limit, outputs

    check_texts([refusal_text])
    scale_list = parse_floats(scales, "scales")
    pairs = read_twins(twins if twins is not None else packaged_twins())
    available = len(pairs)
    pairs = pairs[:limit] if limit is not None else pairs
    split_twins(pairs, heldout)  # a bad split fails before the model loads
    with outputs(files={"--out": out, "--html": html, "--png": png}):
        gen = load_model(model, checkpoint, untrained, dtype, device)
        _progress()(
            f"steering {heldout or len(pairs) // 2} held-out benign queries at {len(scale_list)} scales"
        )
        report = steer(
            gen,
            pairs,
            scales=scale_list,
            heldout=heldout,
            layer=layer,
            refusal_text=refusal_text,
            instruction=instruction or None,
            decode=decode,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            allow_overlap=allow_overlap,
        )
        written = _finish(report, "steering_chart", out, html, png)
    note_limit(limit, available, "twin pairs")
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        con = console()
        con.print(report.markdown(), markup=False)
        if decode:
            from rich.markup import escape

            for example in report.examples[:3]:
                con.print(f"[bold]{escape(example['benign'])}[/]")
                for scale, text in example["decoded"].items():
                    con.print(f"  scale {scale}: {escape(text)}")
    _say_written(written)
