"""Steering: move a benign query's compression states along the harmful-minus-benign direction.

From twin pairs (a harmful request and a benign one worded alike) the steering vector is the mean
difference of their compression states, per compression position: ``v = mean_i(h(harmful_i) -
h(benign_i))`` ``[C, H]``. A benign query is steered by ``h + scale * v`` (``layer=None``: the
final post-norm states the heads read), or by adding ``scale * v_l`` to the residual stream at the
compression positions after layer ``l`` (``v_l`` the same mean difference read there), which the
later layers then process. The vector is fitted on some pairs and measured on the others (held
out): per scale, the steered embedding's cosine with a refusal text's embedding and with the
harmful twin's, and what the LLM says from it (decoded answers, and the share that read as a
refusal by :func:`workbench.eval.refusals.is_refusal`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..core.config import with_instruction
from ..core.errors import WorkbenchError
from ..core.fingerprint import check_overlap
from ..core.inputs import check_texts
from ..eval.behaviour import load_twins
from ..eval.refusals import is_refusal
from .sites import (
    REFUSAL_TEXT,
    Edit,
    JsonReport,
    check_layers,
    compression,
    cosine,
    embeddings,
    text_embedding,
    traced_run,
)

if TYPE_CHECKING:
    from ..core.model import LLM2VecGen

DEFAULT_SCALES = (0.0, 0.5, 1.0, 2.0, 4.0)


def packaged_twins() -> Path:
    """The twin pairs packaged with the workbench (``workbench/data/twins.jsonl``)."""
    from importlib import resources

    path = Path(str(resources.files("workbench") / "data" / "twins.jsonl"))
    if not path.is_file():
        raise WorkbenchError(
            "this installation has no packaged twin pairs (workbench/data/twins.jsonl)",
            'pass your own with --twins FILE (one {"harmful": ..., "benign": ...} object per line)',
        )
    return path


@dataclass(frozen=True)
class Twin:
    """A harmful request and its benign twin."""

    harmful: str
    benign: str


def read_twins(path: str | Path | None = None) -> list[Twin]:
    """Twin pairs from a ``.jsonl`` file (one object per line with ``harmful`` and ``benign``), or the
    packaged set; read by :func:`workbench.eval.behaviour.load_twins`, as ``workbench quality`` reads them."""
    return [Twin(p["harmful"], p["benign"]) for p in load_twins(path)]


def split_twins(twins: Sequence[Twin], heldout: int | None) -> tuple[list[Twin], list[Twin]]:
    """The pairs that fit the vector (the first ones) and the held-out pairs (the last ``heldout``;
    None: half, rounded down)."""
    twins = list(twins)
    if len(twins) < 2:
        raise WorkbenchError(
            f"steering needs at least two twin pairs (one to fit, one held out), got {len(twins)}",
            "give more pairs",
        )
    count = len(twins) // 2 if heldout is None else heldout
    if not 1 <= count <= len(twins) - 1:
        raise WorkbenchError(
            f"cannot hold out {count} of {len(twins)} pairs", f"hold out 1 to {len(twins) - 1} pairs"
        )
    return twins[: len(twins) - count], twins[len(twins) - count :]


def _states_at(gen: LLM2VecGen, texts: list[str], layer: int | None, batch_size: int) -> torch.Tensor:
    """Compression states ``[B, C, H]`` (layer None) or the residual stream at the compression
    positions after ``layer``."""
    c = gen.config.num_compress
    out = []
    for start in range(0, len(texts), batch_size):
        batch = gen.encoder_batch(texts[start : start + batch_size])
        run = traced_run(gen, batch, save_site=layer is not None)
        if layer is None:
            out.append(compression(gen, run.final).float().cpu())
        else:
            assert run.site is not None and run.site[layer] is not None
            out.append(run.site[layer][:, -c:].float().cpu())
    return torch.cat(out)


def steering_vector(
    gen: LLM2VecGen,
    twins: Sequence[Twin],
    *,
    layer: int | None = None,
    instruction: str | None = None,
    batch_size: int = 8,
) -> torch.Tensor:
    """``mean_i(h(harmful_i) - h(benign_i))`` ``[C, H]`` at the final states (``layer`` None) or the
    residual stream after ``layer``."""
    if not twins:
        raise WorkbenchError("no twin pairs to fit the steering vector on", "give at least one pair")
    harmful = with_instruction(check_texts([t.harmful for t in twins]), instruction)
    benign = with_instruction(check_texts([t.benign for t in twins]), instruction)
    return (_states_at(gen, harmful, layer, batch_size) - _states_at(gen, benign, layer, batch_size)).mean(0)


def steered_states(
    gen: LLM2VecGen,
    texts: Sequence[str],
    vector: torch.Tensor,
    scale: float,
    *,
    layer: int | None = None,
    batch_size: int = 8,
) -> torch.Tensor:
    """Compression states ``[B, C, H]`` of ``texts`` (encoder inputs) steered by ``scale * vector``."""
    texts = check_texts(list(texts))
    c, hidden = gen.config.num_compress, gen.backbone.info.hidden_size
    if tuple(vector.shape) != (c, hidden):
        raise WorkbenchError(
            f"the steering vector has shape {list(vector.shape)}, not [{c}, {hidden}]",
            "fit it with steering_vector() on this model",
        )
    out = []
    for start in range(0, len(texts), batch_size):
        batch = gen.encoder_batch(texts[start : start + batch_size])
        if layer is None:
            states = compression(gen, traced_run(gen, batch).final).cpu()
            out.append(states + scale * vector.to(states.dtype))
        else:
            width = batch.input_ids.shape[1]
            edit = Edit(layer, list(range(width - c, width)), scale * vector, add=True)
            out.append(compression(gen, traced_run(gen, batch, [edit]).final).cpu())
    return torch.cat(out)


@dataclass
class SteeringReport(JsonReport):
    """Per scale (rows), means over the held-out benign queries steered toward harm."""

    scales: list[float]
    layer: int | None
    fit_pairs: int
    heldout_pairs: int
    vector_norm: float
    """Frobenius norm of the ``[C, H]`` vector (per position: divide by sqrt(C))."""
    rows: list[dict[str, Any]]
    reference: dict[str, float]
    """The unsteered held-out queries: benign and harmful cosine with the refusal, with each other,
    and (when decoding) the share of decoded answers that read as a refusal."""
    refusal_text: str
    max_new_tokens: int | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    instruction: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        decode = self.max_new_tokens is not None
        where = (
            "final compression states" if self.layer is None else f"residual stream after layer {self.layer}"
        )
        lines = [
            f"steering at the {where}; vector fitted on {self.fit_pairs} twin pairs, measured on "
            f"{self.heldout_pairs} held-out benign queries",
            "",
            "| scale | cos with refusal | cos with harmful twin |"
            + (" decoded as refusal |" if decode else ""),
            "|---|---|---|" + ("---|" if decode else ""),
        ]
        for row in self.rows:
            cells = [f"{row['scale']:g}", f"{row['refusal_cosine']:.3f}", f"{row['harmful_cosine']:.3f}"]
            if decode:
                cells.append(f"{row['refusal_share']:.0%}")
            lines.append("| " + " | ".join(cells) + " |")
        ref = self.reference
        lines += [
            "",
            f"unsteered: benign cos with refusal {ref['benign_refusal_cosine']:.3f}, "
            f"harmful {ref['harmful_refusal_cosine']:.3f}"
            + (
                f"; harmful decoded as refusal {ref['harmful_refusal_share']:.0%}"
                if "harmful_refusal_share" in ref
                else ""
            ),
        ]
        return "\n".join(lines)


def steer(
    gen: LLM2VecGen,
    twins: Sequence[Twin],
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    heldout: int | None = None,
    layer: int | None = None,
    refusal_text: str = REFUSAL_TEXT,
    instruction: str | None = None,
    decode: bool = True,
    max_new_tokens: int = 24,
    batch_size: int = 8,
    allow_overlap: bool = False,
) -> SteeringReport:
    """Fit the steering vector on the first pairs and steer the held-out benign queries by each scale.

    ``heldout`` pairs (the last ones; default half) are measured; ``layer`` None steers the final
    compression states, a number the residual stream after that layer (1 to L; 0 holds the trained
    rows, the same for every query, so its difference is zero). Twins the checkpoint trained on are
    refused unless ``allow_overlap`` (the report records the count).
    """
    if layer is not None:
        layer = check_layers([layer], gen.backbone.info.num_layers, "resid")[0]
    scale_list = [float(s) for s in scales]
    if not scale_list:
        raise WorkbenchError("no scales given", "give at least one, e.g. --scales 0,1,2")
    if decode and max_new_tokens < 1:
        raise WorkbenchError(f"max_new_tokens must be at least 1, got {max_new_tokens}", "use 1 or more")
    check_texts([refusal_text])
    fit, held = split_twins(twins, heldout)
    overlap = check_overlap(
        gen,
        [text for t in twins for text in (t.harmful, t.benign)],
        allow_overlap=allow_overlap,
        what="twin texts",
    )
    vector = steering_vector(gen, fit, layer=layer, instruction=instruction, batch_size=batch_size)
    benign = with_instruction(check_texts([t.benign for t in held]), instruction)
    harmful = with_instruction(check_texts([t.harmful for t in held]), instruction)
    refusal = text_embedding(gen, refusal_text)
    harm_states = _states_at(gen, harmful, None, batch_size)
    harm_emb = embeddings(gen, harm_states)
    benign_emb = embeddings(gen, _states_at(gen, benign, None, batch_size))
    reference: dict[str, float] = {
        "benign_refusal_cosine": float(cosine(benign_emb, refusal).mean()),
        "harmful_refusal_cosine": float(cosine(harm_emb, refusal).mean()),
        "benign_harmful_cosine": float(cosine(benign_emb, harm_emb).mean()),
    }
    harm_decoded: list[str] = []
    if decode:
        harm_decoded = gen.generate(harm_states, max_new_tokens=max_new_tokens, batch_size=batch_size)
        reference["harmful_refusal_share"] = sum(map(is_refusal, harm_decoded)) / len(harm_decoded)
    rows = []
    decoded_by: dict[float, list[str]] = {}
    for scale in scale_list:
        states = steered_states(gen, benign, vector, scale, layer=layer, batch_size=batch_size)
        emb = embeddings(gen, states)
        row: dict[str, Any] = {
            "scale": scale,
            "refusal_cosine": float(cosine(emb, refusal).mean()),
            "harmful_cosine": float(cosine(emb, harm_emb).mean()),
        }
        if decode:
            texts = gen.generate(states, max_new_tokens=max_new_tokens, batch_size=batch_size)
            row["refusal_share"] = sum(map(is_refusal, texts)) / len(texts)
            decoded_by[scale] = texts
        rows.append(row)
    examples = []
    for i, twin in enumerate(held):
        example: dict[str, Any] = {"benign": twin.benign, "harmful": twin.harmful}
        if decode:
            example["harmful_decoded"] = harm_decoded[i]
            example["decoded"] = {f"{s:g}": decoded_by[s][i] for s in scale_list}
        examples.append(example)
    return SteeringReport(
        scales=scale_list,
        layer=layer,
        fit_pairs=len(fit),
        heldout_pairs=len(held),
        vector_norm=float(vector.norm()),
        rows=rows,
        reference=reference,
        refusal_text=refusal_text,
        max_new_tokens=max_new_tokens if decode else None,
        examples=examples,
        instruction=instruction,
        meta={"model": gen.backbone.info.name, "trained": bool(gen.trained), "overlap": overlap},
    )
