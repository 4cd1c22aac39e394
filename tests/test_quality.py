"""Quality metrics: F1, retrieval ranks, the generic baseline, and a full report on a tiny run."""

from __future__ import annotations

import json

import pytest
import torch

import workbench
from workbench.train.config import TrainConfig
from workbench.train.pairs import Pair
from workbench.train.quality import evaluate, generic_answer, retrieval_scores, token_f1, untrained_twin
from workbench.train.trainer import train


def test_token_f1() -> None:
    assert token_f1("The capital is Paris.", "paris is the capital") == 1.0
    assert token_f1("Paris", "Rome") == 0.0
    assert token_f1("Paris France", "Paris") == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0 and token_f1("", "x") == 0.0


def test_retrieval_scores() -> None:
    q = torch.eye(3)
    assert retrieval_scores(q, q) == {"recall@1": 1.0, "mrr": 1.0}
    docs = torch.stack([q[1], q[0], q[2]])  # the first two are swapped
    scores = retrieval_scores(q, docs)
    assert scores["recall@1"] == pytest.approx(1 / 3)
    assert scores["mrr"] == pytest.approx((0.5 + 0.5 + 1) / 3)


def test_generic_answer_is_the_most_typical() -> None:
    pool = ["the sky is blue", "the sky is blue today", "bread", "the sky"]
    assert generic_answer(pool) == "the sky is blue"


def test_report_on_a_tiny_run(tiny_dirs, tmp_path) -> None:
    prompts = [f"question number {i} about topic {i % 3}" for i in range(12)]
    path = tmp_path / "r.jsonl"
    path.write_text(
        "".join(
            json.dumps({"prompt": p, "response": f"answer {i} topic {i % 3}"}) + "\n"
            for i, p in enumerate(prompts)
        )
    )
    out = train(
        TrainConfig(
            model=str(tiny_dirs["qwen3"]),
            teacher="self",
            responses=str(path),
            out=str(tmp_path / "run"),
            num_thought=1,
            num_compress=2,
            max_steps=5,
            batch_size=4,
            save_every=5,
            max_query_length=32,
            max_response_length=8,
        ),
        show_progress=False,
    )
    gen = workbench.load(out)
    twin = untrained_twin(gen)
    start = workbench.load(str(tiny_dirs["qwen3"]), teacher="self", num_thought=1, num_compress=2, seed=42)
    assert torch.equal(twin.special, start.special)  # the twin is the run's exact starting point
    assert not torch.equal(twin.special, gen.special)
    heldout = [Pair(f"held-out question {i}", f"answer {i}") for i in range(4)]
    report = evaluate(gen, twin, heldout, [f"answer {i} topic {i % 3}" for i in range(12)], max_new_tokens=4)
    assert report.heldout == 4 and set(report.retrieval) >= {
        "trained checkpoint",
        "untrained tokens",
        "frozen LLM mean-pooled",
    }
    def hand_f1(pred: str, ref: str) -> float:  # SQuAD F1 written out again, for these plain texts
        import re
        import string
        from collections import Counter

        drop = str.maketrans("", "", string.punctuation)
        norm = lambda t: re.sub(r"\b(a|an|the)\b", " ", t.lower().translate(drop)).split()  # noqa: E731
        p, r = norm(pred), norm(ref)
        same = sum((Counter(p) & Counter(r)).values())
        return 0.0 if not same else 2 * same / (len(p) + len(r))

    assert len(report.examples) == 4  # every held-out pair: the report's F1 is their mean
    expected = sum(hand_f1(e["decoded"], e["llm_answer"]) for e in report.examples) / 4
    assert report.reconstruction_f1["trained checkpoint"] == pytest.approx(expected)
    assert "| trained checkpoint |" in report.markdown()


def test_quality_command_uses_the_runs_instruction(tiny_dirs, tmp_path, capsys) -> None:
    from workbench.cli import main

    pairs = [(f"question {i} about topic {i % 3}", f"answer {i} topic {i % 3}") for i in range(8)]
    train_file, held_file = tmp_path / "r.jsonl", tmp_path / "h.jsonl"
    train_file.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in pairs))
    held = [Pair(f"held-out question {i}", f"answer {i}") for i in range(4)]
    held_file.write_text(
        "".join(json.dumps({"prompt": p.prompt, "response": p.response}) + "\n" for p in held)
    )
    cfg = TrainConfig(
        model=str(tiny_dirs["llama"]),
        teacher="self",
        responses=str(train_file),
        out=str(tmp_path / "run"),
        num_thought=1,
        num_compress=2,
        max_steps=2,
        batch_size=4,
        save_every=2,
        max_query_length=32,
        max_response_length=8,
        query_instruction="Answer this:",
    )
    out = train(cfg, show_progress=False)
    report_file = tmp_path / "q.json"
    argv = ["quality", str(out), "--heldout", str(held_file), "--train-responses", str(train_file)]
    assert main([*argv, "--out", str(report_file), "--max-new-tokens", "3"]) == 0
    written = json.loads(report_file.read_text())
    gen = workbench.load(out)
    direct = evaluate(
        gen,
        untrained_twin(gen),
        held,
        [r for _, r in pairs],
        max_new_tokens=3,
        query_instruction="Answer this:",
    )
    assert written["alignment_cosine"] == pytest.approx(direct.alignment_cosine, abs=1e-6)
    # a held-out prompt that was trained on is refused
    held_file.write_text(
        json.dumps({"prompt": pairs[0][0], "response": pairs[0][1]}) + "\n" + held_file.read_text()
    )
    assert main([*argv]) == 1
    assert "also occur in the training responses" in capsys.readouterr().err


def test_swapped_embedding_loss_is_the_same_when_prompts_are(tiny_dirs) -> None:
    from conftest import tiny_gen

    from workbench.train.quality import OTHER_NLL, OWN_NLL, reconstruction_nll

    gen = tiny_gen(tiny_dirs, num_thought=1, num_compress=2)
    answers = ["first answer", "a second, longer answer", "third"]
    same = reconstruction_nll(gen, ["one prompt"] * 3, answers, max_tokens=8)
    assert same[OWN_NLL] == pytest.approx(same[OTHER_NLL], rel=1e-6)
    with torch.no_grad():  # make the soft prompts depend strongly on the input
        gen.reconstruction.weight.mul_(50.0)
    differ = reconstruction_nll(gen, ["one prompt", "another text", "x y z"], answers, max_tokens=8)
    assert differ[OWN_NLL] != pytest.approx(differ[OTHER_NLL], rel=1e-3)
    with pytest.raises(ValueError, match="two prompts"):
        reconstruction_nll(gen, ["one"], ["a"])


def test_evaluate_checkpoint_refuses_trained_prompts_and_reports_write(tiny_dirs, tmp_path) -> None:
    from conftest import tiny_gen

    from workbench.core.errors import WorkbenchError
    from workbench.train.quality import QualityReport, evaluate_checkpoint

    path = tiny_gen(tiny_dirs, num_thought=1, num_compress=2).save(tmp_path / "ck")
    both = tmp_path / "r.jsonl"
    both.write_text("".join(json.dumps({"prompt": f"q{i}", "response": f"a{i}"}) + "\n" for i in range(3)))
    with pytest.raises(WorkbenchError, match="3 held-out prompts also occur"):
        evaluate_checkpoint(path, both, both)
    report = QualityReport(heldout=3, max_new_tokens=4, alignment_cosine={"trained checkpoint": 0.5})
    written = report.write(tmp_path / "out" / "q.json")
    assert json.loads(written.read_text()) == report.to_dict()
