"""Remote execution is opt-in: asking for it without a key or a network is a clear one-line error."""

from __future__ import annotations

import pytest

from workbench.core.errors import WorkbenchError
from workbench.lens.remote import check_remote, connect, ndif_api_key


@pytest.fixture
def no_key(monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    from nnsight import CONFIG

    monkeypatch.setattr(CONFIG.API, "APIKEY", None)


def test_no_key_is_a_clear_error(no_key) -> None:
    assert ndif_api_key() is None
    with pytest.raises(WorkbenchError, match=r"needs an API key.*Fix: get a key") as err:
        connect("Qwen/Qwen3-8B")
    assert "\n" not in str(err.value) and "NDIF_API_KEY" in str(err.value)


def test_key_but_offline_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert ndif_api_key() == "test-key"
    with pytest.raises(WorkbenchError, match="needs the network"):
        check_remote("Qwen/Qwen3-8B")


def test_local_backbones_cannot_go_remote(monkeypatch, tiny_dirs) -> None:
    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    with pytest.raises(WorkbenchError, match="HuggingFaceTB/SmolLM2-135M-Instruct"):
        check_remote("smollm2-135m")
    with pytest.raises(WorkbenchError, match="hub id deployed on NDIF"):
        check_remote(str(tiny_dirs["llama"]))


def test_remote_lens_trace_matches_the_local_lens(tiny_dirs) -> None:
    """nnsight's in-process dry run of the remote path (serialize, hide local modules, run)."""
    import torch
    from conftest import tiny_gen
    from nnsight.modeling.transformers import TransformersModel

    from workbench.core.backbone import find_architecture
    from workbench.lens.remote import RemoteBackbone, remote_lens_topk

    gen = tiny_gen(tiny_dirs, "qwen3", num_thought=1, num_compress=2)
    batch = gen.encoder_batch(["hello world", "bread"])
    lm = TransformersModel(str(tiny_dirs["qwen3"]), task="text-generation", dispatch=True)
    model = RemoteBackbone("tiny", lm, find_architecture(lm._module), 2)
    probs, ids = remote_lens_topk(model, batch, gen.special.detach(), 3, [0, 1, 2], 4, remote="local")
    resid = gen.traced.residual_stream(batch, gen.special.detach(), 3)
    norm = gen.backbone.submodule(gen.backbone.arch.final_norm)
    head = gen.backbone.submodule(gen.backbone.arch.lm_head)
    with torch.no_grad():
        top = head(norm(resid)).float().softmax(-1).topk(4, dim=-1)
    assert probs.shape == (3, 2, 3, 4)
    assert torch.allclose(probs, top.values, atol=1e-6) and torch.equal(ids, top.indices)


def test_open_remote_reads_like_the_local_lens(tiny_dirs, tmp_path) -> None:
    """An exported checkpoint read through the remote path (dry run) gives the local lens's tokens."""
    import torch
    from conftest import tiny_gen
    from nnsight.modeling.transformers import TransformersModel

    import workbench
    from workbench.core.backbone import find_architecture
    from workbench.lens.logit import LensConfig, logit_lens
    from workbench.lens.remote import RemoteBackbone, open_remote
    from workbench.store.official import export_official

    gen = tiny_gen(tiny_dirs, "llama", num_thought=2, num_compress=3)
    out = export_official(gen, tmp_path / "official")
    lm = TransformersModel(str(tiny_dirs["llama"]), task="text-generation", dispatch=True)
    lens = open_remote(
        str(out), backbone=RemoteBackbone("tiny", lm, find_architecture(lm._module), 2), mode="local"
    )
    texts = ["where do polar bears live?", "How do I bake bread?", "x"]
    probs, ids = lens.read(texts, [0, 2], 4, thought=True, batch_size=2)
    local = logit_lens(workbench.load(out), texts, LensConfig(top_k=4, layers=[0, 2], thought=True))
    assert ids.shape == (2, 3, 5, 4)
    for b, reading in enumerate(local):
        assert ids[:, b].tolist() == reading.ids
        assert torch.allclose(probs[:, b], torch.tensor(reading.probs), atol=1e-5)
