"""Attribution of the embedding to the input tokens: integrated gradients with captum.

The scalar explained is the embedding's projection on a unit direction ``d``: ``f(x) = e(x) · d``,
with ``d`` the embedding's own normalised self (``self``: ``f`` is then the embedding's length, how
much of it each word builds) or a refusal text's normalised embedding (``refusal``: how much each
word pushes the query toward the refusal). The inputs are the token embeddings of the query's text
positions; the special rows stay as they are, so the attribution is to the words alone. The
baseline replaces every text token by zeros (``zero``), the pad token's embedding (``pad``) or the
mean token embedding (``mean``), except the first position: it is the attention sink (the BOS, or
the first word where the tokenizer adds no BOS), whose states change abruptly along the path, so
captum's integral does not converge when it moves (on SmolLM2 the delta stays near the whole
difference at any number of steps); it keeps its token in the baseline and scores 0
(``keep_first=False`` moves it too).

Integrated gradients satisfy completeness: the scores sum to ``f(x) - f(baseline)``. captum
approximates the path integral (Gauss-Legendre, ``steps`` points) and reports the convergence
delta, ``sum(scores) - (f(x) - f(baseline))``; a small delta against the difference means the
scores can be trusted (more steps shrink it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..core.config import with_instruction
from ..core.errors import WorkbenchError
from ..core.inputs import check_texts, position_ids
from .sites import REFUSAL_TEXT, JsonReport, one_text_batch, text_embedding

if TYPE_CHECKING:
    from ..core.model import LLM2VecGen

DIRECTIONS = ("self", "refusal")
BASELINES = ("zero", "pad", "mean")


@dataclass
class Attribution(JsonReport):
    """Per-token integrated-gradients scores of one query (they sum to ``value - baseline_value``
    up to ``delta``)."""

    query: str
    input_text: str
    tokens: list[str]
    scores: list[float]
    direction: str
    baseline: str
    value: float
    """``f(x)``: the projection of the query's embedding on the direction."""
    baseline_value: float
    """``f(baseline)``."""
    delta: float
    """captum's convergence delta: ``sum(scores) - (value - baseline_value)``."""
    steps: int
    keep_first: bool = True
    """The first position (the attention sink) kept its token in the baseline (its score is 0)."""
    refusal_text: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def difference(self) -> float:
        return self.value - self.baseline_value

    def relative_delta(self) -> float:
        """``|delta| / |value - baseline_value|`` (the completeness error as a share)."""
        return abs(self.delta) / max(abs(self.difference), 1e-12)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"difference": self.difference, "relative_delta": self.relative_delta()}


def embedding_from_token_embeds(gen: LLM2VecGen, token_embeds: torch.Tensor) -> torch.Tensor:
    """Embeddings ``[B, D]`` of inputs given as text-token embeddings ``[B, Q, H]`` (unpadded, no
    special tokens): the special rows are appended, the backbone runs through nnsight, and the
    compression states go through both heads. Differentiable with respect to ``token_embeds``."""
    traced = gen.traced
    batch, width = token_embeds.shape[0], token_embeds.shape[1] + gen.config.num_special
    rows = gen.special.detach().to(token_embeds.dtype).unsqueeze(0).expand(batch, -1, -1)
    embeds = torch.cat([token_embeds, rows], dim=1)
    mask = torch.ones(batch, width, dtype=torch.long, device=embeds.device)
    with traced.nn.trace(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=position_ids(mask),
        use_cache=False,
        **traced._head_kwargs,
    ):
        states = traced.envoy(gen.backbone.arch.final_norm).output[:, -gen.config.num_compress :].save()
    return gen.embed_states(states.to(gen.special.dtype))


def direction_vector(
    gen: LLM2VecGen, direction: str | torch.Tensor, embedding: torch.Tensor, refusal_text: str
) -> torch.Tensor:
    """The unit direction ``[D]``: ``self`` (the embedding's own), ``refusal`` (the refusal text's
    embedding as a document) or a given vector."""
    if isinstance(direction, torch.Tensor):
        vector = direction.detach().float().flatten()
        if vector.numel() != embedding.numel():
            raise WorkbenchError(
                f"the direction has {vector.numel()} entries but embeddings have {embedding.numel()}",
                "pass a vector of the embedding's size",
            )
    elif direction == "self":
        vector = embedding.detach().float()
    elif direction == "refusal":
        vector = text_embedding(gen, refusal_text)
    else:
        raise WorkbenchError(f"unknown direction {direction!r}", f"use one of {', '.join(DIRECTIONS)}")
    norm = vector.norm()
    if norm < 1e-12:
        raise WorkbenchError("the direction is the zero vector", "choose another direction")
    return vector / norm


def attribute(
    gen: LLM2VecGen,
    query: str,
    *,
    direction: str | torch.Tensor = "self",
    baseline: str = "zero",
    steps: int = 64,
    refusal_text: str = REFUSAL_TEXT,
    instruction: str | None = None,
    internal_batch_size: int = 16,
    keep_first: bool = True,
) -> Attribution:
    """Integrated gradients of ``e(query) · d`` with respect to the query's token embeddings.

    ``direction``: ``self``, ``refusal`` or a vector; ``baseline``: ``zero``, ``pad`` or ``mean``;
    ``steps``: points of captum's Gauss-Legendre path integral; ``keep_first``: the first position
    (the attention sink) keeps its token in the baseline. ``instruction`` is joined before the query
    and its tokens are attributed too.
    """
    from captum.attr import IntegratedGradients

    (query,) = check_texts([query])
    if baseline not in BASELINES:
        raise WorkbenchError(f"unknown baseline {baseline!r}", f"use one of {', '.join(BASELINES)}")
    if steps < 2:
        raise WorkbenchError(f"steps must be at least 2, got {steps}", "use e.g. --steps 64")
    if internal_batch_size < 1:
        raise WorkbenchError(f"batch size must be at least 1, got {internal_batch_size}", "use 1 or more")
    (text,) = with_instruction([query], instruction)
    batch = one_text_batch(gen, text)
    ids = batch.input_ids[0, : batch.input_ids.shape[1] - gen.config.num_special]
    table = gen.backbone.model.get_input_embeddings()
    device = table.weight.device
    with torch.no_grad():
        inputs = table(ids.to(device)).unsqueeze(0).float()
        if baseline == "pad":
            pad = torch.tensor([gen.tokenizer.pad_token_id], device=device)
            base = table(pad).float().expand_as(inputs).clone()
        elif baseline == "mean":
            base = table.weight.float().mean(dim=0).expand_as(inputs).clone()
        else:
            base = torch.zeros_like(inputs)
        if keep_first:
            base[:, 0] = inputs[:, 0]
        embedding = embedding_from_token_embeds(gen, inputs.to(table.weight.dtype))[0].float().cpu()
    unit = direction_vector(gen, direction, embedding, refusal_text).to(device)

    def forward(token_embeds: torch.Tensor) -> torch.Tensor:
        out = embedding_from_token_embeds(gen, token_embeds.to(table.weight.dtype))
        return out.float() @ unit

    ig = IntegratedGradients(forward)
    scores, delta = ig.attribute(
        inputs,
        baselines=base,
        n_steps=steps,
        method="gausslegendre",
        internal_batch_size=internal_batch_size,
        return_convergence_delta=True,
    )
    with torch.no_grad():
        value = float(forward(inputs)[0])
        base_value = float(forward(base)[0])
    tokens = [
        gen.tokenizer.decode([int(i)], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        for i in ids
    ]
    name = direction if isinstance(direction, str) else "vector"
    return Attribution(
        query=query,
        input_text=text,
        tokens=tokens,
        scores=[float(s) for s in scores.detach().sum(-1)[0].cpu()],
        direction=name,
        baseline=baseline,
        value=value,
        baseline_value=base_value,
        delta=float(delta.detach().flatten()[0]),
        steps=steps,
        keep_first=keep_first,
        refusal_text=refusal_text if name == "refusal" else None,
        meta={"model": gen.backbone.info.name, "trained": bool(gen.trained)},
    )
