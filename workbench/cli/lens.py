"""``workbench lens``: what the compression tokens hold, read through the LLM's output head.

The reading is :func:`workbench.lens.request.read_lens`; what is printed and written,
:func:`workbench.report.lens_output.run_lens`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DEFAULT_BACKBONE, CheckpointOpt, DeviceOpt, DtypeOpt, ModelOpt, UntrainedOpt


def lens(
    queries: Annotated[list[str] | None, typer.Argument(help="Queries to read.")] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="More queries: a .txt file (one per line) or .jsonl (see --field)."
        ),
    ] = None,
    field: Annotated[str, typer.Option(help="JSONL field holding the query text.")] = "text",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write one row per query to this .csv or .jsonl file.")
    ] = None,
    model: ModelOpt = DEFAULT_BACKBONE,
    checkpoint: CheckpointOpt = None,
    untrained: UntrainedOpt = False,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "auto",
    layers: Annotated[
        str, typer.Option(help="Layers to read: all, or e.g. '0,10,20:30,-1' (0 = embeddings).")
    ] = "all",
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Tokens per position (1-100).")] = 5,
    thought: Annotated[bool, typer.Option("--thought", help="Read the thought positions too.")] = False,
    instruction: Annotated[str, typer.Option(help="Instruction joined before each query.")] = "",
    generate: Annotated[
        bool | None,
        typer.Option("--generate/--no-generate", help="Decode the embedding by generation (default: on)."),
    ] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Also print the LLM's own answer.")] = False,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 48,
    backend: Annotated[str, typer.Option(help="nnsight or transformer-lens.")] = "nnsight",
    latent: Annotated[
        bool, typer.Option("--latent", help="Nearest response tokens of each compression state.")
    ] = False,
    index: Annotated[
        Path | None, typer.Option(help="Latent-lens index folder (default: built by latent-lens build).")
    ] = None,
    html: Annotated[Path | None, typer.Option(help="Write the layer × position heatmap as HTML.")] = None,
    png: Annotated[Path | None, typer.Option(help="Write the heatmap as a PNG.")] = None,
    grid: Annotated[bool, typer.Option("--grid/--no-grid", help="Print the layer × position grid.")] = True,
    remote: Annotated[
        bool,
        typer.Option(
            "--remote", help="Run the read on NDIF (nnsight remote; needs NDIF_API_KEY and the network)."
        ),
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print every reading as JSON.")] = False,
) -> None:
    """Decode the compression tokens: top-k tokens per position and layer, and the decoded answer.

    Prints the final-layer top-k per compression position, a layer × position grid, the union
    (the paper's view) and what the LLM generates from the embedding; see the README.
    """
    from ..lens.logit import LensConfig, parse_layers
    from ..lens.request import LensRequest
    from ..report.lens_output import LensOutputs, run_lens
    from .common import console, load_model, outputs

    config = LensConfig(
        top_k=top_k,
        layers=parse_layers(layers),
        thought=thought,
        instruction=instruction or None,
        backend=backend,
        batch_size=batch_size,
    )
    request = LensRequest(
        queries=list(queries or []),
        file=file,
        field=field,
        model=model,
        checkpoint=checkpoint,
        untrained=untrained,
        dtype=dtype,
        device=device,
        config=config,
        generate=generate,
        compare=compare,
        max_new_tokens=max_new_tokens,
        latent=latent,
        index=index,
        remote=remote,
    )
    written = LensOutputs(out=out, html=html, png=png, grid=grid, as_json=as_json)
    with outputs(files={"--out": out, "--html": html, "--png": png}):  # checked before the model loads
        run_lens(request, written, console=console(), load=load_model)
