"""The TransformerLens backend of the logit lens reads the same residual stream as the nnsight path."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import tiny_gen

from workbench.core.errors import WorkbenchError
from workbench.lens.logit import LensConfig, logit_lens
from workbench.lens.tl_backend import residual_stream_tl, tl_bridge

pytest.importorskip("transformer_lens")

TEXTS = ["The capital of France is Paris, a city on the Seine.", "How do I bake bread?"]


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_residuals_match_nnsight(tiny_dirs, family):
    gen = tiny_gen(tiny_dirs, family)
    keep = gen.config.num_special
    tl = residual_stream_tl(gen, TEXTS, keep_last=keep)
    with torch.no_grad():
        ref = gen.traced.residual_stream(gen.encoder_batch(TEXTS), gen.special, keep).float().cpu()
    assert tl.dtype == torch.float32 and tl.device.type == "cpu"
    assert tl.shape == ref.shape == (gen.backbone.info.num_layers + 1, 2, keep, gen.backbone.info.hidden_size)
    torch.testing.assert_close(tl, ref, atol=1e-4, rtol=1e-4)
    # one text at a time gives the same rows as the padded batch
    alone = residual_stream_tl(gen, TEXTS[1:], keep_last=keep)
    torch.testing.assert_close(alone[:, 0], tl[:, 1], atol=1e-4, rtol=1e-4)


def test_boot_leaves_backbone_and_tokenizer_alone(tiny_dirs):
    gen = tiny_gen(tiny_dirs, "qwen2")
    model, tok = gen.backbone.model, gen.tokenizer
    types = [type(m) for m in model.modules()]
    keys = set(gen.state_dict())
    attn = model.config._attn_implementation
    state = (tok.padding_side, tok.bos_token, tok.pad_token, len(tok))
    bridge = tl_bridge(gen)
    assert tl_bridge(gen) is bridge  # booted once
    assert [type(m) for m in model.modules()] == types
    assert model.config._attn_implementation == attn
    assert (tok.padding_side, tok.bos_token, tok.pad_token, len(tok)) == state
    # the bridge shares the weights: no copy
    assert bridge.original_model.get_input_embeddings().weight is model.get_input_embeddings().weight
    assert set(gen.state_dict()) == keys  # not a submodule: never trained or saved


def test_logit_lens_backends_agree(tiny_dirs):
    gen = tiny_gen(tiny_dirs, "llama")
    nn_read = logit_lens(gen, TEXTS, LensConfig(layers=[-1]))
    tl_read = logit_lens(gen, TEXTS, LensConfig(backend="transformer-lens", layers=[-1]))
    for a, b in zip(nn_read, tl_read, strict=True):
        assert a.ids == b.ids
        assert a.union == b.union
        torch.testing.assert_close(torch.tensor(a.probs), torch.tensor(b.probs), atol=1e-4, rtol=1e-4)


def test_missing_transformer_lens_is_a_clear_error(tiny_dirs, monkeypatch):
    gen = tiny_gen(tiny_dirs, "llama")
    monkeypatch.setitem(sys.modules, "transformer_lens.model_bridge", None)
    with pytest.raises(WorkbenchError, match="needs TransformerLens") as err:
        residual_stream_tl(gen, TEXTS, keep_last=gen.config.num_compress)
    assert "lens-tl" in str(err.value.fix)


@pytest.mark.integration
def test_smollm2_final_logits_agree(smol):
    keep = smol.config.num_compress
    texts = ["where do polar bears live and what's their habitat", "How do I bake bread?"]
    tl = residual_stream_tl(smol, texts, keep_last=keep)
    with torch.no_grad():
        ref = smol.traced.residual_stream(smol.encoder_batch(texts), smol.special, keep).float().cpu()
        backbone = smol.backbone
        norm = backbone.submodule(backbone.arch.final_norm)
        head = backbone.submodule(backbone.arch.lm_head)
        logits_tl, logits_nn = head(norm(tl[-1])), head(norm(ref[-1]))
    torch.testing.assert_close(logits_tl, logits_nn, atol=1e-3, rtol=1e-4)
    assert torch.equal(logits_tl.topk(5).indices, logits_nn.topk(5).indices)
