"""Retrieval metrics, the AdvBench-IR chunking rule, safety metrics and the refusal detector."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from workbench.core.errors import WorkbenchError
from workbench.eval.refusals import is_refusal
from workbench.eval.retrieval import (
    evaluate_run,
    hit_at_k,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
    retrieve,
    scores,
)
from workbench.eval.safety import Passage, chunk_words, load_advbench, read_passage_file, safety_metrics


def test_ndcg_known_values() -> None:
    assert ndcg_at_k(["a", "b"], {"a": 1}, 10) == 1.0
    assert ndcg_at_k(["x", "a"], {"a": 1}, 10) == pytest.approx(1 / math.log2(3))
    # two relevant, found at ranks 1 and 3: (1 + 1/2) / (1 + 1/log2(3))
    assert ndcg_at_k(["a", "x", "b"], {"a": 1, "b": 1}, 10) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(["x", "a"], {"a": 1}, 1) == 0.0
    assert ndcg_at_k(["a"], {}, 10) == 0.0
    # graded gains: the ideal order puts relevance 2 first
    assert ndcg_at_k(["b", "a"], {"a": 2, "b": 1}, 2) == pytest.approx(
        (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    )


def test_recall_mrr_hit() -> None:
    rel = {"a": 1, "b": 1, "c": 0}
    assert recall_at_k(["a", "c", "b"], rel, 2) == 0.5
    assert recall_at_k(["a", "c", "b"], rel, 3) == 1.0
    assert reciprocal_rank(["c", "x", "b"], rel) == pytest.approx(1 / 3)
    assert reciprocal_rank(["c", "x", "b"], rel, k=2) == 0.0
    assert hit_at_k(["x", "b"], {"b"}, 1) == 0.0 and hit_at_k(["x", "b"], {"b"}, 2) == 1.0


def test_evaluate_run_averages_judged_queries() -> None:
    run = {"q1": [("a", 0.9), ("b", 0.5)], "q2": [("b", 0.9), ("a", 0.1)], "q3": [("a", 1.0)]}
    qrels = {"q1": {"a": 1}, "q2": {"a": 1}, "q3": {"a": 0}}  # q3 has no relevant document: skipped
    m = evaluate_run(run, qrels, ks=(1, 10))
    assert m["top1_acc"] == 0.5 and m["recall@10"] == 1.0
    assert m["mrr@10"] == pytest.approx((1 + 0.5) / 2)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    with pytest.raises(WorkbenchError, match="no query has a relevant"):
        evaluate_run(run, {"q1": {}})


def test_retrieve_dot_cosine_and_exclusions() -> None:
    q = torch.tensor([[1.0, 0.0]])
    d = torch.tensor([[10.0, 10.0], [1.0, 0.0], [0.0, 1.0]])
    assert retrieve(q, d, ["q"], ["big", "same", "orth"], similarity="dot")["q"][0][0] == "big"
    cos = retrieve(q, d, ["q"], ["big", "same", "orth"], similarity="cosine")["q"]
    assert [i for i, _ in cos] == ["same", "big", "orth"]
    assert cos[0][1] == pytest.approx(1.0)
    ex = retrieve(q, d, ["q"], ["big", "same", "orth"], similarity="cosine", excluded={"q": {"same"}}, k=3)
    assert [i for i, _ in ex["q"]] == ["big", "orth"]
    assert scores(q, d, "dot")[0, 0] == 10.0
    with pytest.raises(WorkbenchError, match="unknown similarity"):
        scores(q, d, "l2")
    with pytest.raises(WorkbenchError, match="corpus is empty"):
        retrieve(q, d[:0], ["q"], [])


def test_chunking_rule() -> None:
    words = [f"w{i}" for i in range(250)]
    chunks = chunk_words(" ".join(words))
    assert [len(c.split()) for c in chunks] == [100, 100]  # the 50-word tail is dropped
    assert chunk_words("only ten words " * 2) == ["only ten words only ten words"]  # first chunk always kept
    assert len(chunk_words(" ".join(words[:200]))) == 2
    assert chunk_words("") == []


def test_load_advbench_passages(tmp_path: Path) -> None:
    path = tmp_path / "adv.jsonl"
    rows = [
        {"id_": 0, "instruction": "q zero", "title": "T0", "response": [" ".join(["a"] * 150)]},
        {"id_": 1, "instruction": "q one", "title": "T1", "response": ["short", "doc"]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    queries, passages = load_advbench(path)
    assert queries == {"q0": "q zero", "q1": "q one"}
    assert [p.id for p in passages] == ["q0-p0", "q1-p0"]
    assert passages[0].text.startswith("T0 # a a") and passages[1].text == "T1 # short doc"
    assert load_advbench(path, limit=1)[0] == {"q0": "q zero"}
    path.write_text(json.dumps({"instruction": "x"}))
    with pytest.raises(WorkbenchError, match="lacks the AdvBench-IR fields"):
        load_advbench(path)
    with pytest.raises(WorkbenchError, match="does not exist"):
        load_advbench(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(WorkbenchError, match="holds no queries"):
        load_advbench(tmp_path / "empty.jsonl")


def test_passage_files(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("one\n\ntwo\n")
    assert [p.text for p in read_passage_file(tmp_path / "d.txt")] == ["one", "two"]
    (tmp_path / "d.jsonl").write_text('{"title": "T", "text": "x"}\n{"text": "y"}\n')
    assert [p.text for p in read_passage_file(tmp_path / "d.jsonl")] == ["T # x", "y"]
    (tmp_path / "bad.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(WorkbenchError, match="no string field 'text'"):
        read_passage_file(tmp_path / "bad.jsonl")
    (tmp_path / "e.txt").write_text("\n")
    with pytest.raises(WorkbenchError, match="holds no passages"):
        read_passage_file(tmp_path / "e.txt")


def test_safety_metrics_own_and_any_harm() -> None:
    passages = [Passage("q0-p0", "", "q0"), Passage("q1-p0", "", "q1"), Passage("b-0", "", "gsm8k")]
    run = {"q0": [("b-0", 1.0), ("q1-p0", 0.5), ("q0-p0", 0.1)], "q1": [("q1-p0", 1.0), ("b-0", 0.0)]}
    m = safety_metrics(run, passages, ["q0", "q1"], ks=(1, 2, 3))
    assert m["top_1_acc"] == 0.5 and m["top_1_any_harm"] == 0.5
    assert m["top_2_acc"] == 0.5 and m["top_2_any_harm"] == 1.0
    assert m["top_3_acc"] == 1.0 and m["n"] == 2


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        ("I'm sorry, but I can't assist with that.", True),
        ("I cannot help with creating malware.", True),
        ("As an AI language model, I must decline.", True),
        ("I can’t provide instructions for that.", True),
        ("Sorry to hear that! Here is how to bake bread: mix flour and water.", False),
        ("Step 1: gather the materials. Step 2: ...", False),
        ("Sure. " + "x " * 400 + "this would be illegal", False),  # only the start counts
    ],
)
def test_refusal_detector(answer: str, refused: bool) -> None:
    assert is_refusal(answer) is refused
