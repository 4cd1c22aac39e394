"""The method on tiny Llama, Qwen2 and Qwen3 backbones: states, heads, gradients, batching, decoding."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_gen

from workbench.core.backbone import find_architecture
from workbench.core.errors import WorkbenchError

TEXTS = ["How do I bake bread?", "Paris", "Prove that the square root of two is irrational, step by step."]


def reference_states(gen, texts):
    """Final post-norm states computed without nnsight: embeddings edited by hand, plain forward."""
    batch = gen.encoder_batch(texts)
    model = gen.backbone.model
    n = gen.config.num_special
    ids = batch.input_ids.clone()
    ids[:, -n:] = gen.tokenizer.pad_token_id
    embeds = model.get_input_embeddings()(ids)
    embeds = torch.cat([embeds[:, :-n], gen.special.unsqueeze(0).expand(len(texts), -1, -1)], dim=1)
    out = model.base_model(
        inputs_embeds=embeds, attention_mask=batch.attention_mask, position_ids=batch.position_ids
    )
    return out.last_hidden_state[:, -gen.config.num_compress :]


@pytest.mark.parametrize(("thought", "compress"), [(10, 10), (0, 10), (3, 2)])
def test_token_counts_and_shapes(tiny_dirs, family, thought, compress) -> None:
    gen = tiny_gen(tiny_dirs, family, num_thought=thought, num_compress=compress)
    assert gen.special.shape == (thought + compress, 64)
    assert gen.compression_states(TEXTS).shape == (3, compress, 64)
    assert gen.embed(TEXTS).shape == (3, 16)
    strings = gen.tokenizer.convert_ids_to_tokens(gen.special_ids)
    assert strings == gen.config.token_strings()
    assert sum(s.startswith("<think_") for s in strings) == thought


def test_states_are_final_post_norm_at_last_c_positions(tiny_dirs, family) -> None:
    gen = tiny_gen(tiny_dirs, family, num_thought=4, num_compress=3)
    with torch.no_grad():
        expected = reference_states(gen, TEXTS)
    assert torch.allclose(gen.compression_states(TEXTS), expected, atol=1e-5)
    # the final norm is really applied: the states are norm(raw), and differ from the raw output
    # (raw: the final norm's input in the plain forward, which gave the same states as the model)
    norm = gen.backbone.submodule(find_architecture(gen.backbone.model).final_norm)
    seen: list[torch.Tensor] = []
    hook = norm.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            again = reference_states(gen, TEXTS)
    finally:
        hook.remove()
    (raw,) = [x[:, -gen.config.num_compress :] for x in seen]
    assert torch.equal(again, expected)
    assert not torch.allclose(expected, raw, atol=1e-3)
    assert torch.allclose(expected, norm(raw), atol=1e-5)


def test_embedding_and_soft_prompt_formulas(tiny_dirs, family) -> None:
    gen = tiny_gen(tiny_dirs, family)
    torch.nn.init.normal_(gen.reconstruction.weight, std=0.1)
    h = gen.compression_states(TEXTS)
    s = torch.nn.functional.linear(h, gen.reconstruction.weight, gen.reconstruction.bias)
    e = torch.nn.functional.linear(s, gen.alignment.weight, gen.alignment.bias).mean(dim=1)
    out = gen(TEXTS)
    assert torch.allclose(out["soft_prompt"], s, atol=1e-5)
    assert torch.allclose(out["embedding"], e, atol=1e-5)
    assert torch.allclose(gen.embed(TEXTS), e, atol=1e-5)
    assert torch.allclose(gen.embed(TEXTS, normalize=True).norm(dim=-1), torch.ones(3))


def test_only_special_rows_and_heads_train(tiny_dirs, family) -> None:
    gen = tiny_gen(tiny_dirs, family, num_thought=2, num_compress=3)
    backbone = gen.backbone.model
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    assert set(gen.state_dict()) == {
        "special",
        "reconstruction.weight",
        "reconstruction.bias",
        "alignment.weight",
        "alignment.bias",
    }
    assert not any(p.requires_grad for p in backbone.parameters())
    optimiser = torch.optim.AdamW(gen.trainable_parameters(), lr=1e-2)
    out = gen(TEXTS)
    loss = out["embedding"].pow(2).mean() + out["soft_prompt"].pow(2).mean()
    loss.backward()
    optimiser.step()
    assert gen.special.grad is not None
    assert (gen.special.grad.abs().sum(dim=-1) > 0).all()  # thought rows too
    for head in (gen.reconstruction, gen.alignment):
        assert head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in backbone.parameters())
    after = backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_batched_equals_one_by_one(tiny_dirs, family) -> None:
    gen = tiny_gen(tiny_dirs, family)
    texts = [*TEXTS, "a", "x " * 30]
    batched = gen.embed(texts, batch_size=5)
    single = torch.cat([gen.embed([t]) for t in texts])
    assert torch.allclose(batched, single, atol=1e-5)
    states = gen.compression_states(texts, batch_size=2)
    assert torch.allclose(states, torch.cat([gen.compression_states([t]) for t in texts]), atol=1e-5)


def test_instructions_are_joined_with_one_space(tiny_dirs) -> None:
    gen = tiny_gen(tiny_dirs)
    direct = gen.embed(["Generate a passage that best answers this question: Paris"])
    assert torch.allclose(gen.encode_queries(["Paris"]), direct, atol=1e-6)
    docs = gen.embed(["Summarize the following passage: Paris"])
    assert torch.allclose(gen.encode_documents(["Paris"]), docs, atol=1e-6)


def naive_greedy(gen, soft, steps):
    """Greedy decoding that re-runs the whole sequence each step (no KV cache)."""
    model = gen.backbone.model
    embeds, ids = soft, []
    eos = gen.tokenizer.eos_token_id
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(model(inputs_embeds=embeds).logits[0, -1].argmax())
            if nxt == eos:
                break
            ids.append(nxt)
            embeds = torch.cat([embeds, model.get_input_embeddings()(torch.tensor([[nxt]]))], dim=1)
    return gen.tokenizer.decode(ids, skip_special_tokens=True).strip()


def test_generate_with_kv_cache_matches_naive_decoding(tiny_dirs, family) -> None:
    gen = tiny_gen(tiny_dirs, family, num_thought=2, num_compress=4)
    states = gen.compression_states(TEXTS)
    out = gen.generate(states, max_new_tokens=12)
    assert out == gen.generate(TEXTS, max_new_tokens=12)
    for i in range(len(TEXTS)):
        assert out[i] == naive_greedy(gen, gen.soft_prompt(states[i : i + 1]), 12)


def test_generate_rejects_wrong_state_shape(tiny_dirs) -> None:
    gen = tiny_gen(tiny_dirs)
    with pytest.raises(WorkbenchError, match="compression states must have shape"):
        gen.generate(torch.zeros(2, 3, 64))


def test_answer_is_batch_invariant(tiny_dirs, family) -> None:
    gen = tiny_gen(tiny_dirs, family)
    prompts = ["hi", "How do I bake bread at home with flour and water?"]
    batched = gen.answer(prompts, max_new_tokens=10)
    assert family == "llama" or all(batched)  # the random tiny Llama ends at once; the others speak
    assert batched == [gen.answer([p], max_new_tokens=10)[0] for p in prompts]


def test_llm_pooling_baselines(tiny_dirs) -> None:
    gen = tiny_gen(tiny_dirs)
    mean = gen.llm_embed(TEXTS, batch_size=3)
    assert mean.shape == (3, 64)
    assert torch.allclose(mean, torch.cat([gen.llm_embed([t]) for t in TEXTS]), atol=1e-5)
    last = gen.llm_embed(TEXTS, pooling="last")
    assert not torch.allclose(mean, last)
    with pytest.raises(WorkbenchError):
        gen.llm_embed(TEXTS, pooling="max")


def test_self_teacher_is_mean_pooled_backbone(tiny_dirs) -> None:
    gen = tiny_gen(tiny_dirs, teacher="self", teacher_dim=64)
    teacher = gen.load_teacher()
    assert teacher.dim == 64
    assert torch.allclose(teacher.encode(TEXTS), gen.llm_embed(TEXTS), atol=1e-6)


def test_untrained_init_is_seeded(tiny_dirs) -> None:
    a, b = tiny_gen(tiny_dirs, seed=3), tiny_gen(tiny_dirs, seed=3)
    assert torch.equal(a.special, b.special) and torch.equal(a.alignment.weight, b.alignment.weight)
    w = a.reconstruction.weight
    assert torch.equal(w, w[0, 0] * torch.eye(64)) and w[0, 0] > 0  # a scaled identity
    emb = a.backbone.model.get_input_embeddings().weight
    soft = a.soft_prompt(a.compression_states(TEXTS))
    ratio = soft.norm(dim=-1).mean() / emb.norm(dim=-1).mean()
    assert 0.2 < ratio < 5  # soft prompts start on the scale of token embeddings


def live_tensors() -> int:
    import gc
    import warnings

    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance on torch's deprecated module aliases warns
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def test_repeated_traces_with_gradients_do_not_leak(tiny_dirs) -> None:
    gen = tiny_gen(tiny_dirs, num_thought=2, num_compress=3)
    optimiser = torch.optim.AdamW(gen.trainable_parameters(), lr=1e-3)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        out = gen(TEXTS)
        (out["embedding"].pow(2).mean() + out["soft_prompt"].pow(2).mean()).backward()
        optimiser.step()

    for _ in range(5):
        step()
    before = live_tensors()
    for _ in range(30):
        step()
    assert live_tensors() <= before


def test_search_ranks_documents_by_cosine(tiny_dirs) -> None:
    from workbench.core.config import DOCUMENT_INSTRUCTION, QUERY_INSTRUCTION
    from workbench.core.search import search

    gen = tiny_gen(tiny_dirs)
    docs = ["Bread needs flour.", "Paris is in France.", "Two is prime.", "Seine river."]
    ranking = search(gen, TEXTS[:2], docs, top_k=3)
    sims = gen.similarity(gen.encode_queries(TEXTS[:2]), gen.encode_documents(docs))
    assert ranking.query_embeddings.shape == (2, 16) and ranking.document_embeddings.shape == (4, 16)
    for i, hits in enumerate(ranking.hits):
        assert [h["rank"] for h in hits] == [1, 2, 3]
        best = sims[i].argsort(descending=True)[:3].tolist()
        assert [h["index"] for h in hits] == best
        assert [h["text"] for h in hits] == [docs[j] for j in best]
        assert hits[0]["score"] == pytest.approx(float(sims[i, best[0]]), abs=1e-5)
    out = ranking.to_dict()
    assert out["dim"] == 16 and out["trained"] is False and out["queries"][1]["query"] == TEXTS[1]
    assert set(ranking.tensors()) == {"queries", "documents"}
    # the instructions default to the paper's and None means raw text
    assert torch.allclose(ranking.query_embeddings, gen.embed(TEXTS[:2], instruction=QUERY_INSTRUCTION))
    assert torch.allclose(ranking.document_embeddings, gen.embed(docs, instruction=DOCUMENT_INSTRUCTION))
    raw = search(gen, TEXTS[:1], docs, instruction=None, document_instruction=None)
    assert torch.allclose(raw.query_embeddings, gen.embed(TEXTS[:1]), atol=1e-5)


def test_search_without_documents_ranks_the_queries(tiny_dirs) -> None:
    from workbench.core.search import search

    gen = tiny_gen(tiny_dirs)
    ranking = search(gen, TEXTS, top_k=10)
    assert ranking.document_embeddings is None and set(ranking.tensors()) == {"queries"}
    for i, hits in enumerate(ranking.hits):
        assert len(hits) == len(TEXTS) and hits[0]["index"] == i  # each query is nearest to itself
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(WorkbenchError, match="empty"):
        search(gen, ["fine", " "])
