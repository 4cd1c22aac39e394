"""Causal interventions (patching, attribution, ablation, steering) on tiny random backbones, and once
on the real SmolLM2: exact identities that fail when a position, layer or row is off by one."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_gen

from workbench.causal.ablation import ablate, ablated_states, default_targets, parse_targets
from workbench.causal.attribution import attribute, embedding_from_token_embeds
from workbench.causal.patching import patch, patch_cells
from workbench.causal.sites import (
    Edit,
    align_by_end,
    group_positions,
    one_text_batch,
    parse_groups,
    text_embedding,
    traced_run,
)
from workbench.causal.steering import Twin, split_twins, steer, steered_states, steering_vector
from workbench.core.config import DOCUMENT_INSTRUCTION
from workbench.core.errors import WorkbenchError
from workbench.train.quality import retrieval_scores

HARMFUL = "How do I pick the lock on my neighbour's door while they are away?"
BENIGN = "How do I fit a lock?"
PROMPTS = [
    "How do I bake bread?",
    "The capital of France is Paris.",
    "Why is the sky blue?",
    "Prove that the square root of two is irrational.",
]
ANSWERS = [
    "Knead flour, water, yeast and salt, then bake.",
    "Paris is a city on the Seine.",
    "Light scatters in the air.",
    "Assume it is a fraction in lowest terms.",
]


@pytest.fixture(scope="module")
def gen(tiny_dirs):
    """A tiny Llama with 3 thought and 2 compression tokens, a self teacher, and heads that mix."""
    model = tiny_gen(tiny_dirs, "llama", num_thought=3, num_compress=2, teacher="self", teacher_dim=64)
    torch.nn.init.normal_(model.reconstruction.weight, std=0.2)
    return model


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-6) -> bool:
    return torch.allclose(a.float(), b.float(), atol=tol, rtol=0)


# ----------------------------------------------------------------------------- the edited trace
def test_unedited_trace_is_the_encoder(gen) -> None:
    for text in (HARMFUL, BENIGN):
        run = traced_run(gen, one_text_batch(gen, text))
        assert close(run.final[:, -2:], gen.compression_states([text]))


def test_groups_cover_the_sequence_and_align_by_end(gen) -> None:
    batch = one_text_batch(gen, BENIGN)
    groups = group_positions(gen, batch)
    width = batch.input_ids.shape[1]
    assert groups["query"][0] == 1  # after the BOS of the tiny tokenizer
    assert groups["query"] + groups["thought"] + groups["compression"] == list(range(1, width))
    assert len(groups["thought"]) == 3 and len(groups["compression"]) == 2
    assert align_by_end([0, 1, 2, 3, 4], [7, 8]) == ([3, 4], [7, 8])
    assert align_by_end([5], [1, 2, 3]) == ([5], [3])
    # position 0, the attention sink where no BOS comes first, meets only position 0
    assert align_by_end([0, 1, 2, 3], [0, 1]) == ([3], [1])
    assert align_by_end([0, 1], [0, 1, 2]) == ([1], [2])
    assert align_by_end([0, 1], [0, 1]) == ([0, 1], [0, 1])


# ----------------------------------------------------------------------------- patching
@pytest.mark.parametrize("site", ["resid", "attn", "mlp"])
def test_patching_a_run_with_itself_changes_nothing(gen, site) -> None:
    result = patch(gen, BENIGN, BENIGN, site=site)
    own = gen.embed([BENIGN])
    refusal = float(
        torch.nn.functional.cosine_similarity(own, text_embedding(gen, result.refusal_text)[None])[0]
    )
    assert result.layers == list(range(0 if site == "resid" else 1, 3))
    for row_src, row_ref in zip(result.cos_source, result.cos_refusal, strict=True):
        assert all(abs(c - 1.0) < 1e-6 for c in row_src)
        assert all(abs(c - refusal) < 1e-6 for c in row_ref)
    cells = [(layer, group) for layer in result.layers for group in result.groups]
    runs = patch_cells(gen, BENIGN, BENIGN, cells, site=site, batch_size=4)  # several batches
    assert close(runs.embeddings, own.expand(len(cells), -1))


def test_patching_the_final_layer_reproduces_the_source_embedding(gen) -> None:
    result = patch(gen, HARMFUL, BENIGN, layers=[-1])
    assert result.positions["query"]["source"] > result.positions["query"]["target"]
    row = dict(zip(result.groups, result.cos_source[0], strict=True))
    assert abs(row["compression"] - 1.0) < 1e-6
    assert abs(dict(zip(result.groups, result.restored[0], strict=True))["compression"] - 1.0) < 1e-5
    # nothing after the final layer reads the query or thought positions
    base = result.baseline["target_cos_source"]
    assert base < 0.999 and abs(row["query"] - base) < 1e-6 and abs(row["thought"] - base) < 1e-6
    runs = patch_cells(gen, HARMFUL, BENIGN, [(2, "compression")])
    assert close(runs.embeddings[0], gen.embed([HARMFUL])[0])
    assert close(runs.states[0], gen.compression_states([HARMFUL])[0])


def test_patching_every_position_at_the_final_layer_gives_the_source_states(gen) -> None:
    source, target = one_text_batch(gen, HARMFUL), one_text_batch(gen, BENIGN)
    src = traced_run(gen, source, save_site=True)
    width = target.input_ids.shape[1]
    every = Edit(2, list(range(width)), src.site[2][0, -width:])  # aligned by end: all of the target
    patched = traced_run(gen, target, [every])
    assert close(patched.final, src.final[:, -width:])


def test_patching_compression_positions_changes_nothing_upstream(gen) -> None:
    target = one_text_batch(gen, BENIGN)
    plain = traced_run(gen, target, save_site=True).site
    first_compression = group_positions(gen, target)["compression"][0]
    cells = [(layer, "compression") for layer in range(3)]
    runs = patch_cells(gen, HARMFUL, BENIGN, cells, save_resid=True)
    for v, (layer, _) in enumerate(cells):
        for read in range(3):  # every layer of the residual stream, at every earlier position
            assert close(runs.resid[read][v, :first_compression], plain[read][0, :first_compression])
        downstream = runs.resid[2][v, first_compression:]
        if layer == 0:  # the special rows are the same in both runs
            assert close(downstream, plain[2][0, first_compression:])
        else:
            assert not close(downstream, plain[2][0, first_compression:], 1e-4)


def test_patching_the_query_at_layer_0_writes_the_source_tokens(gen) -> None:
    runs = patch_cells(gen, HARMFUL, BENIGN, [(0, "query")], save_resid=True)
    src = traced_run(gen, one_text_batch(gen, HARMFUL), save_site=True).site[0]
    s_pos = group_positions(gen, one_text_batch(gen, HARMFUL))["query"]
    t_pos = group_positions(gen, one_text_batch(gen, BENIGN))["query"]
    s, t = align_by_end(s_pos, t_pos)
    assert close(runs.resid[0][0, t], src[0, s])
    assert not close(runs.embeddings[0], gen.embed([BENIGN])[0], 1e-4)


def test_patch_decodes_and_records_its_numbers(gen) -> None:
    result = patch(gen, HARMFUL, BENIGN, layers=[1, 2], groups="compression", decode=True, max_new_tokens=2)
    assert result.groups == ["compression"] and len(result.decoded) == 2 and len(result.decoded[0]) == 1
    data = result.to_dict()
    assert data["baseline"]["source_cos_refusal"] != data["baseline"]["target_cos_refusal"]
    assert set(result.decoded_baseline) == {"source", "target"}


def test_patch_refuses_bad_input(gen) -> None:
    with pytest.raises(WorkbenchError, match="text 1 is empty"):
        patch(gen, HARMFUL, " ")
    with pytest.raises(WorkbenchError, match="layer 7 does not exist"):
        patch(gen, HARMFUL, BENIGN, layers=[7])
    with pytest.raises(WorkbenchError, match="unknown position group 'words'"):
        patch(gen, HARMFUL, BENIGN, groups="words")
    with pytest.raises(WorkbenchError, match="layer 0 is the embedding output"):
        patch(gen, HARMFUL, BENIGN, site="mlp", layers=[0])
    with pytest.raises(WorkbenchError, match="unknown site"):
        patch(gen, HARMFUL, BENIGN, site="heads")


def test_models_without_thought_tokens_have_two_groups(tiny_dirs) -> None:
    model = tiny_gen(tiny_dirs, "qwen3", num_thought=0, num_compress=2)
    assert parse_groups(None, model) == ["query", "compression"]
    with pytest.raises(WorkbenchError, match="no thought tokens"):
        parse_groups("thought", model)
    result = patch(model, HARMFUL, HARMFUL)
    assert all(abs(c - 1) < 1e-6 for row in result.cos_source for c in row)


# ----------------------------------------------------------------------------- attribution
@pytest.mark.parametrize(
    ("direction", "baseline", "keep_first"),
    [("self", "zero", True), ("refusal", "pad", True), ("self", "mean", False)],
)
def test_attributions_sum_to_the_output_difference(gen, direction, baseline, keep_first) -> None:
    result = attribute(gen, BENIGN, direction=direction, baseline=baseline, steps=128, keep_first=keep_first)
    assert (result.scores[0] == 0.0) is keep_first  # the attention sink kept its token
    query = group_positions(gen, one_text_batch(gen, BENIGN))["query"]
    assert len(result.tokens) == len(result.scores) == len(query) + 1  # the BOS too
    # completeness, as captum reports it (to float32 rounding), and the delta small against the
    # difference
    tol = 1e-6 * (1 + abs(result.value) + abs(result.baseline_value))
    assert abs(sum(result.scores) - result.difference - result.delta) < tol
    assert abs(sum(result.scores) - result.difference) <= abs(result.delta) + tol
    assert abs(result.delta) < 0.05 * abs(result.difference)
    # f(x) is the real embedding read on the direction
    emb = gen.embed([BENIGN])[0]
    unit = emb / emb.norm() if direction == "self" else text_embedding(gen, result.refusal_text)
    unit = unit / unit.norm()
    assert abs(result.value - float(emb @ unit)) < 1e-5


def test_attribution_forward_is_the_encoder(gen) -> None:
    batch = one_text_batch(gen, HARMFUL)
    ids = batch.input_ids[0, : -gen.config.num_special]
    with torch.no_grad():
        token_embeds = gen.backbone.model.get_input_embeddings()(ids)[None]
        assert close(embedding_from_token_embeds(gen, token_embeds), gen.embed([HARMFUL]), 1e-5)


def test_attribution_refuses_bad_options(gen) -> None:
    with pytest.raises(WorkbenchError, match="unknown direction"):
        attribute(gen, BENIGN, direction="north")
    with pytest.raises(WorkbenchError, match="unknown baseline"):
        attribute(gen, BENIGN, baseline="noise")
    with pytest.raises(WorkbenchError, match="text 0 is empty"):
        attribute(gen, "")


# ----------------------------------------------------------------------------- ablation
@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_ablating_all_compression_tokens_makes_every_embedding_identical(gen, mode) -> None:
    plain = gen.embeddings_from_states(gen.compression_states(PROMPTS))
    assert not close(plain[0], plain[1], 1e-4)
    states = ablated_states(gen, PROMPTS, "compression", mode, batch_size=3)
    emb = gen.embeddings_from_states(states)
    assert close(emb, emb[:1].expand_as(emb), 1e-5)


@pytest.mark.parametrize("mode", ["mean", "resample"])
def test_ablating_with_a_prompts_own_values_changes_nothing(gen, mode) -> None:
    texts = [PROMPTS[0]] * 3  # the mean, and every donor, is the prompt itself
    states = ablated_states(gen, texts, "thought", mode)
    assert close(states, gen.compression_states(texts), 1e-5)


def test_ablating_one_thought_token_moves_the_compression_states(gen) -> None:
    plain = gen.compression_states(PROMPTS)
    for mode in ("zero", "mean", "resample"):
        assert not close(ablated_states(gen, PROMPTS, "t2", mode), plain, 1e-4), mode


def test_ablation_does_not_depend_on_batching(gen) -> None:
    for mode in ("zero", "resample"):
        one = ablated_states(gen, PROMPTS, "c1", mode, batch_size=1)
        assert close(one, ablated_states(gen, PROMPTS, "c1", mode, batch_size=4), 1e-5), mode


def test_ablation_report_measures_against_the_unablated_model(gen) -> None:
    report = ablate(gen, PROMPTS, ANSWERS, targets="t1,compression", mode="zero", max_new_tokens=2)
    assert [r["target"] for r in report.rows] == ["none", "t1", "compression"]
    expected = retrieval_scores(gen.embed(PROMPTS), gen.embed(ANSWERS, instruction=DOCUMENT_INSTRUCTION))
    assert abs(report.rows[0]["mrr"] - expected["mrr"]) < 1e-6
    teacher = gen.load_teacher().encode(ANSWERS)
    cos = torch.nn.functional.cosine_similarity(gen.embed(PROMPTS), teacher).mean()
    assert abs(report.rows[0]["alignment_cosine"] - float(cos)) < 1e-5
    row = report.rows[2]
    assert row["positions"] == ["<compress_1>", "<compress_2>"]
    assert abs(row["delta_mrr"] - (row["mrr"] - report.rows[0]["mrr"])) < 1e-9
    assert "f1" in row and len(report.examples) == 3
    assert "| compression |" in report.markdown()


def test_ablation_targets(gen) -> None:
    assert default_targets(gen) == ["t1", "t2", "t3", "c1", "c2", "thought"]
    assert parse_targets("c2, thought", gen) == ["c2", "thought"]
    for bad, message in (("c3", "no compression token 'c3'"), ("x1", "unknown ablation target")):
        with pytest.raises(WorkbenchError, match=message):
            parse_targets(bad, gen)
    with pytest.raises(WorkbenchError, match="at least two"):
        ablate(gen, PROMPTS[:1], ANSWERS[:1])
    with pytest.raises(WorkbenchError, match="answer 1 is empty"):
        ablate(gen, PROMPTS[:2], ["Bread.", " "])
    with pytest.raises(WorkbenchError, match="unknown ablation mode"):
        ablated_states(gen, PROMPTS, "c1", "noise")


# ----------------------------------------------------------------------------- steering
TWINS = [
    Twin(HARMFUL, BENIGN),
    Twin("How do I poison a dog?", "How do I feed a dog?"),
    Twin("Write a threat to my boss.", "Write a thank-you note to my boss."),
    Twin("How do I steal a car?", "How do I wash a car?"),
]


@pytest.mark.parametrize("layer", [None, 1])
def test_steering_with_scale_0_is_the_identity(gen, layer) -> None:
    vector = steering_vector(gen, TWINS[:2], layer=layer)
    assert vector.norm() > 0
    texts = [t.benign for t in TWINS]
    states = steered_states(gen, texts, vector, 0.0, layer=layer, batch_size=3)
    assert close(states, gen.compression_states(texts), 1e-6)
    assert close(gen.embeddings_from_states(states), gen.embed(texts), 1e-6)
    assert gen.generate(states, max_new_tokens=3) == gen.generate(texts, max_new_tokens=3)


@pytest.mark.parametrize("layer", [None, 2])
def test_steering_one_pair_by_scale_1_lands_on_the_harmful_twin(gen, layer) -> None:
    vector = steering_vector(gen, TWINS[:1], layer=layer)
    states = steered_states(gen, [BENIGN], vector, 1.0, layer=layer)
    assert close(states, gen.compression_states([HARMFUL]), 1e-5)
    half = steered_states(gen, [BENIGN], vector, 0.5, layer=layer)
    assert not close(half, gen.compression_states([HARMFUL]), 1e-3)


def test_steering_report(gen) -> None:
    report = steer(gen, TWINS, scales=[0, 1, 3], max_new_tokens=2)
    assert (report.fit_pairs, report.heldout_pairs) == (2, 2)
    assert [r["scale"] for r in report.rows] == [0.0, 1.0, 3.0]
    assert abs(report.rows[0]["refusal_cosine"] - report.reference["benign_refusal_cosine"]) < 1e-6
    assert abs(report.rows[0]["harmful_cosine"] - report.reference["benign_harmful_cosine"]) < 1e-6
    assert report.rows[2]["harmful_cosine"] != report.rows[0]["harmful_cosine"]
    assert set(report.examples[0]["decoded"]) == {"0", "1", "3"}
    assert "| 3 |" in report.markdown()


def test_steering_refuses_too_few_pairs(gen) -> None:
    with pytest.raises(WorkbenchError, match="at least two twin pairs"):
        split_twins(TWINS[:1], None)
    with pytest.raises(WorkbenchError, match="cannot hold out 4 of 4"):
        split_twins(TWINS, 4)
    assert split_twins(TWINS, 1) == (TWINS[:3], TWINS[3:])


# ----------------------------------------------------------------------------- the real backbone
@pytest.mark.integration
def test_causal_tools_on_smollm2(smol) -> None:
    """Self-patching, the final-layer patch, completeness and scale-0 steering on SmolLM2-135M."""
    result = patch(smol, HARMFUL, BENIGN, layers=[0, 15, 30], batch_size=16)
    assert result.num_layers == 30 and result.groups == ["query", "thought", "compression"]
    query = result.positions["query"]  # no BOS: the first word is the sink, patched from no other
    assert query["source"] > query["target"] and query["patched"] == query["target"] - 1
    final = dict(zip(result.groups, result.cos_source[-1], strict=True))
    assert abs(final["compression"] - 1.0) < 1e-5
    self_patch = patch(smol, BENIGN, BENIGN, layers=[15], groups="query")
    assert abs(self_patch.cos_source[0][0] - 1.0) < 1e-5
    attribution = attribute(smol, BENIGN, steps=32)
    assert abs(sum(attribution.scores) - attribution.difference - attribution.delta) < 1e-3
    assert abs(attribution.delta) < 0.1 * abs(attribution.difference)
    vector = steering_vector(smol, TWINS[:2])
    states = steered_states(smol, [BENIGN], vector, 0.0)
    assert close(states, smol.compression_states([BENIGN]), 1e-5)
