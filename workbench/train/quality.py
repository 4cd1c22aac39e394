"""Quality of a checkpoint on held-out prompts: reconstruction F1, alignment, own-response retrieval."""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from ..core.config import DOCUMENT_INSTRUCTION
from ..core.errors import WorkbenchError
from ..core.fingerprint import check_overlap, normalise, overlap_note
from ..store.atomic import atomic_write
from ..store.checkpoint import read_checkpoint
from ..store.loading import load
from .pairs import Pair, read_pairs

OWN_NLL = "its own prompt's soft prompts"
OTHER_NLL = "another prompt's soft prompts"
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def words(text: str) -> list[str]:
    """SQuAD-style normalised word tokens: lower case, no punctuation or articles."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split()


def token_f1(prediction: str, reference: str) -> float:
    """Token-level F1 between two texts (1.0 when both are empty)."""
    pred, ref = words(prediction), words(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def mean_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    return sum(token_f1(p, r) for p, r in zip(predictions, references, strict=True)) / len(references)


def generic_answer(train_responses: Sequence[str], limit: int = 200) -> str:
    """The one training response with the best mean F1 against the others: a strong constant baseline."""
    pool = list(train_responses)[:limit]
    return max(pool, key=lambda cand: sum(token_f1(cand, r) for r in pool if r is not cand))


def untrained_twin(gen: Any) -> Any:
    """The model's own untrained start (same seed and sizes) on the same backbone: no second copy."""
    from dataclasses import replace

    from ..core.model import LLM2VecGen

    return LLM2VecGen(gen.backbone, replace(gen.config))


@torch.no_grad()
def reconstruction_nll(
    gen: Any,
    prompts: Sequence[str] | torch.Tensor,
    answers: Sequence[str],
    *,
    instruction: str | None = None,
    max_tokens: int = 64,
    batch_size: int = 8,
) -> dict[str, float]:
    """Teacher-forced loss (nats per answer token) of each answer from its own prompt's soft prompts,
    and from the next prompt's: the gap is how much the decoder reads from the embedding at all.

    ``prompts`` are texts (encoded with ``instruction``) or their compression states ``[B, C, H]``.
    """
    from ..core.losses import pad_right, reconstruction_loss_sum, response_tokens

    if len(prompts) < 2:
        raise ValueError("need at least two prompts to swap their embeddings")
    states = (
        prompts
        if isinstance(prompts, torch.Tensor)
        else gen.compression_states(prompts, instruction=instruction, show_progress=False)
    )
    soft = gen.soft_prompt(states.to(gen.special.device))
    swapped = soft.roll(1, dims=0)
    rows = response_tokens(gen.tokenizer, list(answers), max_tokens, gen.tokenizer.eos_token_id)
    pad = gen.tokenizer.pad_token_id or 0
    own = other = 0.0
    tokens = 0
    for start in range(0, len(rows), batch_size):
        target = pad_right(rows[start : start + batch_size], pad)
        chunk = slice(start, start + batch_size)
        own += float(reconstruction_loss_sum(gen.traced, soft[chunk], target))
        other += float(reconstruction_loss_sum(gen.traced, swapped[chunk], target))
        tokens += target.tokens
    return {OWN_NLL: own / tokens, OTHER_NLL: other / tokens}


def retrieval_scores(queries: torch.Tensor, docs: torch.Tensor) -> dict[str, float]:
    """Recall@1 and MRR of query i retrieving document i by cosine similarity."""
    sims = F.normalize(queries.float(), dim=-1) @ F.normalize(docs.float(), dim=-1).T
    own = sims.diagonal().unsqueeze(1)
    ranks = (sims > own).sum(dim=1) + 1
    return {"recall@1": float((ranks == 1).float().mean()), "mrr": float((1.0 / ranks.float()).mean())}


@dataclass
class QualityReport:
    """Numbers for a checkpoint card; every figure is computed on held-out prompts."""

    heldout: int
    max_new_tokens: int
    reconstruction_f1: dict[str, float] = field(default_factory=dict)
    alignment_cosine: dict[str, float] = field(default_factory=dict)
    retrieval: dict[str, dict[str, float]] = field(default_factory=dict)
    reconstruction_nll: dict[str, float] = field(default_factory=dict)
    nll_tokens: int = 16
    examples: list[dict[str, str]] = field(default_factory=list)
    overlap: dict[str, Any] | None = None
    """How many held-out prompts the checkpoint trained on (``check_overlap``'s record)."""
    decoded: list[str] = field(default_factory=list)
    """Every held-out prompt's answer decoded from its embedding, in file order."""
    decoded_untrained: list[str] = field(default_factory=list)
    """The same from the untrained tokens."""
    refusal: dict[str, Any] = field(default_factory=dict)
    """Refusal agreement between decoded and LLM answers (:mod:`workbench.eval.behaviour`)."""
    answered_f1: dict[str, Any] = field(default_factory=dict)
    """Decoding F1 on the prompts the LLM answers, against the best constant chosen with hindsight."""
    twins: dict[str, Any] = field(default_factory=dict)
    """Harmful/benign twins: the harmful query's extra cosine to a refusal, per encoder."""
    targets: dict[str, bool] = field(default_factory=dict)
    """Which of the behaviour targets the checkpoint meets."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: str | Path) -> Path:
        """Write the report as JSON (atomically)."""
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        path = Path(path).expanduser()
        atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return path

    def markdown(self) -> str:
        lines = [
            f"Held-out prompts: {self.heldout}; decoding: greedy, {self.max_new_tokens} new tokens."
            + (f" Warning: {note}." if (note := overlap_note(self.overlap)) else ""),
            "",
            "| reconstruction (token F1 vs the LLM's own answer) | F1 |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v:.3f} |" for k, v in self.reconstruction_f1.items()]
        lines += [
            "",
            "| alignment (cosine with the teacher's embedding of the answer) | cosine |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v:.3f} |" for k, v in self.alignment_cosine.items()]
        lines += [
            "",
            f"| query → own answer among {self.heldout} answers | recall@1 | MRR |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {v['recall@1']:.3f} | {v['mrr']:.3f} |" for k, v in self.retrieval.items()]
        if self.reconstruction_nll:
            lines += [
                "",
                f"| teacher-forced loss of the answer's first {self.nll_tokens} tokens, trained "
                "checkpoint | nats/token |",
                "|---|---|",
            ]
            lines += [f"| from {k} | {v:.3f} |" for k, v in self.reconstruction_nll.items()]
        return "\n".join(lines + self._behaviour_lines())

    def _behaviour_lines(self) -> list[str]:
        lines: list[str] = []
        r = self.refusal
        if r:
            lo, hi = r["agreement_ci"]
            lines += [
                "",
                f"Refusal agreement (decoded answer is a refusal exactly when the LLM's is; {r['prompts']} "
                f"prompts, {r['llm_refusals']} LLM refusals): **{r['agreement']:.3f}** [{lo:.3f}, {hi:.3f}]; "
                f"decoded refusals {r['decoded_refusals']}, both {r['both']}, LLM only {r['llm_only']}, "
                f"decoded only {r['decoded_only']}.",
            ]
        a = self.answered_f1
        if a:
            lines += [
                "",
                f"| decoding F1 on the {a['prompts']} prompts the LLM answers | F1 | 95% interval |",
                "|---|---|---|",
            ]
            lines += [
                f"| {k} | {v['f1']:.3f} | [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}] |" for k, v in a["by"].items()
            ]
            d = a["versus_constant"]
            lines.append(
                f"\nTrained minus the hindsight constant: {d['diff']:+.3f} "
                f"[{d['diff_ci'][0]:+.3f}, {d['diff_ci'][1]:+.3f}] ({d['verdict']})."
            )
        t = self.twins
        if t:
            lines += [
                "",
                f"| {t['pairs']} harmful/benign twins: extra cosine of the harmful query to a refusal "
                "| mean | 95% interval |",
                "|---|---|---|",
            ]
            lines += [
                f"| {k} | {v['mean']:+.4f} | [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}] |"
                for k, v in t["by"].items()
            ]
        if self.targets:
            lines += ["", "| target | met |", "|---|---|"]
            lines += [f"| {k} | {'yes' if v else 'no'} |" for k, v in self.targets.items()]
        return lines


def evaluate(
    trained: Any,
    untrained: Any,
    heldout: Sequence[Pair],
    train_responses: Sequence[str],
    *,
    max_new_tokens: int = 48,
    query_instruction: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> QualityReport:
    """Compare a trained model with its untrained start and input-centric baselines on held-out pairs.

    ``heldout`` responses are the frozen LLM's own greedy answers (from ``workbench respond``).
    """
    say = progress or (lambda _msg: None)
    prompts = [p.prompt for p in heldout]
    answers = [p.response for p in heldout]
    report = QualityReport(heldout=len(heldout), max_new_tokens=max_new_tokens)

    say("decoding from embeddings")
    # each model encodes the prompts once; decoding, the loss check and the embeddings share it
    states = trained.compression_states(prompts, instruction=query_instruction)
    states_untrained = untrained.compression_states(prompts, instruction=query_instruction)
    decoded = trained.generate(states, max_new_tokens=max_new_tokens)
    decoded_untrained = untrained.generate(states_untrained, max_new_tokens=max_new_tokens)
    generic = generic_answer(train_responses)
    report.reconstruction_f1 = {
        "trained checkpoint": mean_f1(decoded, answers),
        "untrained tokens": mean_f1(decoded_untrained, answers),
        "generic answer (best constant training response)": mean_f1([generic] * len(answers), answers),
    }
    report.decoded, report.decoded_untrained = list(decoded), list(decoded_untrained)
    report.examples = [
        {"prompt": p, "llm_answer": a, "decoded": d}
        for p, a, d in zip(prompts[:5], answers[:5], decoded[:5], strict=True)
    ]
    if len(prompts) > 1:
        report.reconstruction_nll = reconstruction_nll(trained, states, answers, max_tokens=report.nll_tokens)

    say("alignment and retrieval")
    teacher = trained.load_teacher()
    teacher_answers = teacher.encode(answers)
    student = trained.embeddings_from_states(states)
    student_untrained = untrained.embeddings_from_states(states_untrained)
    report.alignment_cosine = {
        "trained checkpoint": float(F.cosine_similarity(student, teacher_answers).mean()),
        "untrained tokens": float(F.cosine_similarity(student_untrained, teacher_answers).mean()),
    }
    report.retrieval = {
        "trained checkpoint": retrieval_scores(
            student, trained.embed(answers, instruction=DOCUMENT_INSTRUCTION)
        ),
        "untrained tokens": retrieval_scores(
            student_untrained, untrained.embed(answers, instruction=DOCUMENT_INSTRUCTION)
        ),
        f"teacher ({trained.config.teacher}) on the query text": retrieval_scores(
            teacher.encode(prompts), teacher_answers
        ),
        "frozen LLM mean-pooled": retrieval_scores(trained.llm_embed(prompts), trained.llm_embed(answers)),
    }
    return report


def evaluate_checkpoint(
    checkpoint: str | Path,
    heldout: str | Path,
    train_responses: str | Path,
    *,
    limit: int | None = 200,
    max_new_tokens: int = 48,
    progress: Callable[[str], None] | None = None,
    allow_overlap: bool = False,
    gen: Any = None,
) -> QualityReport:
    """``workbench quality``: :func:`evaluate` a checkpoint folder on a held-out responses file.

    The first ``limit`` held-out pairs are encoded with the query instruction the run trained with
    (its card's); none of them may occur among ``train_responses``' prompts, nor among the prompts
    the checkpoint's fingerprint records (unless ``allow_overlap``; the report keeps the count).
    ``gen`` is the checkpoint already loaded, if it is.
    """
    gen = gen if gen is not None else load(checkpoint)
    card = read_checkpoint(checkpoint).meta.get("card", {})
    instruction = card.get("train", {}).get("query_instruction")
    heldout_pairs, _ = read_pairs(heldout, limit)
    train_pairs, _ = read_pairs(train_responses, None)
    held = {normalise(p.prompt) for p in heldout_pairs}
    overlap = sum(normalise(p.prompt) in held for p in train_pairs)
    if overlap and not allow_overlap:
        raise WorkbenchError(
            f"{overlap} held-out prompts also occur in the training responses",
            "hold out prompts that were not trained on",
        )
    record = check_overlap(
        gen, [p.prompt for p in heldout_pairs], allow_overlap=allow_overlap, what="held-out prompts"
    )
    report = evaluate(
        gen,
        untrained_twin(gen),
        heldout_pairs,
        [p.response for p in train_pairs],
        max_new_tokens=max_new_tokens,
        query_instruction=instruction or None,
        progress=progress,
    )
    report.overlap = record
    return report
