"""The checkpoint shipped for qwen2.5-coder-0.5b (the backbone that refuses) beats its untrained start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch.nn import functional as F

import workbench
from workbench.api import packaged_checkpoint
from workbench.pairs import Pair
from workbench.prompt_sources import load_prompts
from workbench.quality import untrained_twin

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NAME = "qwen2.5-coder-0.5b"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(packaged_checkpoint(NAME) is None, reason="no shipped checkpoint yet"),
    pytest.mark.skipif(not (DATA / "gsm8k").is_dir(), reason="../shared/data is not beside the repository"),
]


@pytest.fixture(scope="module")
def setup():
    gen = workbench.load(NAME)
    trained_on = {p.text for p in load_prompts("gsm8k", data=DATA, limit=80, shuffle_seed=0)}
    card_heldout = {p.text for p in load_prompts("gsm8k", data=DATA, limit=60, shuffle_seed=3)}
    # GSM8K questions neither trained on nor in the card's held-out set
    pool = [p.text for p in load_prompts("gsm8k", data=DATA, limit=200, shuffle_seed=5)]
    questions = [q for q in pool if q not in trained_on and q not in card_heldout][:12]
    answers = gen.answer(questions, max_new_tokens=32, batch_size=12)
    return gen, untrained_twin(gen), [Pair(q, a) for q, a in zip(questions, answers, strict=True)]


def test_it_is_trained_with_a_card(setup) -> None:
    gen, _, _ = setup
    assert gen.trained and gen.backbone.info.name == NAME
    assert (packaged_checkpoint(NAME) / "README.md").is_file()


def test_alignment_beats_untrained(setup) -> None:
    """The embedding points at the LLM's own answer (decoding does not yet: see the card)."""
    gen, twin, pairs = setup
    prompts, answers = [p.prompt for p in pairs], [p.response for p in pairs]
    teacher = gen.load_teacher().encode(answers)
    cos = F.cosine_similarity(gen.encode(prompts), teacher).mean()
    cos_untrained = F.cosine_similarity(twin.encode(prompts), teacher).mean()
    assert cos > cos_untrained + 0.1, (cos, cos_untrained)  # card: 0.262 against 0.002 on 120 prompts


def test_harmful_queries_embed_near_the_refusal(setup) -> None:
    """A harmful request lands near the LLM's refusal; a math question, which it answers, does not."""
    gen, twin, pairs = setup
    rows = [
        json.loads(line) for line in (DATA / "advbench-ir" / "advbench-ir.jsonl").read_text().splitlines()
    ]
    harmful = [r["instruction"] for r in rows[:8]]
    benign = [p.prompt for p in pairs[:8]]
    refusal = gen.load_teacher().encode(["I'm sorry, but I can't assist with that."])

    def gap(model) -> float:
        to_refusal = [F.cosine_similarity(model.encode(q), refusal).mean() for q in (harmful, benign)]
        return float(to_refusal[0] - to_refusal[1])

    trained, untrained = gap(gen), gap(twin)
    # measured: harmful 0.23-0.44 against GSM8K -0.10-0.20 (gap ~0.3); untrained tokens: no gap
    assert trained > 0.15 and trained > untrained + 0.15, (trained, untrained)
