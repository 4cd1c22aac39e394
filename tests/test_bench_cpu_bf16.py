"""benchmarks/cpu_bf16.py: the retrieval-overlap arithmetic and the target checks, on toy inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cpu_bf16


def test_top_k_ranks_by_cosine_not_by_dot_product() -> None:
    docs = torch.tensor([[10.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    queries = torch.tensor([[1.0, 0.1], [0.0, 3.0]])
    assert cpu_bf16.top_k(queries, docs, 2).tolist() == [[0, 1], [2, 1]]
    assert cpu_bf16.top_k(queries, docs, 10).shape == (2, 4)  # k above the corpus size: all of it


def test_overlaps_count_shared_ids_whatever_their_order() -> None:
    a = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]])
    b = torch.tensor([[3, 2, 1, 0], [4, 5, 8, 9], [9, 8, 7, 6]])
    assert cpu_bf16.overlaps(a, b) == [1.0, 0.5, 0.0]


def test_overlap_of_slightly_perturbed_embeddings_is_high() -> None:
    g = torch.Generator().manual_seed(0)
    q, d = torch.randn(20, 16, generator=g), torch.randn(300, 16, generator=g)
    noisy = [x + 1e-4 * torch.randn(x.shape, generator=g) for x in (q, d)]
    shares = cpu_bf16.overlaps(cpu_bf16.top_k(*noisy, 10), cpu_bf16.top_k(q, d, 10))
    assert min(shares) >= 0.9
    assert cpu_bf16.overlaps(cpu_bf16.top_k(-q, d, 10), cpu_bf16.top_k(q, d, 10)) == [0.0] * 20


def test_checks_compare_with_targets_and_mark_missing_sections() -> None:
    result = {
        "settings": {"gen_batches": [8, 1], "rss_dtypes": ["bfloat16"]},
        "backbones": {
            "m": {
                "encode": {
                    "texts_per_s": {"bfloat16": 30.0, "official_bfloat16": 10.0, "float32": 10.0},
                    "min_cosine_bf16_vs_fp32": 0.999,
                },
                "retrieval": {"top_k_overlap_mean": 0.9, "min_cosine_bf16_vs_fp32": {"queries": 0.99}},
                "train": {"speedup_bf16_mixed_over_fp32": 2.0, "first_loss_rel_diff": 0.02},
                "rss": {"bfloat16": {"ratio_workbench_over_official": 0.7}},
            }
        },
    }
    got = {c["check"]: (c["value"], c["passed"]) for c in cpu_bf16.checks(result)}
    assert got["encode texts/s, workbench / official, bfloat16"] == (3.0, True)
    assert got["encode texts/s, workbench / official, float32"] == (None, None)
    assert got["min cosine, bf16 vs fp32 embeddings"] == (0.99, False)  # the retrieval queries' minimum
    assert got["top-10 overlap, bf16 vs fp32 (mean over queries)"] == (0.9, False)
    assert got["generate tokens/s, workbench / official, bf16, batch 8"] == (None, None)
    assert got["train step time, fp32 / bf16 mixed"] == (2.0, True)
    assert got["first-step loss, |bf16 mixed - fp32| / fp32"] == (0.02, False)
    assert got["peak RSS of load + encode, workbench / official, bfloat16"] == (0.7, True)
    assert all(set(c) >= {"target", "from", "backbone"} for c in cpu_bf16.checks(result))


@pytest.mark.parametrize("corpus", [None, 5])
def test_retrieval_data_is_the_eval_corpus_or_a_seeded_subset(tmp_path: Path, corpus: int | None) -> None:
    import json

    adv = tmp_path / "advbench-ir"
    adv.mkdir()
    rows = [{"instruction": f"how to do {i}", "title": f"T{i}", "response": "word " * 150} for i in range(4)]
    (adv / "advbench-ir.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    nq = tmp_path / "nq-open"
    nq.mkdir()
    (nq / "NQ-open.dev.jsonl").write_text(
        "\n".join(json.dumps({"question": f"q{i}?", "answer": [f"a{i}"]}) for i in range(6)) + "\n"
    )
    qs, passages, info = cpu_bf16.retrieval_data(tmp_path, 3, corpus)
    assert len(qs) == 3 and info["full_corpus_passages"] == 3 + 6  # one chunk per query kept, 6 benign
    if corpus is None:
        assert info["corpus"] == "full" and len(passages) == 9
    else:
        assert info["corpus"].startswith("seeded subset") and len(passages) == 5
        assert [p.id for p in passages] == [p.id for p in cpu_bf16.retrieval_data(tmp_path, 3, corpus)[1]]


def test_checks_table_has_a_column_per_backbone_and_escapes_pipes() -> None:
    result = {
        "backbones": {"a": {}, "b": {}},
        "checks": [
            {"backbone": "a", "check": "speed", "value": 1.7, "target": ">= 1.5", "passed": True},
            {"backbone": "b", "check": "speed", "value": 1.2, "target": ">= 1.5", "passed": False},
            {"backbone": "a", "check": "|x - y| / y", "value": None, "target": "<= 0.01", "passed": None},
        ],
    }
    lines = cpu_bf16.checks_table(result).splitlines()
    assert lines[0] == "| check | target | a | b |"
    assert lines[2] == "| speed | >= 1.5 | 1.7 (met) | 1.2 (**not met**) |"
    assert lines[3] == "| \\|x - y\\| / y | <= 0.01 | not measured |  |"
