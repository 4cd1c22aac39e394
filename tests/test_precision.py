"""Reduced-precision inference: ``load(dtype=..., device=...)``, ``auto``, and float32 trained weights."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F

import workbench
from workbench.cli import main
from workbench.core.config import native_bf16, resolve_device, resolve_dtype
from workbench.core.errors import WorkbenchError
from workbench.core.tracing import TracedBackbone

TEXTS = [
    "How do I bake bread at home?",
    "The capital of France is Paris.",
    "Prove that the square root of two is irrational, step by step please.",
    "Plants turn light into sugar.",
]


def _cpu_bf16(monkeypatch, avx512_bf16: bool, amx: bool = False) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)


def test_auto_is_bfloat16_only_where_the_cpu_runs_it_natively(monkeypatch) -> None:
    _cpu_bf16(monkeypatch, avx512_bf16=False)
    assert native_bf16("cpu") is None
    dtype, why = resolve_dtype("auto", "cpu")
    assert dtype == "float32" and "no native bfloat16" in why
    _cpu_bf16(monkeypatch, avx512_bf16=True)
    assert resolve_dtype("auto", "cpu") == ("bfloat16", "auto: the CPU has AVX-512 BF16")
    _cpu_bf16(monkeypatch, avx512_bf16=False, amx=True)
    assert resolve_dtype("auto", "cpu")[0] == "bfloat16"
    # an explicit dtype is taken as given, whatever the hardware
    assert resolve_dtype("bfloat16", "cpu") == ("bfloat16", "asked for")
    assert resolve_dtype("float32", "cpu") == ("float32", "asked for")


def test_bad_dtype_and_device_are_one_line_errors(monkeypatch) -> None:
    with pytest.raises(WorkbenchError, match="unknown dtype 'half'") as err:
        resolve_dtype("half")
    assert "auto" in str(err.value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device(None) == "cpu"
    with pytest.raises(WorkbenchError, match="torch sees no GPU"):
        resolve_device("cuda")
    with pytest.raises(WorkbenchError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


def test_bfloat16_backbone_keeps_float32_weights_and_matches_float32(tiny_dirs, tmp_path) -> None:
    folder = str(tiny_dirs["qwen2"])
    full = workbench.load(folder, untrained=True, teacher="self")
    with torch.no_grad():  # trained-looking weights: not the seeded start, not bf16-representable
        full.special.add_(torch.randn_like(full.special) * 1e-3)
    ckpt = full.save(tmp_path / "ckpt")
    full = workbench.load(ckpt)
    half = workbench.load(ckpt, dtype="bfloat16")
    assert half.precision == {"dtype": "bfloat16", "asked": "bfloat16", "why": "asked for", "device": "cpu"}
    assert full.precision["dtype"] == "float32"
    assert next(half.backbone.model.parameters()).dtype == torch.bfloat16
    for name, value in half.state_dict().items():  # the trained weights are not rounded
        assert value.dtype == torch.float32 and torch.equal(value, full.state_dict()[name]), name
    e32, e16 = full.embed(TEXTS), half.embed(TEXTS)
    assert e16.dtype == torch.float32 and e16.shape == e32.shape
    assert F.cosine_similarity(e16, e32).min() > 0.99
    states = half.compression_states(TEXTS)
    assert states.dtype == torch.float32 and torch.isfinite(states).all()
    assert all(isinstance(t, str) for t in half.generate(TEXTS[:2], max_new_tokens=4))
    assert all(isinstance(t, str) for t in half.answer(TEXTS[:2], max_new_tokens=4))
    pooled16, pooled32 = half.llm_embed(TEXTS), full.llm_embed(TEXTS)
    assert F.cosine_similarity(pooled16, pooled32).min() > 0.99
    reading = half.lens(TEXTS[:1], top_k=3, generate=False)[0]
    assert len(reading.positions) == half.config.num_compress and all(reading.union)


def test_auto_dtype_recorded_in_run_metadata(tiny_dirs, monkeypatch) -> None:
    from workbench.eval.encoders import Encoders, run_metadata

    _cpu_bf16(monkeypatch, avx512_bf16=False)
    gen = workbench.load(str(tiny_dirs["llama"]), untrained=True, dtype="auto")
    meta = run_metadata(gen, "tiny", None, Encoders(gen))
    assert meta["dtype"] == "float32"
    assert meta["precision"]["asked"] == "auto" and "no native bfloat16" in meta["precision"]["why"]


def test_cli_dtype_option(capsys, tiny_dirs) -> None:
    model = str(tiny_dirs["llama"])
    code = main(["encode", "Where is Paris?", "--model", model, "--json", "--dtype", "bfloat16"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["dim"] == 384
    code = main(["encode", "Where is Paris?", "--model", model, "--dtype", "half"])
    err = capsys.readouterr().err
    assert code != 0 and "unknown dtype 'half'" in err and "auto" in err


def test_training_a_bfloat16_backbone_keeps_float32_weights(tiny_dirs, tmp_path) -> None:
    """dtype bfloat16 without autocast: the float32 soft prompts enter the decoder in its dtype."""
    from safetensors.torch import load_file

    from workbench.train.config import TrainConfig
    from workbench.train.trainer import LOG_FILE, train

    responses = tmp_path / "r.jsonl"
    responses.write_text(
        "".join(json.dumps({"prompt": t, "response": f"An answer to {t}"}) + "\n" for t in TEXTS)
    )
    out = train(
        TrainConfig(
            model=str(tiny_dirs["llama"]),
            teacher="self",
            responses=str(responses),
            out=str(tmp_path / "run"),
            num_thought=2,
            num_compress=3,
            max_steps=3,
            batch_size=2,
            save_every=3,
            warmup_steps=1,
            max_query_length=32,
            max_response_length=8,
            lr=1e-2,
            dtype="bfloat16",
        ),
        show_progress=False,
    )
    log = [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]
    assert len(log) == 3 and all(r["recon_loss"] == r["recon_loss"] for r in log)  # no NaN
    saved = load_file(str(out / "llm2vec_gen_weights.safetensors"))
    assert all(v.dtype == torch.float32 for v in saved.values())


def test_output_head_gets_a_contiguous_input_with_the_same_logits(tiny_dirs) -> None:
    """``logits_to_keep`` hands the head a strided slice; the wrapper's pre-hook makes it contiguous
    (torch's CPU bfloat16 product with a strided input is hundreds of times slower), once per module."""
    gen = workbench.load(str(tiny_dirs["qwen2"]), untrained=True, teacher="self")
    head = gen.backbone.submodule(gen.backbone.arch.lm_head)
    seen: list[bool] = []
    probe = head.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
    states = torch.randn(3, 7, head.in_features)
    strided = states[:, -2:, :]
    assert not strided.is_contiguous()
    with torch.no_grad():
        out = head(strided)
        gen.embed(TEXTS[:2])  # encoder pass: logits_to_keep=1 slices the final states
    probe.remove()
    assert seen and all(seen)
    torch.testing.assert_close(out, F.linear(strided.contiguous(), head.weight, head.bias), rtol=0, atol=0)
    # a second wrapper around the same model does not stack another hook
    before = len(head._forward_pre_hooks)

    TracedBackbone(gen.backbone)
    assert len(head._forward_pre_hooks) == before
