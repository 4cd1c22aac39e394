"""Where an intervention acts: layers, sites, position groups, and one edited nnsight trace.

Layers are numbered as the logit lens numbers them: for the residual stream (``resid``) layer 0 is
the embedding output (the special rows written in) and layer ``l`` the output of decoder layer
``l``; the attention (``attn``) and MLP (``mlp``) outputs exist for decoder layers 1 to L. A
sequence of the encoder holds three position groups: the ``query`` tokens (the text, after a BOS
the tokenizer adds: position 0 of a causal model sees only itself, so it is the same in every run),
then the T ``thought`` and the C ``compression`` tokens. Groups of different lengths are aligned by
their end (:func:`align_by_end`).

:func:`traced_run` is the one forward pass every intervention uses: the encoder's own trace (the
special rows written over the token embeddings of the last N positions, as
:meth:`~workbench.core.tracing.TracedBackbone.final_states` does) with :class:`Edit` s that set or
add values at chosen layers, rows and positions, reading the final post-norm states and, on
request, the site at every layer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..core.config import DOCUMENT_INSTRUCTION
from ..core.errors import WorkbenchError
from ..core.inputs import EncoderBatch, check_texts
from ..eval.map_items import REFUSALS
from ..lens.logit import resolve_layers

if TYPE_CHECKING:
    from ..core.model import LLM2VecGen

GROUPS = ("query", "thought", "compression")
SITES = ("resid", "attn", "mlp")
SITE_NAMES = {"resid": "residual stream", "attn": "attention output", "mlp": "MLP output"}
SUBMODULES = {
    "attn": ("self_attn", "attn", "attention", "self_attention"),
    "mlp": ("mlp", "feed_forward", "ffn"),
}
"""Attribute names of a decoder layer's attention and MLP blocks, tried in order."""
REFUSAL_TEXT = REFUSALS[0]
"""The default refusal text (the maps' first refusal template), embedded as a document."""


# ----------------------------------------------------------------------------- checks
def check_site(site: str) -> str:
    if site not in SITES:
        raise WorkbenchError(f"unknown site {site!r}", f"use one of {', '.join(SITES)}")
    return site


def check_layers(layers: Sequence[int] | None, num_layers: int, site: str) -> list[int]:
    """Layer numbers for a site: 0 (embeddings) to L for ``resid``, 1 to L for ``attn`` and ``mlp``.

    ``None`` means every layer the site has; negatives count from L.
    """
    check_site(site)
    if layers is None:
        return list(range(0 if site == "resid" else 1, num_layers + 1))
    out = resolve_layers(layers, num_layers)
    if site != "resid" and 0 in out:
        raise WorkbenchError(
            f"layer 0 is the embedding output: the {SITE_NAMES[site]} exists for layers 1 to {num_layers}",
            "leave layer 0 out, or use --site resid",
        )
    return out


def parse_groups(spec: str | Sequence[str] | None, gen: LLM2VecGen) -> list[str]:
    """Position groups from ``"query,compression"`` or a list; None: every group the model has."""
    has_thought = gen.config.num_thought > 0
    if spec is None or (isinstance(spec, str) and spec.strip() in ("", "all")):
        return [g for g in GROUPS if g != "thought" or has_thought]
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s) for s in spec]
    out: list[str] = []
    for name in names:
        if name not in GROUPS:
            raise WorkbenchError(
                f"unknown position group {name!r}", f"use one or more of {', '.join(GROUPS)}, comma-separated"
            )
        if name == "thought" and not has_thought:
            raise WorkbenchError("this model has no thought tokens (T = 0)", "leave the thought group out")
        if name not in out:
            out.append(name)
    if not out:
        raise WorkbenchError("no position groups given", "name at least one, e.g. --groups compression")
    return out


def parse_floats(spec: str, what: str) -> list[float]:
    """``"0,0.5,1"`` into numbers, with a one-line error."""
    try:
        values = [float(p) for p in spec.replace(" ", "").split(",") if p]
    except ValueError as err:
        raise WorkbenchError(
            f"cannot read the {what} {spec!r}", "give numbers separated by commas, e.g. 0,1,2"
        ) from err
    if not values:
        raise WorkbenchError(f"no {what} given", "give numbers separated by commas, e.g. 0,1,2")
    return values


# ----------------------------------------------------------------------------- positions
def query_start(gen: LLM2VecGen, ids: torch.Tensor) -> int:
    """Index of the first text token of an unpadded row: 1 after a BOS the tokenizer added, else 0."""
    bos = gen.tokenizer.bos_token_id
    return 1 if bos is not None and len(ids) and int(ids[0]) == bos else 0


def group_positions(gen: LLM2VecGen, batch: EncoderBatch) -> dict[str, list[int]]:
    """Absolute positions of each group in a one-row batch (no padding)."""
    if len(batch) != 1:
        raise ValueError("group_positions reads a one-row batch")
    width = batch.input_ids.shape[1]
    t, c = gen.config.num_thought, gen.config.num_compress
    first_special = width - t - c
    start = query_start(gen, batch.input_ids[0])
    return {
        "query": list(range(start, first_special)),
        "thought": list(range(first_special, first_special + t)),
        "compression": list(range(width - c, width)),
    }


def align_by_end(source: list[int], target: list[int]) -> tuple[list[int], list[int]]:
    """The last ``k = min(len)`` positions of each: groups of different lengths meet at their end.

    Position 0 (the attention sink: the first word where the tokenizer adds no BOS) is paired only
    with position 0: its states are far larger than any other position's, so writing it elsewhere,
    or another position's state into it, breaks the run instead of moving information.
    """
    k = min(len(source), len(target))
    pairs = [
        (s, t)
        for s, t in zip(source[len(source) - k :], target[len(target) - k :], strict=True)
        if (s == 0) == (t == 0)
    ]
    return [s for s, _ in pairs], [t for _, t in pairs]


# ----------------------------------------------------------------------------- the edited trace
@dataclass
class Edit:
    """Set (or add) ``value`` at ``positions`` of ``rows`` (None: every row) of one layer's site output.

    ``value`` broadcasts to ``[len(rows), len(positions), H]``: one ``[P, H]`` block for all rows, or
    ``[R, P, H]`` row by row.
    """

    layer: int
    positions: list[int]
    value: torch.Tensor
    rows: list[int] | None = None
    add: bool = False


@dataclass
class TracedRun:
    """What :func:`traced_run` read: final post-norm states ``[B, S, H]`` and, on request, the
    site's output at every layer (``site[l]`` is ``[B, S, H]``; None where the site has no layer 0)."""

    final: torch.Tensor
    site: list[torch.Tensor | None] | None = None


def _apply(tensor: torch.Tensor, edits: list[Edit]) -> torch.Tensor:
    """A copy of ``tensor`` with the edits applied (in order)."""
    out = tensor.clone()
    for edit in edits:
        rows = torch.arange(out.shape[0]) if edit.rows is None else torch.tensor(edit.rows)
        r, p = rows.view(-1, 1).to(out.device), torch.tensor(edit.positions, device=out.device).view(1, -1)
        value = edit.value.to(device=out.device, dtype=out.dtype)
        if edit.add:
            out[r, p] = out[r, p] + value
        else:
            out[r, p] = value.expand(len(rows), len(edit.positions), out.shape[-1])
    return out


def site_module(gen: LLM2VecGen, site: str) -> str | None:
    """The attribute name of the attention or MLP block inside a decoder layer (None for ``resid``)."""
    if site == "resid":
        return None
    layer = gen.backbone.submodule(gen.backbone.arch.layers)[0]
    for name in SUBMODULES[site]:
        if isinstance(getattr(layer, name, None), torch.nn.Module):
            return name
    raise WorkbenchError(
        f"cannot find the {SITE_NAMES[site]} of {type(layer).__name__} (tried {', '.join(SUBMODULES[site])})",
        "use --site resid, which every backbone has",
    )


def traced_run(
    gen: LLM2VecGen,
    batch: EncoderBatch,
    edits: Sequence[Edit] = (),
    *,
    site: str = "resid",
    save_site: bool = False,
) -> TracedRun:
    """One encoder forward through nnsight with ``edits`` at ``site``; no gradients are kept.

    With no edits the final states equal :meth:`~workbench.core.model.LLM2VecGen.states_for_batch`'s
    at the compression positions.
    """
    traced = gen.traced
    arch = gen.backbone.arch
    num_layers = gen.backbone.info.num_layers
    n = gen.config.num_special
    sub = site_module(gen, check_site(site))
    by_layer: dict[int, list[Edit]] = {}
    for edit in edits:
        if not 0 <= edit.layer <= num_layers or (sub is not None and edit.layer == 0):
            raise WorkbenchError(f"no layer {edit.layer} at site {site}", "check the layer numbers")
        by_layer.setdefault(edit.layer, []).append(edit)
    saved: list[Any] = []
    special = gen.special.detach()
    with torch.no_grad(), traced.nn.trace(**traced._trace_inputs(batch, n)):
        embed = traced.envoy(arch.embed)
        tokens = embed.output
        rows = special.to(tokens.dtype).unsqueeze(0).expand(tokens.shape[0], -1, -1)
        x = torch.cat([tokens[:, : tokens.shape[1] - n], rows], dim=1)
        if sub is None and 0 in by_layer:
            x = _apply(x, by_layer[0])
        embed.output = x
        if save_site:
            saved.append(x.save() if sub is None else None)
        layers = traced.envoy(arch.layers)
        for layer in range(1, num_layers + 1):
            todo = by_layer.get(layer)
            if not (todo or save_site):
                continue
            envoy = layers[layer - 1] if sub is None else getattr(layers[layer - 1], sub)
            out = envoy.output
            value = out[0] if isinstance(out, tuple) else out
            if todo:
                value = _apply(value, todo)
                envoy.output = (value, *out[1:]) if isinstance(out, tuple) else value
            if save_site:
                saved.append(value.save())
        final = traced.envoy(arch.final_norm).output.save()
    return TracedRun(
        final=final.detach(), site=[None if s is None else s.detach() for s in saved] if save_site else None
    )


def repeat_batch(batch: EncoderBatch, times: int) -> EncoderBatch:
    """One row repeated ``times`` times (one patch variant per row)."""
    return EncoderBatch(
        batch.input_ids.repeat(times, 1),
        batch.attention_mask.repeat(times, 1),
        batch.position_ids.repeat(times, 1),
    )


def one_text_batch(gen: LLM2VecGen, text: str) -> EncoderBatch:
    """The encoder input of one text (no padding)."""
    return gen.encoder_batch(check_texts([text]))


def compression(gen: LLM2VecGen, final: torch.Tensor) -> torch.Tensor:
    """The compression states ``h`` ``[B, C, H]`` from final post-norm states ``[B, S, H]``."""
    return final[:, -gen.config.num_compress :]


def embeddings(gen: LLM2VecGen, states: torch.Tensor) -> torch.Tensor:
    """Embeddings ``[B, D]`` (float32, CPU) of compression states, as the encoder makes them."""
    with torch.no_grad():
        return gen.embed_states(states.to(gen.special.dtype)).float().cpu()


def text_embedding(
    gen: LLM2VecGen, text: str, instruction: str | None = DOCUMENT_INSTRUCTION
) -> torch.Tensor:
    """A reference text's embedding ``[D]`` (a refusal, embedded as a document by default, as the maps
    embed their refusal texts)."""
    return gen.embed(check_texts([text]), instruction=instruction)[0]


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of rows of ``a`` ``[B, D]`` with ``b`` ``[D]`` or ``[B, D]``."""
    return torch.nn.functional.cosine_similarity(a.float(), b.float().expand_as(a), dim=-1)


class JsonReport:
    """``to_dict`` and an atomic ``write_json`` for the causal reports (dataclasses)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def write_json(self, path: str | Path) -> Path:
        """The result as JSON (atomically)."""
        from ..store.atomic import atomic_write

        text = json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n"
        path = Path(path).expanduser()
        atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return path
