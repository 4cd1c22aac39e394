"""The LLM2Vec-Gen model: trainable special rows and two heads on a frozen, nnsight-wrapped LLM."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from . import st_compat
from .backbone import Backbone
from .config import DOCUMENT_INSTRUCTION, QUERY_INSTRUCTION, GenConfig, with_instruction
from .errors import WorkbenchError
from .extensions import extension
from .fingerprint import PromptFingerprint
from .generation import chat_answer, generate_from_embeds
from .inputs import EncoderBatch, add_special_tokens, build_encoder_batch, check_texts, token_lengths
from .teacher import Teacher, load_teacher
from .tracing import TracedBackbone


class LLM2VecGen(nn.Module):
    """Encodes a text as the frozen LLM's potential answer.

    Only ``special`` (the N = T + C special-token rows), ``reconstruction`` (P_r: H -> H) and
    ``alignment`` (P_a: H -> D) hold parameters; the backbone is frozen and not a submodule.
    """

    def __init__(self, backbone: Backbone, config: GenConfig) -> None:
        super().__init__()
        self.config = config
        hidden = backbone.info.hidden_size
        self.__dict__["traced"] = TracedBackbone(backbone)  # not a submodule: never trained or saved
        self.special_ids = add_special_tokens(backbone.tokenizer, config.token_strings())
        # float32 whatever the backbone runs in: they are tiny, and rounding them to bfloat16 moves
        # every embedding (the backbone's dtype is config.dtype)
        self.special = nn.Parameter(torch.empty(config.num_special, hidden, dtype=torch.float32))
        self.reconstruction = nn.Linear(hidden, hidden, dtype=torch.float32)
        self.alignment = nn.Linear(hidden, config.teacher_dim, dtype=torch.float32)
        self.precision: dict[str, str] = {"dtype": config.dtype, "why": "asked for"}
        """The backbone's dtype and why it was chosen (``load(dtype="auto")`` records its reason)."""
        self.trained = False
        self.training_prompts: PromptFingerprint | None = PromptFingerprint()
        """The prompts its weights were trained on (empty when untrained; None when unknown)."""
        self._teacher: Teacher | None = None
        self.prompts: dict[str, str] = st_compat.default_prompts()
        """sentence-transformers' prompt table for :meth:`encode`: ``query`` and ``document``."""
        self.reset_parameters()
        self.to(backbone.model.get_input_embeddings().weight.device)

    # ----------------------------------------------------------------- parameters
    @property
    def backbone(self) -> Backbone:
        return self.traced.backbone

    @property
    def tokenizer(self) -> Any:
        return self.backbone.tokenizer

    def reset_parameters(self) -> None:
        """Seeded untrained start: rows near the mean token embedding; ``P_r`` a scaled identity.

        Final post-norm states are far larger than token embeddings (their size is about the norm of
        the final norm's weight, 48 against 3 for SmolLM2), so ``P_r`` starts as ``a * I`` with ``a``
        the ratio of the two: soft prompts begin on the scale of the inputs the decoder knows, and
        the alignment head sees inputs whose size does not swamp its small, unit-scale targets.
        """
        g = torch.Generator().manual_seed(self.config.seed)
        emb = self.backbone.model.get_input_embeddings().weight.detach().float()
        norm = self.backbone.submodule(self.backbone.arch.final_norm)
        weight = getattr(norm, "weight", None)
        state_size = float(weight.detach().float().norm()) if weight is not None else emb.shape[1] ** 0.5
        scale = float(emb.norm(dim=-1).mean()) / max(state_size, 1e-6)
        noise = torch.randn(self.special.shape, generator=g) * emb.std(dim=0)
        hidden = self.special.shape[1]
        with torch.no_grad():
            self.special.copy_(emb.mean(dim=0) + 0.1 * noise)
            self.reconstruction.weight.copy_(scale * torch.eye(hidden))
            self.reconstruction.bias.zero_()
            bound = 1.0 / math.sqrt(hidden)
            self.alignment.weight.copy_(
                torch.rand(self.alignment.weight.shape, generator=g) * 2 * bound - bound
            )
            self.alignment.bias.zero_()

    def load_weights(self, tensors: dict[str, torch.Tensor], trained: bool | None = None) -> None:
        """Put saved special rows and heads into the model, as float32 (other keys are ignored).

        The one way tensors from a checkpoint (workbench or official) reach a model.
        """
        names = {name for name, _ in self.named_parameters()}
        self.load_state_dict({k: v.to(self.special.dtype) for k, v in tensors.items() if k in names})
        if trained is not None:
            self.trained = trained

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The special rows and both heads: everything an optimiser may touch."""
        return self.parameters()

    # ----------------------------------------------------------------- encoder
    def encoder_batch(self, texts: Sequence[str]) -> EncoderBatch:
        """Tokenized, truncated, left-padded input with the special ids in the last N positions."""
        return build_encoder_batch(self.tokenizer, list(texts), self.special_ids, self.config.max_length)

    def states_for_batch(self, batch: EncoderBatch) -> torch.Tensor:
        """Compression states ``h`` ``[B, C, H]`` for a prepared batch (differentiable)."""
        return self.traced.final_states(batch, self.special, self.config.num_compress)

    def soft_prompt(self, states: torch.Tensor) -> torch.Tensor:
        """``s = P_r(h)``: what the decoder reads."""
        return self.reconstruction(states.to(self.reconstruction.weight.dtype))

    def embed_states(self, states: torch.Tensor) -> torch.Tensor:
        """``e = mean_C(P_a(P_r(h)))`` ``[B, D]`` (not normalised)."""
        return self.alignment(self.soft_prompt(states)).mean(dim=1)

    def forward(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Training view: states, soft prompts and embeddings with gradients."""
        states = self.states_for_batch(self.encoder_batch(check_texts(list(texts))))
        soft = self.soft_prompt(states)
        return {"states": states, "soft_prompt": soft, "embedding": self.alignment(soft).mean(1)}

    def _batches(
        self, texts: list[str], batch_size: int, desc: str, show_progress: bool | None
    ) -> Iterator[tuple[list[int], EncoderBatch]]:
        """Batches sorted by token count (less padding), with their original indices."""
        if batch_size < 1:
            raise WorkbenchError(f"batch_size must be at least 1, got {batch_size}", "use 1 or more")
        lengths = token_lengths(self.tokenizer, texts, self.config.max_length - self.config.num_special)
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        starts = range(0, len(order), batch_size)
        show = len(starts) > 1 if show_progress is None else show_progress
        for start in tqdm(starts, desc=desc, disable=not show, leave=False):
            idx = order[start : start + batch_size]
            yield idx, self.encoder_batch([texts[i] for i in idx])

    @torch.no_grad()
    def compression_states(
        self,
        texts: Sequence[str] | str,
        *,
        instruction: str | None = None,
        batch_size: int = 16,
        show_progress: bool | None = None,
    ) -> torch.Tensor:
        """Final-layer post-norm states at the C compression positions, ``[B, C, H]``."""
        texts = with_instruction(check_texts(texts), instruction)
        out = torch.empty(
            len(texts), self.config.num_compress, self.backbone.info.hidden_size, dtype=self.special.dtype
        )
        for idx, batch in self._batches(texts, batch_size, "compressing", show_progress):
            out[idx] = self.states_for_batch(batch).to(out.dtype).cpu()
        return out

    @torch.no_grad()
    def embed(
        self,
        texts: Sequence[str] | str,
        *,
        instruction: str | None = None,
        batch_size: int = 16,
        normalize: bool = False,
        show_progress: bool | None = None,
    ) -> torch.Tensor:
        """Embeddings ``[B, D]`` as one float32 CPU tensor; ``instruction`` is joined before each text
        with one space; ``normalize`` makes them unit length. (``encode`` before 0.3.)

        Each batch goes from text to embedding before the next starts: memory holds the ``[B, D]``
        result, not the ``[B, C, H]`` compression states of every text (460 MB for 20,000 texts on
        SmolLM2; ``benchmarks/memory.py``)."""
        texts = with_instruction(check_texts(texts), instruction)
        emb = torch.empty(len(texts), self.config.teacher_dim)
        for idx, batch in self._batches(texts, batch_size, "encoding", show_progress):
            states = self.states_for_batch(batch).to(self.special.dtype)
            emb[idx] = self.embed_states(states).float().cpu()
        return nn.functional.normalize(emb, dim=-1) if normalize else emb

    # ----------------------------------------------------------------- sentence-transformers names
    similarity_fn_name = "cosine"
    default_prompt_name: str | None = None

    @torch.no_grad()
    def encode(
        self,
        inputs: Sequence[str] | str,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 16,
        show_progress_bar: bool | None = None,
        output_value: str | None = "sentence_embedding",
        precision: str = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | None = None,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        *,
        instruction: str | None = None,
        normalize: bool | None = None,
        show_progress: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Embeddings as sentence-transformers' ``encode`` returns them: a numpy array ``[B, D]`` by
        default, a tensor with ``convert_to_tensor``, a list of tensors with neither; one vector for
        a single string.

        ``prompt`` (or ``prompt_name``, a key of :attr:`prompts`) is joined before each text as is,
        like sentence-transformers; ``precision``, ``truncate_dim`` and ``normalize_embeddings``
        work as there. The workbench's own keywords still work: ``instruction`` (joined with one
        space), ``normalize`` and ``show_progress``. :meth:`embed` always returns a tensor.
        """
        st_compat.check_options(
            output_value=output_value, precision=precision, batch_size=batch_size, device=device, extra=kwargs
        )
        if instruction is not None and (prompt is not None or prompt_name is not None):
            raise WorkbenchError(
                "encode() got both instruction= and prompt=/prompt_name=", "pass one of them"
            )
        texts, single = st_compat.as_texts(inputs)
        prefix = st_compat.resolve_prompt(self.prompts, prompt, prompt_name, self.default_prompt_name)
        emb = torch.empty(0, self.config.teacher_dim)
        if texts:  # an empty list gives an empty result, as in sentence-transformers
            emb = self.embed(
                [(prefix or "") + t for t in check_texts(texts)],
                instruction=instruction,
                batch_size=batch_size,
                show_progress=show_progress if show_progress is not None else show_progress_bar,
            )
        return st_compat.finish(
            emb,
            single,
            precision=precision,
            normalize_embeddings=bool(normalize_embeddings or normalize),
            truncate_dim=truncate_dim,
            convert_to_numpy=convert_to_numpy,
            convert_to_tensor=convert_to_tensor,
            device=self.special.device if device is None else torch.device(device),
        )

    def encode_query(self, inputs: Sequence[str] | str, **kwargs: Any) -> Any:
        """sentence-transformers' ``encode_query``: :meth:`encode` with the ``query`` prompt (the
        retrieval instruction) unless ``prompt`` or ``prompt_name`` says otherwise."""
        if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None:
            kwargs["prompt_name"] = "query"
        return self.encode(inputs, **kwargs)

    def encode_document(self, inputs: Sequence[str] | str, **kwargs: Any) -> Any:
        """sentence-transformers' ``encode_document``: :meth:`encode` with the ``document`` prompt
        ("Summarize the following passage:") unless ``prompt`` or ``prompt_name`` says otherwise."""
        if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None:
            kwargs["prompt_name"] = "document"
        return self.encode(inputs, **kwargs)

    def get_sentence_embedding_dimension(self) -> int:
        """The embedding size D (the teacher's)."""
        return int(self.config.teacher_dim)

    get_embedding_dimension = get_sentence_embedding_dimension

    @property
    def max_seq_length(self) -> int:
        """Longest input in tokens, the N special tokens included."""
        return int(self.config.max_length)

    @torch.no_grad()
    def embeddings_from_states(self, states: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[B, D]`` (float32 on CPU) of compression states from :meth:`compression_states`."""
        device = self.special.device
        return torch.cat(
            [
                self.embed_states(states[i : i + 256].to(device)).float().cpu()
                for i in range(0, len(states), 256)
            ]
        )

    def encode_queries(
        self, texts: Sequence[str] | str, *, instruction: str | None = QUERY_INSTRUCTION, **kwargs: Any
    ) -> torch.Tensor:
        """Queries with an answer-generating instruction (retrieval's by default), as a tensor
        (the workbench's name; :meth:`encode_query` is sentence-transformers')."""
        return self.embed(texts, instruction=instruction, **kwargs)

    def encode_documents(
        self, texts: Sequence[str] | str, *, instruction: str | None = DOCUMENT_INSTRUCTION, **kwargs: Any
    ) -> torch.Tensor:
        """Documents with the paper's "Summarize the following passage:" instruction, as a tensor
        (the workbench's name; :meth:`encode_document` is sentence-transformers')."""
        return self.embed(texts, instruction=instruction, **kwargs)

    @staticmethod
    def similarity(a: Any, b: Any) -> torch.Tensor:
        """Cosine similarity matrix ``[len(a), len(b)]`` of tensors, arrays or lists of vectors (a
        single vector counts as one row), as sentence-transformers' ``similarity`` returns it."""
        return st_compat.cos_sim(a, b)

    @staticmethod
    def similarity_pairwise(a: Any, b: Any) -> torch.Tensor:
        """Cosine similarity of matching rows ``[len(a)]`` (sentence-transformers' name)."""
        return st_compat.pairwise_cos_sim(a, b)

    # ----------------------------------------------------------------- decoding
    @torch.no_grad()
    def generate(
        self,
        inputs: Sequence[str] | str | torch.Tensor,
        *,
        max_new_tokens: int = 64,
        instruction: str | None = None,
        batch_size: int = 8,
        show_progress: bool | None = None,
        **sampling: Any,
    ) -> list[str]:
        """Let the frozen LLM speak from the embedding: decode from the soft prompts ``P_r(h)``.

        ``inputs`` are texts (encoded first, with ``instruction``) or compression states
        ``[B, C, H]`` from :meth:`compression_states`.
        """
        if isinstance(inputs, torch.Tensor):
            states = inputs.unsqueeze(0) if inputs.dim() == 2 else inputs
            if states.dim() != 3 or tuple(states.shape[1:]) != (
                self.config.num_compress,
                self.backbone.info.hidden_size,
            ):
                raise WorkbenchError(
                    f"compression states must have shape [batch, {self.config.num_compress}, "
                    f"{self.backbone.info.hidden_size}], got {list(inputs.shape)}",
                    "pass the output of compression_states() for this model",
                )
        else:
            states = self.compression_states(
                inputs, instruction=instruction, batch_size=batch_size, show_progress=False
            )
        out: list[str] = []
        starts = range(0, len(states), batch_size)
        show = len(starts) > 1 if show_progress is None else show_progress
        for start in tqdm(starts, desc="generating", disable=not show, leave=False):
            chunk = states[start : start + batch_size].to(self.special.device)
            out += generate_from_embeds(
                self.backbone, self.soft_prompt(chunk), max_new_tokens=max_new_tokens, **sampling
            )
        return out

    def answer(
        self,
        prompts: Sequence[str] | str,
        *,
        max_new_tokens: int = 128,
        system_prompt: str | None = None,
        batch_size: int = 8,
        show_progress: bool | None = None,
        **sampling: Any,
    ) -> list[str]:
        """The frozen LLM's own chat answer to each prompt (greedy unless ``do_sample=True``)."""
        prompts = check_texts(prompts)
        out: list[str] = []
        starts = range(0, len(prompts), batch_size)
        show = len(starts) > 1 if show_progress is None else show_progress
        for start in tqdm(starts, desc="answering", disable=not show, leave=False):
            out += chat_answer(
                self.backbone,
                prompts[start : start + batch_size],
                max_new_tokens=max_new_tokens,
                system_prompt=system_prompt,
                **sampling,
            )
        return out

    def lens(self, queries: Sequence[str] | str, **options: Any) -> list[Any]:
        """Logit lens on the special positions: see :func:`workbench.lens.logit_lens`.

        ``options`` are :class:`~workbench.lens.LensConfig` fields (``top_k``, ``layers``, ``thought``,
        ``instruction``, ``backend``, ``batch_size``) and ``generate``, ``compare``, ``max_new_tokens``.
        """
        return extension("lens")(self, queries, **options)

    # ----------------------------------------------------------------- baselines and teacher
    @torch.no_grad()
    def llm_embed(
        self,
        texts: Sequence[str] | str,
        *,
        pooling: str = "mean",
        batch_size: int = 16,
        show_progress: bool | None = None,
    ) -> torch.Tensor:
        """The frozen LLM as an input-centric encoder (no special tokens): ``mean`` or ``last``."""
        return self.llm_embed_poolings(texts, (pooling,), batch_size=batch_size, show_progress=show_progress)[
            pooling
        ]

    def llm_embed_poolings(
        self,
        texts: Sequence[str] | str,
        poolings: Sequence[str] = ("mean", "last"),
        *,
        batch_size: int = 16,
        show_progress: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """:meth:`llm_embed` with several poolings from one pass over the texts: ``{pooling: [N, H]}``."""
        poolings = tuple(dict.fromkeys(poolings))
        bad = [p for p in poolings if p not in ("mean", "last")]
        if bad or not poolings:
            raise WorkbenchError(
                f"unknown pooling {', '.join(map(repr, bad)) or '(none)'}", "use 'mean' or 'last'"
            )
        texts = check_texts(texts)
        out = {p: torch.empty(len(texts), self.backbone.info.hidden_size) for p in poolings}
        for idx, _ in self._batches(texts, batch_size, "llm pooling", show_progress):
            batch = build_encoder_batch(self.tokenizer, [texts[i] for i in idx], [], self.config.max_length)
            for pooling, states in self.traced.pooled_states_all(batch, poolings).items():
                out[pooling][idx] = states.float().cpu()
        return out

    def load_teacher(self) -> Teacher:
        """The teacher named in the config (``self`` is this backbone mean-pooled), loaded once."""
        if self._teacher is None:
            teacher = load_teacher(
                self.config.teacher,
                self_encoder=lambda texts, bs: self.llm_embed(texts, batch_size=bs),
                hidden_size=self.backbone.info.hidden_size,
            )
            if teacher.dim != self.config.teacher_dim:
                raise WorkbenchError(
                    f"teacher {teacher.name} gives {teacher.dim}-d embeddings but the alignment "
                    f"head outputs {self.config.teacher_dim}",
                    "build the model with this teacher",
                )
            self._teacher = teacher
        return self._teacher

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | Path, **card: Any) -> Path:
        """Write a checkpoint folder (safetensors plus JSON); see :mod:`workbench.store.checkpoint`."""
        return extension("save_checkpoint")(self, Path(path), **card)

    save_pretrained = save

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"backbone={self.backbone.info.name}, thought={c.num_thought}, "
            f"compress={c.num_compress}, teacher={c.teacher}, trained={self.trained}"
        )
