"""Special-token ablation: which thought and compression tokens carry what.

A target is one thought token (``t3``), one compression token (``c2``), every thought token
(``thought``) or every compression token (``compression``). Its positions are ablated in the
residual stream at every chosen layer (default: all, 0 to L), so nothing downstream reads the
query-specific content they would hold:

- ``zero``: the residual stream there is set to zeros;
- ``mean``: to its mean over the held-out prompts, per layer and position;
- ``resample``: to another held-out prompt's (a seeded derangement: never the prompt's own).

Each ablation is measured on held-out prompts and the frozen LLM's own answers to them with the
metrics of ``workbench quality`` (:mod:`workbench.train.quality`): query-to-own-answer retrieval
(recall@1, MRR; answers embedded as documents, unablated), decoding token F1 (greedy generation
from the ablated embedding against the LLM's answer) and alignment cosine (the ablated embedding
with the teacher's embedding of the answer), beside the unablated model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F

from ..core.config import DOCUMENT_INSTRUCTION, with_instruction
from ..core.errors import WorkbenchError
from ..core.fingerprint import check_overlap
from ..core.inputs import check_texts
from ..train.quality import mean_f1, retrieval_scores
from .sites import Edit, JsonReport, check_layers, compression, embeddings, traced_run

if TYPE_CHECKING:
    from ..core.model import LLM2VecGen

MODES = ("zero", "mean", "resample")
BASELINE = "none"
"""The row of the unablated model."""
_SINGLE = re.compile(r"^([tc])(\d+)$")


def target_positions(target: str, gen: LLM2VecGen) -> list[int]:
    """Indices among the N special positions (0 = the first thought token) that ``target`` names."""
    t, c = gen.config.num_thought, gen.config.num_compress
    if target == "thought":
        if not t:
            raise WorkbenchError("this model has no thought tokens (T = 0)", "ablate compression tokens")
        return list(range(t))
    if target == "compression":
        return list(range(t, t + c))
    match = _SINGLE.match(target)
    if match:
        kind, index = match.group(1), int(match.group(2))
        count = t if kind == "t" else c
        if 1 <= index <= count:
            return [index - 1 if kind == "t" else t + index - 1]
        what = "thought" if kind == "t" else "compression"
        raise WorkbenchError(
            f"no {what} token {target!r}: this model has {count} ({kind}1 to {kind}{count})"
            if count
            else f"this model has no {what} tokens",
            f"use {kind}1 to {kind}{count}" if count else "ablate another group",
        )
    raise WorkbenchError(
        f"unknown ablation target {target!r}",
        "use t<i> (one thought token), c<i> (one compression token), thought or compression",
    )


def default_targets(gen: LLM2VecGen) -> list[str]:
    """Each thought token, each compression token, then all thought tokens."""
    t, c = gen.config.num_thought, gen.config.num_compress
    return (
        [f"t{i}" for i in range(1, t + 1)] + [f"c{i}" for i in range(1, c + 1)] + (["thought"] if t else [])
    )


def parse_targets(spec: str | Sequence[str] | None, gen: LLM2VecGen) -> list[str]:
    """Targets from ``"t1,c3,thought"`` or a list (checked); None or ``default``: :func:`default_targets`."""
    if spec is None or (isinstance(spec, str) and spec.strip() in ("", "default")):
        return default_targets(gen)
    names = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    if not names:
        raise WorkbenchError("no ablation targets given", "name at least one, e.g. --targets c1,thought")
    for name in names:
        target_positions(name, gen)
    return list(dict.fromkeys(names))


@dataclass
class AblationReport(JsonReport):
    """One row per target (the first, ``none``, is the unablated model): the held-out metrics and
    their change against ``none``."""

    mode: str
    layers: list[int]
    num_layers: int
    heldout: int
    max_new_tokens: int | None
    rows: list[dict[str, Any]]
    instruction: str | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        decode = self.max_new_tokens is not None
        head = "| ablated | MRR | Δ MRR | recall@1 | alignment cos | Δ alignment |"
        rule = "|---|---|---|---|---|---|"
        if decode:
            head += " token F1 | Δ F1 |"
            rule += "---|---|"
        lines = [
            f"{self.mode} ablation at layers {_layer_span(self.layers, self.num_layers)}, "
            f"{self.heldout} held-out prompts"
            + (f", decoding {self.max_new_tokens} new tokens" if decode else ", no decoding"),
            "",
            head,
            rule,
        ]
        for row in self.rows:
            cells = [
                row["target"],
                f"{row['mrr']:.3f}",
                _signed(row.get("delta_mrr")),
                f"{row['recall@1']:.3f}",
                f"{row['alignment_cosine']:.3f}",
                _signed(row.get("delta_alignment_cosine")),
            ]
            if decode:
                cells += [f"{row['f1']:.3f}", _signed(row.get("delta_f1"))]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _signed(value: float | None) -> str:
    return "" if value is None else f"{value:+.3f}"


def _layer_span(layers: list[int], num_layers: int) -> str:
    if layers == list(range(layers[0], num_layers + 1)):
        return f"{layers[0]}-{num_layers}"
    return ",".join(map(str, layers))


def _batches(gen: LLM2VecGen, texts: list[str], batch_size: int) -> list[tuple[slice, Any]]:
    return [
        (slice(i, i + batch_size), gen.encoder_batch(texts[i : i + batch_size]))
        for i in range(0, len(texts), batch_size)
    ]


def special_residuals(gen: LLM2VecGen, texts: list[str], layers: list[int], batch_size: int) -> torch.Tensor:
    """The residual stream at the N special positions ``[len(layers), B, N, H]`` (float32, CPU)."""
    n = gen.config.num_special
    parts = []
    for _, batch in _batches(gen, texts, batch_size):
        run = traced_run(gen, batch, save_site=True)
        assert run.site is not None
        parts.append(torch.stack([run.site[layer][:, -n:].float().cpu() for layer in layers]))
    return torch.cat(parts, dim=1)


def derangement(count: int, seed: int) -> torch.Tensor:
    """A seeded permutation with no fixed point: ``perm[i] != i`` (needs ``count >= 2``)."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    perm = torch.empty(count, dtype=torch.long)
    perm[order] = order.roll(-1)
    return perm


def ablated_states(
    gen: LLM2VecGen,
    texts: Sequence[str],
    target: str,
    mode: str = "zero",
    *,
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
    seed: int = 0,
    reference: torch.Tensor | None = None,
) -> torch.Tensor:
    """Compression states ``[B, C, H]`` of ``texts`` (encoder inputs) with ``target`` ablated.

    ``reference`` is :func:`special_residuals` of ``texts`` at ``layers`` (computed when needed and
    not given): the mean for ``mean``, the donor prompts' values for ``resample``.
    """
    texts = check_texts(list(texts))
    if mode not in MODES:
        raise WorkbenchError(f"unknown ablation mode {mode!r}", f"use one of {', '.join(MODES)}")
    layer_list = check_layers(layers, gen.backbone.info.num_layers, "resid")
    special = target_positions(target, gen)
    n, hidden = gen.config.num_special, gen.backbone.info.hidden_size
    if mode == "resample" and len(texts) < 2:
        raise WorkbenchError("resample ablation needs at least two prompts", "give more held-out prompts")
    if mode != "zero" and reference is None:
        reference = special_residuals(gen, texts, layer_list, batch_size)
    donors = derangement(len(texts), seed) if mode == "resample" else None
    out = []
    for rows, batch in _batches(gen, texts, batch_size):
        width = batch.input_ids.shape[1]
        positions = [width - n + j for j in special]
        edits = []
        for k, layer in enumerate(layer_list):
            if mode == "zero":
                value = torch.zeros(len(special), hidden)
            elif mode == "mean":
                assert reference is not None
                value = reference[k, :, special].mean(dim=0)
            else:
                assert reference is not None and donors is not None
                value = reference[k, donors[rows]][:, special]
            edits.append(Edit(layer, positions, value))
        out.append(compression(gen, traced_run(gen, batch, edits).final).cpu())
    return torch.cat(out)


def ablate(
    gen: LLM2VecGen,
    prompts: Sequence[str],
    answers: Sequence[str],
    *,
    targets: Sequence[str] | str | None = None,
    mode: str = "mean",
    layers: Sequence[int] | None = None,
    instruction: str | None = None,
    decode: bool = True,
    max_new_tokens: int = 16,
    batch_size: int = 8,
    seed: int = 0,
    allow_overlap: bool = False,
    progress: Callable[[str], None] | None = None,
) -> AblationReport:
    """Ablate each target on held-out ``prompts`` and report retrieval, decoding F1 and alignment.

    ``answers`` are the frozen LLM's own answers to the prompts (``workbench respond``); prompts are
    encoded with ``instruction`` (the shipped checkpoints use none), answers as documents. Prompts
    the checkpoint trained on are refused unless ``allow_overlap`` (the report records the count).
    """
    prompts = check_texts(list(prompts))
    empty = [i for i, a in enumerate(answers) if not isinstance(a, str) or not a.strip()]
    if empty:
        raise WorkbenchError(
            f"answer {empty[0]} is empty ({len(empty)} of {len(answers)} are)",
            "leave out the prompts whose answers are empty",
        )
    answers = list(answers)
    if len(prompts) != len(answers):
        raise WorkbenchError(
            f"{len(prompts)} prompts but {len(answers)} answers", "give one answer per prompt"
        )
    if len(prompts) < 2:
        raise WorkbenchError("ablation needs at least two held-out prompts", "give more held-out prompts")
    if mode not in MODES:
        raise WorkbenchError(f"unknown ablation mode {mode!r}", f"use one of {', '.join(MODES)}")
    if decode and max_new_tokens < 1:
        raise WorkbenchError(f"max_new_tokens must be at least 1, got {max_new_tokens}", "use 1 or more")
    target_list = parse_targets(targets, gen)
    layer_list = check_layers(layers, gen.backbone.info.num_layers, "resid")
    overlap = check_overlap(gen, prompts, allow_overlap=allow_overlap, what="held-out prompts")
    say = progress or (lambda _msg: None)
    texts = with_instruction(prompts, instruction)

    say("encoding the answers and the teacher's embeddings")
    docs = gen.embed(answers, instruction=DOCUMENT_INSTRUCTION, batch_size=batch_size)
    teacher = gen.load_teacher().encode(answers)
    reference = None if mode == "zero" else special_residuals(gen, texts, layer_list, batch_size)

    def measure(target: str, states: torch.Tensor) -> tuple[dict[str, Any], list[str] | None]:
        emb = embeddings(gen, states)
        scores = retrieval_scores(emb, docs)
        row: dict[str, Any] = {
            "target": target,
            "positions": []
            if target == BASELINE
            else [gen.config.token_strings()[i] for i in target_positions(target, gen)],
            "mrr": scores["mrr"],
            "recall@1": scores["recall@1"],
            "alignment_cosine": float(F.cosine_similarity(emb, teacher.float()).mean()),
        }
        decoded = None
        if decode:
            decoded = gen.generate(
                states, max_new_tokens=max_new_tokens, batch_size=batch_size, show_progress=False
            )
            row["f1"] = mean_f1(decoded, answers)
        return row, decoded

    say("the unablated model")
    plain = torch.cat(
        [
            compression(gen, traced_run(gen, batch).final).cpu()
            for _, batch in _batches(gen, texts, batch_size)
        ]
    )
    base, base_decoded = measure(BASELINE, plain)
    rows = [base]
    decoded_by = {BASELINE: base_decoded}
    for target in target_list:
        say(f"ablating {target} ({mode})")
        states = ablated_states(
            gen, texts, target, mode, layers=layer_list, batch_size=batch_size, seed=seed, reference=reference
        )
        row, decoded = measure(target, states)
        for key in ("mrr", "alignment_cosine", "f1"):
            if key in row:
                row[f"delta_{key}"] = row[key] - base[key]
        rows.append(row)
        decoded_by[target] = decoded
    examples = []
    if decode:
        for i in range(min(3, len(prompts))):
            examples.append(
                {"prompt": prompts[i], "llm_answer": answers[i]}
                | {f"decoded ({k})": v[i] for k, v in decoded_by.items() if v is not None}
            )
    return AblationReport(
        mode=mode,
        layers=layer_list,
        num_layers=gen.backbone.info.num_layers,
        heldout=len(prompts),
        max_new_tokens=max_new_tokens if decode else None,
        rows=rows,
        instruction=instruction,
        examples=examples,
        meta={
            "model": gen.backbone.info.name,
            "trained": bool(gen.trained),
            "seed": seed,
            "overlap": overlap,
        },
    )
