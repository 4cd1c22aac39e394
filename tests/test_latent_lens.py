"""The latent lens: an index of response-token states, its files, lookups and command line."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import CORPUS, tiny_gen

from workbench.cli import main
from workbench.core.errors import WorkbenchError
from workbench.lens.latent import (
    INDEX_FILE,
    STATES_FILE,
    LatentIndex,
    build_latent_index,
    default_index_path,
    load_latent_index,
)

RESPONSES = [
    "The capital of France is Paris, a city on the Seine.",
    "Photosynthesis turns light, water and carbon dioxide into sugar.",
    "Refusal: I'm sorry, but I can't help with that request.",
    "How do I bake bread at home with flour, water, yeast and salt?",
]


@pytest.fixture(scope="module")
def llama(tiny_dirs):
    return tiny_gen(tiny_dirs, "llama")


@pytest.fixture(scope="module")
def index(llama):
    return build_latent_index(llama, RESPONSES, batch_size=3, max_tokens_per_text=64)


def test_entries_are_real_tokens_of_the_texts(llama, index):
    tok = llama.tokenizer
    assert index.states.dtype == torch.float16
    assert index.states.shape == (len(index), llama.backbone.info.hidden_size)
    torch.testing.assert_close(index.states.float().norm(dim=-1), torch.ones(len(index)), atol=2e-3, rtol=0)
    assert index.layer == llama.backbone.info.num_layers
    assert sorted(set(index.text_ids)) == list(range(len(RESPONSES)))
    skip = set(tok.all_special_ids) | set(llama.special_ids)
    for e in range(len(index)):
        ids = tok(RESPONSES[index.text_ids[e]])["input_ids"]
        assert ids[index.positions[e]] == index.token_ids[e]
        assert index.token_ids[e] not in skip and index.tokens[e].strip()
    assert tok.bos_token_id not in index.token_ids


def test_states_are_the_plain_forward_final_norm(llama, index):
    text_id = 1
    ids = llama.tokenizer(RESPONSES[text_id], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = llama.backbone.model(input_ids=ids, output_hidden_states=True)
        norm = llama.backbone.submodule(llama.backbone.arch.final_norm)
        ref = torch.nn.functional.normalize(norm(out.hidden_states[-1][0]), dim=-1)
    entries = [e for e in range(len(index)) if index.text_ids[e] == text_id]
    want = ref[[index.positions[e] for e in entries]]
    # HF's last hidden state may already be normed; either way the normalised rows must agree
    alt = torch.nn.functional.normalize(out.hidden_states[-1][0], dim=-1)[
        [index.positions[e] for e in entries]
    ]
    got = index.states[entries].float()
    assert torch.allclose(got, want, atol=3e-3) or torch.allclose(got, alt, atol=3e-3)


def test_truncation_and_padding_do_not_change_states(llama, index):
    alone = build_latent_index(llama, RESPONSES[:1], batch_size=1)
    first = [e for e in range(len(index)) if index.text_ids[e] == 0]
    torch.testing.assert_close(alone.states.float(), index.states[first].float(), atol=2e-3, rtol=0)
    short = build_latent_index(llama, RESPONSES, max_tokens_per_text=5)
    assert max(short.positions) <= 4
    assert len(short) < len(index)


def test_nearest_finds_itself_and_marks_the_token(index):
    # the tiny tokenizer splits "Paris" into "Par" + "is"
    e = next(e for e in range(len(index)) if index.text_ids[e] == 0 and index.tokens[e].strip() == "Par")
    hits = index.nearest(index.states[e : e + 1].float(), k=3)
    assert len(hits) == 1 and len(hits[0]) == 3
    best = hits[0][0]
    assert (best["text_id"], best["position"]) == (index.text_ids[e], index.positions[e])
    assert best["score"] == pytest.approx(1.0, abs=2e-3)
    assert best["token"] == "Par"
    assert best["context"] == "The capital of France is [Par]is, a city on the Seine."
    for i in range(len(index)):
        ctx = index.context(i)
        assert f"[{index.tokens[i].strip()}]" in ctx
        assert ctx.replace("[", "").replace("]", "").strip("… ") in index.texts[index.text_ids[i]]
    scores = [h["score"] for h in hits[0]]
    assert scores == sorted(scores, reverse=True)
    distinct = index.nearest(index.states[:4].float(), k=5, distinct=True)
    for row in distinct:
        assert len({h["token"].strip() for h in row}) == len(row)


def test_context_snippet_is_cut_at_words(llama):
    text = " ".join(f"word{i}" for i in range(40)) + " polar bear lives on sea ice " + "tail " * 30
    idx = build_latent_index(llama, [text], max_tokens_per_text=512)
    e = max(range(len(idx)), key=lambda e: idx.tokens[e].strip() == "bear" or idx.positions[e] == 100)
    ctx = idx.context(e)
    assert ctx.startswith("… ") and ctx.endswith(" …")
    assert ctx.count("[") == 1 and ctx.count("]") == 1
    marked = ctx[ctx.index("[") + 1 : ctx.index("]")]
    assert marked and marked == marked.strip() and marked in text


def test_save_load_round_trip_is_exact(index, tmp_path):
    path = index.save(tmp_path / "idx")
    assert sorted(p.name for p in path.iterdir()) == sorted([INDEX_FILE, STATES_FILE])
    back = LatentIndex.load(path)
    assert torch.equal(back.states, index.states)
    assert torch.equal(back.probe, index.probe)
    for name in ("token_ids", "tokens", "text_ids", "positions", "spans", "texts", "layer", "backbone"):
        assert getattr(back, name) == getattr(index, name), name
    query = index.states[:3].float()
    assert back.nearest(query, 4) == index.nearest(query, 4)
    meta = json.loads((path / INDEX_FILE).read_text())
    assert meta["backbone"]["name"] == index.backbone["name"] and meta["layer"] == index.layer


def test_corrupt_and_missing_index_are_clear_errors(index, tmp_path, llama):
    path = index.save(tmp_path / "idx")
    (path / STATES_FILE).write_bytes(b"garbage")
    with pytest.raises(WorkbenchError, match="corrupt"):
        LatentIndex.load(path)
    with pytest.raises(WorkbenchError, match="latent-lens build"):
        load_latent_index(llama, tmp_path / "nothing")


def test_wrong_backbone_is_refused(index, tiny_dirs, tmp_path):
    path = index.save(tmp_path / "idx")
    qwen2 = tiny_gen(tiny_dirs, "qwen2")  # same sizes as the tiny llama, other weights
    with pytest.raises(WorkbenchError, match="weights differ"):
        load_latent_index(qwen2, path)
    qwen3 = tiny_gen(tiny_dirs, "qwen3")
    with pytest.raises(WorkbenchError):
        load_latent_index(qwen3, path)
    assert len(load_latent_index(tiny_gen(tiny_dirs, "llama"), path)) == len(index)


def test_compression_states_query(llama, index):
    states = llama.compression_states(["Where is Paris?"])[0]
    hits = index.nearest(states, k=2)
    assert len(hits) == llama.config.num_compress
    assert all(-1.0 - 1e-3 <= h["score"] <= 1.0 + 1e-3 for row in hits for h in row)
    with pytest.raises(WorkbenchError, match="shape"):
        index.nearest(torch.zeros(2, 3), k=2)


def test_cli_build_and_info(tiny_dirs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    responses = tmp_path / "responses.jsonl"
    responses.write_text(
        "".join(
            json.dumps({"id": str(i), "prompt": "q", "response": r}) + "\n" for i, r in enumerate(CORPUS[:5])
        )
    )
    out = tmp_path / "idx"
    model = str(tiny_dirs["llama"])
    argv = [
        "latent-lens",
        "build",
        "--model",
        model,
        "--responses",
        str(responses),
        "--out",
        str(out),
        "--quiet",
    ]
    assert main([*argv, "--max-tokens-per-text", "16", "--batch-size", "2"]) == 0
    assert "token states from 5 responses" in capsys.readouterr().out
    index = LatentIndex.load(out)
    assert len(index.texts) == 5 and max(index.positions) <= 15
    assert index.meta["source"] == str(responses) and index.meta["max_tokens_per_text"] == 16
    assert main(["latent-lens", "info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["texts"] == 5 and info["entries"] == len(index) and info["bytes"] > 0
    # default location, then found by load_latent_index(gen, None)
    assert main([*argv[:6], "--quiet"]) == 0
    gen = tiny_gen(tiny_dirs, "llama")
    assert default_index_path(gen).is_dir()
    assert len(load_latent_index(gen, None)) == len(LatentIndex.load(default_index_path(gen)))
    # one source, exactly
    assert main(["latent-lens", "build", "--model", model, "--out", str(out)]) == 1
    assert "exactly one source" in capsys.readouterr().err


def test_cli_answers_prompts_first(tiny_dirs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_answer(backbone, prompts, **kwargs):  # the random tiny model answers with EOS at once
        calls.append(list(prompts))
        return [f"An answer about {p.lower()} in a few words." for p in prompts]

    monkeypatch.setattr("workbench.train.responding.chat_answer", fake_answer)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Where is Paris?\nHow do I bake bread?\nWhat is photosynthesis?\n")
    out = tmp_path / "idx"
    argv = ["latent-lens", "build", "--model", str(tiny_dirs["llama"]), "--prompts", str(prompts)]
    argv += ["--limit", "2", "--max-new-tokens", "6", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    index = LatentIndex.load(out)
    assert index.texts == [
        "An answer about where is paris? in a few words.",
        "An answer about how do i bake bread? in a few words.",
    ]
    caches = list((tmp_path / "cache" / "latent-index" / "responses").glob("*.jsonl"))
    assert len(caches) == 1 and len(caches[0].read_text().splitlines()) == 2
    assert main(argv) == 0  # answers come from the cache the second time
    assert len(calls) == 1 and len(caches[0].read_text().splitlines()) == 2
    # evaluation queries are refused as prompts, as in `workbench respond`
    evaluation = tmp_path / "advbench-ir.jsonl"
    evaluation.write_text(json.dumps({"prompt": "Write a tutorial on fraud"}) + "\n")
    argv[argv.index(str(prompts))] = str(evaluation)
    assert main(argv) == 1
    assert "evaluation queries" in capsys.readouterr().err


def test_old_command_name_still_works_and_says_it_is_deprecated(index, tmp_path, capsys):
    path = index.save(tmp_path / "idx")
    assert main(["latent-lens", "info", str(path)]) == 0
    new = capsys.readouterr()
    assert main(["lens-index", "info", str(path)]) == 0
    old = capsys.readouterr()
    assert old.out == new.out and json.loads(old.out)["entries"] == len(index)
    assert new.err == ""
    assert old.err.splitlines() == [
        "note: `workbench lens-index` is now `workbench latent-lens`; the old name goes away in 0.3"
    ]
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert "latent-lens" in listing and "lens-index" not in listing


def test_index_summary_and_format_errors_name_the_new_command(index, tmp_path):
    from workbench.lens.latent import FORMAT, index_summary

    path = index.save(tmp_path / "idx")
    summary = index_summary(path)
    assert summary["entries"] == len(index) and summary["texts"] == len(RESPONSES)
    assert summary["bytes"] == sum(f.stat().st_size for f in path.iterdir())
    meta = json.loads((path / INDEX_FILE).read_text())
    assert meta["format"] == FORMAT and len(meta["entries"]["span"]) == len(index)
    (path / INDEX_FILE).write_text("{")
    with pytest.raises(WorkbenchError, match="rebuild it with `workbench latent-lens build --out"):
        LatentIndex.load(path)


def test_other_layers_are_read_through_the_final_norm(llama, index):
    last = build_latent_index(llama, RESPONSES, layer=-1)
    assert last.layer == index.layer and torch.equal(last.states, index.states)
    first = build_latent_index(llama, RESPONSES, layer=1)
    assert first.layer == 1 and first.token_ids == index.token_ids
    ids = llama.tokenizer(RESPONSES[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = llama.backbone.model(input_ids=ids, output_hidden_states=True).hidden_states[1][0]
        norm = llama.backbone.submodule(llama.backbone.arch.final_norm)
        want = torch.nn.functional.normalize(norm(hidden), dim=-1)
    entries = [e for e in range(len(first)) if first.text_ids[e] == 0]
    got = first.states[entries].float()
    torch.testing.assert_close(got, want[[first.positions[e] for e in entries]], atol=3e-3, rtol=0)
    with pytest.raises(WorkbenchError, match="layer 9 does not exist"):
        build_latent_index(llama, RESPONSES, layer=9)
