"""Corpus embeddings from ``workbench encode --corpus`` reused by evaluations and maps: the same
numbers as computing them, nothing computed twice, and folders of another model or corpus refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import CORPUS, counting, tiny_gen

from workbench.cli import main
from workbench.core.config import DOCUMENT_INSTRUCTION, QUERY_INSTRUCTION
from workbench.core.errors import WorkbenchError
from workbench.eval.corpus import encode_corpus, read_corpus_embeddings
from workbench.eval.encoders import Encoders
from workbench.eval.map_items import MapItem
from workbench.eval.maps import embed_items
from workbench.eval.precomputed import attach_corpus_embeddings
from workbench.store.cache import EmbeddingCache

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TEXTS = [f"{i}: {' '.join(CORPUS[i % len(CORPUS)].split())}" for i in range(12)]


@pytest.fixture
def encoded(tiny_dirs, tmp_path):
    gen = tiny_gen(tiny_dirs)
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    folder = tmp_path / "emb"
    encode_corpus(gen, corpus, folder, instruction=DOCUMENT_INSTRUCTION, shard_size=5, show_progress=False)
    return gen, corpus, folder


def test_rows_come_from_the_folder_and_equal_computing_them(encoded, monkeypatch) -> None:
    gen, _, folder = encoded
    enc = Encoders(gen, cache=EmbeddingCache(enabled=False), show_progress=False)
    attach_corpus_embeddings(enc, [folder])
    calls = counting(gen, monkeypatch)
    mixed = [TEXTS[3], "a passage that is not in the corpus", TEXTS[0], TEXTS[3]]
    got = enc.embed("gen", mixed, DOCUMENT_INSTRUCTION)
    assert calls == [["a passage that is not in the corpus"]]  # only the text the folder lacks
    stored = read_corpus_embeddings(folder)
    assert torch.equal(got[0], stored[3]) and torch.equal(got[2], stored[0])
    assert torch.equal(got[3], stored[3])
    reference = gen.__class__.embed(gen, mixed, instruction=DOCUMENT_INSTRUCTION)
    assert torch.allclose(got, reference, atol=1e-5)
    assert enc.precomputed_summary()[0] | {"folder": None} == {
        "folder": None,
        "corpus": str(folder.parent / "docs.txt"),
        "rows": 12,
        "instruction": DOCUMENT_INSTRUCTION,
        "used": 2,
    }
    enc.embed("gen", [TEXTS[1]], QUERY_INSTRUCTION)  # another instruction: computed, not looked up
    assert calls[-1] == [TEXTS[1]] and enc.precomputed_summary()[0]["used"] == 2
    # a map's documents are looked up the same way (its queries carry the query instruction)
    items = [MapItem("How do I bake bread?", "query"), MapItem(TEXTS[5], "distractor")]
    embedded = embed_items(gen, items, ["llm2vec-gen"], corpus_embeddings=[folder])
    assert torch.equal(embedded["llm2vec-gen"][1], stored[5])
    assert calls[-1] == ["How do I bake bread?"]


def test_folders_of_another_model_or_corpus_are_refused(encoded, tiny_dirs, tmp_path) -> None:
    gen, corpus, folder = encoded
    other = Encoders(tiny_gen(tiny_dirs, "qwen2"), cache=EmbeddingCache(enabled=False))
    with pytest.raises(WorkbenchError, match=r"another model .*backbone"):
        attach_corpus_embeddings(other, [folder])
    reseeded = Encoders(tiny_gen(tiny_dirs, seed=7), cache=EmbeddingCache(enabled=False))
    with pytest.raises(WorkbenchError, match=r"another model .*checkpoint"):
        attach_corpus_embeddings(reseeded, [folder])
    enc = Encoders(gen, cache=EmbeddingCache(enabled=False))
    corpus.write_text("\n".join(TEXTS[::-1]) + "\n", encoding="utf-8")
    with pytest.raises(WorkbenchError, match="changed since"):
        attach_corpus_embeddings(enc, [folder])
    corpus.unlink()
    with pytest.raises(WorkbenchError, match="is not there"):
        attach_corpus_embeddings(enc, [folder])
    from_python = tmp_path / "py"
    encode_corpus(gen, TEXTS[:3], from_python, show_progress=False)
    with pytest.raises(WorkbenchError, match="names no corpus file"):
        attach_corpus_embeddings(enc, [from_python])
    with pytest.raises(WorkbenchError, match=r"holds no index\.json"):
        attach_corpus_embeddings(enc, [tmp_path / "nothing"])


@pytest.mark.skipif(not (DATA / "advbench-ir").is_dir(), reason="../shared/data is not beside the repository")
def test_eval_safety_with_corpus_embeddings_matches_without(tiny_dirs, tmp_path, capsys) -> None:
    distractors = tmp_path / "benign.txt"
    distractors.write_text("\n".join(TEXTS[:6]) + "\n", encoding="utf-8")
    model = ["-m", str(tiny_dirs["llama"]), "--untrained", "--device", "cpu"]
    assert main(["encode", "--corpus", str(distractors), "--out", str(tmp_path / "emb"), *model]) == 0
    common = ["eval", "safety", *model, "--data-dir", str(DATA), "--limit", "2", "--no-refusals",
              "--encoders", "gen", "--distractors", str(distractors), "--no-cache"]  # fmt: skip
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert main([*common, "--out", str(tmp_path / "pre"), "--corpus-embeddings", str(tmp_path / "emb")]) == 0
    assert "6 of its 6 embeddings used" in capsys.readouterr().err
    plain, pre = (json.loads(next((tmp_path / d).glob("safety-*Z.json")).read_text()) for d in ("plain", "pre"))  # noqa: E501
    for name, value in plain["metrics"]["gen"].items():
        assert pre["metrics"]["gen"][name] == pytest.approx(value, abs=1e-9), name
    assert pre["config"]["corpus_embeddings"][0]["used"] == 6
    assert "corpus_embeddings" not in plain["config"]


@pytest.mark.parametrize("cached", [True, False])
def test_mean_and_last_pooling_share_one_llm_pass(tiny_dirs, tmp_path, monkeypatch, cached) -> None:
    """With both LLM baselines planned, one pass over the texts gives both, equal to two passes."""
    gen = tiny_gen(tiny_dirs)
    texts = [*TEXTS[:5], TEXTS[0]]
    mean, last = (gen.llm_embed(texts, pooling=p, batch_size=4) for p in ("mean", "last"))
    passes: list[tuple[str, ...]] = []
    pooled = gen.llm_embed_poolings

    def counted(batch_texts, poolings, **kwargs):
        passes.append(tuple(poolings))
        return pooled(batch_texts, poolings, **kwargs)

    monkeypatch.setattr(gen, "llm_embed_poolings", counted)
    enc = Encoders(gen, batch_size=4, cache=EmbeddingCache(tmp_path, enabled=cached), show_progress=False)
    enc.planned = ("gen", "llm-mean", "llm-last")
    assert torch.allclose(enc.embed("llm-mean", texts), mean, atol=1e-6)
    assert torch.allclose(enc.embed("llm-last", texts), last, atol=1e-6)
    assert passes == [("mean", "last")]
    if cached:
        assert (enc.cache.misses, enc.cache.hits) == (10, 0)  # 5 texts x 2 poolings computed (one pass)
    alone = Encoders(gen, batch_size=4, cache=EmbeddingCache(enabled=False), show_progress=False)
    alone.planned = ("llm-last",)
    alone.embed("llm-last", texts)
    assert passes[-1] == ("last",)  # nothing extra when the other pooling is not planned
