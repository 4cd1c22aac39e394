"""The logit lens on LLM2Vec-Gen's special tokens: which words each compression position holds.

The paper's view projects the compression states ``h`` (final layer, after the final norm) through
the LLM's output head and keeps the top-k tokens per position, then their union. The workbench
reads the same way at every layer (the final norm applied to the residual stream before the
head, as in the logit lens of nostalgebraist and tuned-lens) and, on request, at the thought
positions too. Reading layer ``L`` is exactly the paper's view: ``norm(resid_L) == h``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import torch

from ..core.display import Displayable
from ..core.errors import WorkbenchError
from ..core.inputs import check_texts

if TYPE_CHECKING:
    from ..core.model import LLM2VecGen

BACKENDS = ("nnsight", "transformer-lens")
MAX_TOP_K = 100


@dataclass
class LensConfig:
    """What to read and how."""

    top_k: int = 5
    """Tokens kept per position and layer (the paper keeps 5)."""
    layers: Sequence[int] | None = None
    """Layers to read, 0 (embeddings) to L (last decoder layer); negatives count from L. None: all."""
    thought: bool = False
    """Also read the thought positions (their outputs are discarded by the encoder)."""
    instruction: str | None = None
    """Instruction joined before each query with one space (the shipped checkpoints use none)."""
    backend: str = "nnsight"
    """``nnsight`` (default) or ``transformer-lens`` (TransformerLens's TransformerBridge)."""
    batch_size: int = 8


@dataclass
class LensReading(Displayable):
    """What the logit lens reads for one query.

    ``tokens[i][j]`` are the top-k tokens of layer ``layers[i]`` at position ``positions[j]``, with
    their ids and softmax probabilities beside them; ``union`` is the paper's summary: the distinct
    top-k tokens of the final layer over the compression positions, most frequent first. In a
    notebook a reading shows its union, top-k table and layer × position heatmap.
    """

    query: str
    input_text: str
    layers: list[int]
    positions: list[str]
    tokens: list[list[list[str]]]
    ids: list[list[list[int]]]
    probs: list[list[list[float]]]
    union: list[str]
    num_layers: int
    decoded: str | None = None
    answer: str | None = None
    latent: list[list[dict[str, Any]]] | None = field(default=None)

    def final(self) -> list[list[str]]:
        """Top-k tokens per position at the last layer read."""
        return self.tokens[-1]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LensReadings(Displayable, list):  # type: ignore[type-arg]
    """The readings of several queries: a plain list that, in a notebook, shows their tables and one
    stacked heatmap."""


def resolve_layers(layers: Sequence[int] | None, num_layers: int) -> list[int]:
    """Layer indices in 0..L, negatives counted from L, in the order given, without repeats."""
    if layers is None:
        return list(range(num_layers + 1))
    out: list[int] = []
    for layer in layers:
        index = num_layers + 1 + layer if layer < 0 else layer
        if not 0 <= index <= num_layers:
            raise WorkbenchError(
                f"layer {layer} does not exist: this backbone has layers 0 (embeddings) to {num_layers}",
                f"use layers between 0 and {num_layers}, or negative numbers counted from the end",
            )
        if index not in out:
            out.append(index)
    if not out:
        raise WorkbenchError("no layers to read", "name at least one layer, e.g. --layers -1")
    return out


def parse_layers(spec: str | None) -> list[int] | None:
    """``"0,10,-1"`` or ranges ``"20:30"`` (end included) into layer numbers; empty means all."""
    if spec is None or not spec.strip() or spec.strip() == "all":
        return None
    out: list[int] = []
    for part in spec.replace(" ", "").split(","):
        try:
            if ":" in part:
                start, end = (int(p) for p in part.split(":", 1))
                out += list(range(start, end + 1))
            else:
                out.append(int(part))
        except ValueError as err:
            raise WorkbenchError(
                f"cannot read the layer list {spec!r}",
                "give numbers and ranges separated by commas, e.g. --layers 0,10,20:30,-1",
            ) from err
    return out


def check_top_k(top_k: int, vocab_size: int) -> None:
    limit = min(MAX_TOP_K, vocab_size)
    if not 1 <= top_k <= limit:
        raise WorkbenchError(f"top-k must be between 1 and {limit}, got {top_k}", "pass e.g. --top-k 5")


def token_text(tokenizer: Any, token_id: int) -> str:
    """A token as the text it adds (leading spaces kept)."""
    return tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)


def union_tokens(tokens: list[list[str]], probs: list[list[float]]) -> list[str]:
    """Distinct tokens over positions, by how many positions hold them, then by best probability."""
    count: dict[str, int] = {}
    best: dict[str, float] = {}
    for row, prow in zip(tokens, probs, strict=True):
        seen = set()
        for tok, p in zip(row, prow, strict=True):
            key = tok.strip()
            if not key or key in seen:
                continue
            seen.add(key)
            count[key] = count.get(key, 0) + 1
            best[key] = max(best.get(key, 0.0), p)
    return sorted(count, key=lambda t: (-count[t], -best[t]))


def read_logits(
    gen: LLM2VecGen, resid: torch.Tensor, top_k: int, rows_per_chunk: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k probabilities and ids of ``head(norm(resid))`` for ``resid`` ``[..., H]``.

    All layers and positions go through the head together, in chunks of rows: one large matrix
    product reads the vocabulary-sized weight once, where a product per layer reads it every time.
    """
    backbone = gen.backbone
    norm = backbone.submodule(backbone.arch.final_norm)
    head = backbone.submodule(backbone.arch.lm_head)
    weight = head.weight
    flat = resid.reshape(-1, resid.shape[-1])
    probs, ids = [], []
    with torch.no_grad():
        for chunk in flat.split(rows_per_chunk):
            logits = head(norm(chunk.to(device=weight.device, dtype=weight.dtype))).float()
            p, i = logits.log_softmax(-1).topk(top_k, dim=-1)
            probs.append(p.exp().cpu())
            ids.append(i.cpu())
    shape = (*resid.shape[:-1], top_k)
    return torch.cat(probs).reshape(shape), torch.cat(ids).reshape(shape)


def residuals(
    gen: LLM2VecGen, texts: list[str], *, thought: bool, backend: str, batch_size: int
) -> torch.Tensor:
    """Residual stream ``[L + 1, B, P, H]`` at the read positions (P = C, or T + C with thought)."""
    if backend not in BACKENDS:
        raise WorkbenchError(f"unknown lens backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
    keep = gen.config.num_special if thought else gen.config.num_compress
    if backend == "transformer-lens":
        from .tl_backend import residual_stream_tl

        return residual_stream_tl(gen, texts, keep_last=keep, batch_size=batch_size)
    parts: list[torch.Tensor] = []
    index: list[int] = []
    with torch.no_grad():
        for idx, batch in gen._batches(texts, batch_size, "reading", None):
            parts.append(gen.traced.residual_stream(batch, gen.special, keep).float().cpu())
            index += idx
    stacked = torch.cat(parts, dim=1)
    out = torch.empty_like(stacked)
    out[:, index] = stacked
    return out


def logit_lens(
    gen: LLM2VecGen,
    queries: Sequence[str] | str,
    config: LensConfig | None = None,
    *,
    generate: bool = False,
    compare: bool = False,
    max_new_tokens: int = 48,
) -> list[LensReading]:
    """Read the special positions of each query through the output head at the chosen layers.

    ``generate`` also decodes the embedding (greedy generation from the soft prompts);
    ``compare`` adds the frozen LLM's own chat answer to the bare query.
    """
    from ..core.config import with_instruction

    config = config or LensConfig()
    queries = check_texts(queries)
    backbone = gen.backbone
    num_layers = backbone.info.num_layers
    check_top_k(config.top_k, backbone.info.vocab_size)
    layers = resolve_layers(config.layers, num_layers)
    texts = with_instruction(queries, config.instruction)
    resid = residuals(
        gen, texts, thought=config.thought, backend=config.backend, batch_size=config.batch_size
    )
    probs, ids = read_logits(gen, resid[layers], config.top_k)  # [layers, B, P, k]
    strings = gen.config.token_strings()
    positions = strings if config.thought else strings[gen.config.num_thought :]
    final_p, final_i = read_logits(gen, resid[-1:, :, -gen.config.num_compress :], config.top_k)

    readings = assemble_readings(
        gen.tokenizer, queries, texts, layers, positions, (probs, ids), (final_p, final_i), num_layers
    )
    if generate or compare:
        add_answers(
            gen,
            readings,
            generate=generate,
            compare=compare,
            max_new_tokens=max_new_tokens,
            batch_size=config.batch_size,
        )
    return readings


def assemble_readings(
    tokenizer: Any,
    queries: list[str],
    texts: list[str],
    layers: list[int],
    positions: list[str],
    read: tuple[torch.Tensor, torch.Tensor],
    final: tuple[torch.Tensor, torch.Tensor],
    num_layers: int,
) -> list[LensReading]:
    """Readings from top-k ``(probs, ids)`` ``[layers, B, P, k]`` and the final layer's at the
    compression positions ``[1, B, C, k]`` (the union is taken over those)."""
    probs, ids = read
    final_p, final_i = final
    vocab: dict[int, str] = {}

    def text_of(i: int) -> str:
        if i not in vocab:
            vocab[i] = token_text(tokenizer, i)
        return vocab[i]

    readings = LensReadings()
    for b, query in enumerate(queries):
        id_rows = ids[:, b].tolist()
        final_tokens = [[text_of(i) for i in pos] for pos in final_i[0, b].tolist()]
        readings.append(
            LensReading(
                query=query,
                input_text=texts[b],
                layers=layers,
                positions=list(positions),
                tokens=[[[text_of(i) for i in pos] for pos in layer] for layer in id_rows],
                ids=id_rows,
                probs=[[[round(p, 6) for p in pos] for pos in layer] for layer in probs[:, b].tolist()],
                union=union_tokens(final_tokens, final_p[0, b].tolist()),
                num_layers=num_layers,
            )
        )
    return readings


def remote_logit_lens(
    model: str, queries: Sequence[str] | str, config: LensConfig | None = None, **connection: Any
) -> list[LensReading]:
    """The logit lens on NDIF (nnsight's remote execution), for backbones too large to load here.

    ``model`` is a trained checkpoint (official folder, zoo name or hub id, or a workbench folder)
    whose base model NDIF serves; needs ``NDIF_API_KEY`` and the network. Decoding stays local, so
    nothing is generated. ``connection`` goes to :func:`workbench.lens.remote.open_remote`.
    """
    from ..core.config import with_instruction
    from .remote import open_remote

    config = config or LensConfig()
    queries = check_texts(queries)
    remote = open_remote(model, **connection)
    num_layers = remote.backbone.num_layers
    check_top_k(config.top_k, len(remote.tokenizer))
    layers = resolve_layers(config.layers, num_layers)
    texts = with_instruction(queries, config.instruction)
    wanted = layers if num_layers in layers else [*layers, num_layers]
    probs, ids = remote.read(
        texts, wanted, config.top_k, thought=config.thought, batch_size=config.batch_size
    )
    last = wanted.index(num_layers)
    final = (
        probs[last : last + 1, :, -remote.num_compress :],
        ids[last : last + 1, :, -remote.num_compress :],
    )
    keep = [wanted.index(layer) for layer in layers]
    positions = remote.token_strings if config.thought else remote.token_strings[remote.num_thought :]
    return assemble_readings(
        remote.tokenizer, queries, texts, layers, positions, (probs[keep], ids[keep]), final, num_layers
    )


def add_answers(
    gen: LLM2VecGen,
    readings: list[LensReading],
    *,
    generate: bool = True,
    compare: bool = False,
    max_new_tokens: int = 48,
    batch_size: int = 8,
) -> None:
    """Fill ``decoded`` (generation from the embedding of the encoder input) and, with ``compare``,
    ``answer`` (the frozen LLM's own chat answer to the bare query)."""
    if generate:
        texts = [r.input_text for r in readings]
        for reading, text in zip(
            readings, gen.generate(texts, max_new_tokens=max_new_tokens, batch_size=batch_size), strict=True
        ):
            reading.decoded = text
    if compare:
        queries = [r.query for r in readings]
        for reading, text in zip(
            readings, gen.answer(queries, max_new_tokens=max_new_tokens, batch_size=batch_size), strict=True
        ):
            reading.answer = text


def lens_with_options(gen: LLM2VecGen, queries: Sequence[str] | str, **options: Any) -> list[LensReading]:
    """:meth:`LLM2VecGen.lens`: :func:`logit_lens` with :class:`LensConfig` fields as keywords."""
    names = {f.name for f in fields(LensConfig)}
    config = LensConfig(**{k: v for k, v in options.items() if k in names})
    rest = {k: v for k, v in options.items() if k not in names}
    return logit_lens(gen, queries, config, **rest)
