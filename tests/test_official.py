"""Official llm2vec-gen layout: export, import, the file format the official package expects, zoo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_gen
from safetensors.torch import load_file, save_file

import workbench
from workbench.cli import main
from workbench.core.errors import WorkbenchError
from workbench.store.official import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    DELTA_KEY,
    ENC_DEC_CONFIG,
    ENCODER_DIR,
    HEAD_FILES,
    RUN_CONFIG,
    OfficialConfig,
    export_official,
    read_official,
)
from workbench.store.zoo import zoo

TEXTS = ["How do I bake bread?", "The capital of France is Paris.", "Prove that root two is irrational."]
# What llm2vec-gen 0.1.3 reads (models/modeling_encoder_decoder.py, models/__init__.py):
HEAD_CONFIG_KEYS = {"input_dim", "output_dim", "dtype", "size", "pooling_mode"}
RUN_CONFIG_KEYS = {"model_name_or_path", "torch_dtype", "special_tokens", "encoding_mode"}


def trained_gen(tiny_dirs: dict[str, Path], family: str = "llama", **config):
    gen = tiny_gen(tiny_dirs, family, **config)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in gen.parameters():
            p.copy_(torch.randn_like(p))
    gen.trained = True
    return gen


@pytest.fixture(scope="module")
def exported(tiny_dirs, tmp_path_factory) -> tuple[object, Path]:
    gen = trained_gen(tiny_dirs, num_thought=2, num_compress=3)
    return gen, export_official(gen, tmp_path_factory.mktemp("official") / "ckpt")


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_export_then_load_gives_identical_embeddings(tiny_dirs, tmp_path, family) -> None:
    gen = trained_gen(tiny_dirs, family, num_thought=1, num_compress=4)
    out = export_official(gen, tmp_path / "ckpt")
    back = workbench.load(out)
    assert isinstance(back.config, OfficialConfig)
    assert (back.config.num_thought, back.config.num_compress) == (1, 4)
    assert back.config.token_strings() == [f"<question{i}>" for i in range(1, 6)]
    assert back.trained and back.config.teacher == gen.config.teacher
    assert torch.equal(back.embed(TEXTS), gen.embed(TEXTS))
    assert torch.equal(back.compression_states(TEXTS), gen.compression_states(TEXTS))


def test_files_are_what_the_official_package_reads(exported) -> None:
    gen, out = exported
    n, hidden = 5, gen.backbone.info.hidden_size
    for name in (RUN_CONFIG, ENC_DEC_CONFIG, *HEAD_FILES.values(), "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, "config.json"):  # PeftModel + AutoConfig(subfolder)
        assert (out / ENCODER_DIR / name).is_file(), name
    import yaml

    run = yaml.safe_load((out / RUN_CONFIG).read_text())
    assert set(run) >= RUN_CONFIG_KEYS
    assert run["special_tokens"] == [f"<question{i}>" for i in range(1, n + 1)]
    assert json.loads((out / ENC_DEC_CONFIG).read_text()) == {
        "encoding_mode": "last_3_tokens",
        "save_decoder": False,
    }
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert tok_cfg["additional_special_tokens"] == run["special_tokens"]  # encode() appends these
    assert tok_cfg["padding_side"] == "left" and tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    added = {t["content"]: t["id"] for t in json.loads((out / "tokenizer.json").read_text())["added_tokens"]}
    ids = [added[s] for s in run["special_tokens"]]
    adapter = json.loads((out / ENCODER_DIR / ADAPTER_CONFIG).read_text())
    assert adapter["peft_type"] == "TRAINABLE_TOKENS" and adapter["token_indices"] == ids
    assert adapter["target_modules"] == "embed_tokens"
    assert ids == list(range(ids[0], ids[0] + n))  # fresh ids, covered by resize(len(tok))
    weights = load_file(str(out / ENCODER_DIR / ADAPTER_WEIGHTS))
    assert set(weights) == {DELTA_KEY} and DELTA_KEY == "base_model.model.embed_tokens.trainable_tokens_delta"
    assert torch.equal(weights[DELTA_KEY], gen.special.detach())
    for role, name in HEAD_FILES.items():
        data = torch.load(out / name, weights_only=True)
        assert set(data) == {"state_dict", "config"} and set(data["config"]) == HEAD_CONFIG_KEYS
        assert data["config"]["pooling_mode"] == "linear" and data["config"]["dtype"] == "torch.float32"
        layer = getattr(gen, role)
        assert set(data["state_dict"]) == {"projection.weight", "projection.bias"}
        assert torch.equal(data["state_dict"]["projection.weight"], layer.weight.detach())
        assert data["config"]["input_dim"] == hidden
        assert data["config"]["output_dim"] == layer.weight.shape[0]


def _official_style(src: Path, dst: Path, gen) -> None:
    """Rewrite an export the way the official trainer writes it: ``key: value`` lines with ``None``,
    the full resized embedding beside the delta, and rows stored in a shuffled index order."""
    import shutil

    shutil.copytree(src, dst)
    run = {
        "model_name_or_path": str(gen.backbone.info.name),
        "pretrained_teacher_path": None,
        "tokenizer_padding_side": "left",
        "torch_dtype": "float32",
        "special_tokens": [f"<question{i}>" for i in range(1, 6)],
        "max_input_length": 64,
        "encoding_mode": "last_3_tokens",
    }
    (dst / RUN_CONFIG).write_text("".join(f"{k}: {v}\n" for k, v in run.items()) + "\n")
    cfg = json.loads((dst / ENCODER_DIR / ADAPTER_CONFIG).read_text())
    ids = cfg["token_indices"]
    order = [2, 0, 4, 1, 3]
    cfg["token_indices"] = [ids[i] for i in order]
    (dst / ENCODER_DIR / ADAPTER_CONFIG).write_text(json.dumps(cfg))
    rows = gen.special.detach()
    full = torch.randn(ids[-1] + 1, rows.shape[1])
    save_file(
        {DELTA_KEY: rows[order].contiguous(), "base_model.model.embed_tokens.base_layer.weight": full},
        str(dst / ENCODER_DIR / ADAPTER_WEIGHTS),
    )


def test_official_style_folder_maps_rows_by_token_id(exported, tmp_path) -> None:
    gen, out = exported
    _official_style(out, tmp_path / "ckpt", gen)
    ck = read_official(tmp_path / "ckpt")
    assert ck.teacher == "official" and ck.num_thought == 2 and ck.max_length == 64
    assert torch.equal(ck.tensors["special"], gen.special.detach())
    back = workbench.load(tmp_path / "ckpt")
    assert torch.equal(back.embed(TEXTS), gen.embed(TEXTS))


class Marker:
    """A custom object in a head file: a full unpickler would run its __reduce__ (touching a file)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_head_that_needs_a_full_unpickler_is_refused(exported, tmp_path) -> None:
    import shutil

    _, out = exported
    bad = tmp_path / "ckpt"
    shutil.copytree(out, bad)
    data = torch.load(bad / "alignment_mlp", weights_only=True)
    marker = tmp_path / "pwned"
    data["config"]["extra"] = Marker(marker)
    torch.save(data, bad / "alignment_mlp")
    with pytest.raises(WorkbenchError, match="not a weights-only file") as err:
        read_official(bad)
    assert "\n" not in str(err.value) and "Fix:" in str(err.value)
    assert not marker.exists()


def test_heads_other_than_single_linear_are_refused_or_mapped(exported, tmp_path) -> None:
    import shutil

    gen, out = exported
    folder = tmp_path / "ckpt"
    shutil.copytree(out, folder)
    data = torch.load(folder / "alignment_mlp", weights_only=True)
    data["config"]["pooling_mode"] = "mean_linear"  # mean then linear = linear then mean: exact
    torch.save(data, folder / "alignment_mlp")
    assert torch.allclose(workbench.load(folder).embed(TEXTS), gen.embed(TEXTS), atol=1e-5)
    data["config"]["size"] = 2
    torch.save(data, folder / "alignment_mlp")
    with pytest.raises(WorkbenchError, match="does not map"):
        read_official(folder)


def test_trained_lora_is_refused(exported, tmp_path) -> None:
    import shutil

    _, out = exported
    folder = tmp_path / "ckpt"
    shutil.copytree(out, folder)
    weights = load_file(str(folder / ENCODER_DIR / ADAPTER_WEIGHTS))
    weights["base_model.model.layers.0.self_attn.q_proj.lora_B.weight"] = torch.ones(64, 8)
    save_file(weights, str(folder / ENCODER_DIR / ADAPTER_WEIGHTS))
    with pytest.raises(WorkbenchError, match="changes the backbone itself"):
        read_official(folder)


def test_missing_base_model_offline_names_it_and_backbone_fixes_it(exported, tiny_dirs, tmp_path) -> None:
    import shutil

    gen, out = exported
    folder = tmp_path / "ckpt"
    shutil.copytree(out, folder)
    text = (folder / RUN_CONFIG).read_text().replace(str(gen.backbone.info.name), "Qwen/Qwen3-0.6B")
    (folder / RUN_CONFIG).write_text(text)
    with pytest.raises(WorkbenchError, match=r"needs its base model 'Qwen/Qwen3-0.6B'.*backbone="):
        workbench.load(folder)
    back = workbench.load(folder, backbone=str(tiny_dirs["llama"]))
    assert torch.equal(back.embed(TEXTS), gen.embed(TEXTS))


def test_saved_import_keeps_official_token_names(exported, tmp_path) -> None:
    _, out = exported
    gen = workbench.load(out)
    gen.save(tmp_path / "wb")
    back = workbench.load(tmp_path / "wb")
    assert back.config.token_strings() == gen.config.token_strings()
    assert torch.equal(back.embed(TEXTS), gen.embed(TEXTS))


def test_cli_export_both_ways(capsys, tiny_dirs, tmp_path) -> None:
    gen = trained_gen(tiny_dirs, "qwen2", num_thought=0, num_compress=2)
    gen.save(tmp_path / "wb")
    assert main(["export", str(tmp_path / "wb"), str(tmp_path / "off"), "--format", "official"]) == 0
    assert main(["export", str(tmp_path / "off"), str(tmp_path / "wb2"), "--format", "workbench"]) == 0
    assert torch.equal(workbench.load(tmp_path / "wb2").embed(TEXTS), gen.embed(TEXTS))
    assert main(["export", str(tmp_path / "wb"), str(tmp_path / "off")]) == 1  # exists
    assert "error:" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "wb"), str(tmp_path / "x"), "--format", "onnx"]) == 1


def test_zoo_lists_public_checkpoints(capsys) -> None:
    entries = zoo()
    names = [e.name for e in entries]
    assert len(names) == len(set(names)) >= 5
    verified = {e.hub_id for e in entries if e.hub_verified}
    assert "McGill-NLP/LLM2Vec-Gen-Qwen3-8B" in verified
    assert all(e.compression_tokens <= e.special_tokens for e in entries)
    assert main(["zoo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == entries[0].name
    assert main(["zoo"]) == 0
    assert "Qwen/Qwen3-8B" in capsys.readouterr().out


def test_offline_hub_is_one_clear_line(capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WorkbenchError, match=r"hub is unreachable.*Fix:"):
        workbench.load("llm2vec-gen-qwen3-8b")
    assert main(["encode", "hello", "--model", "McGill-NLP/LLM2Vec-Gen-Qwen3-06B"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the Hugging Face hub is unreachable") and "Fix:" in err and "\n" not in err
    with pytest.raises(WorkbenchError, match="no public hub id"):
        workbench.load("llm2vec-gen-llama3.1-8b")


def test_copy_base_writes_a_base_transformers_4_reads(tiny_dirs, tmp_path) -> None:
    import yaml

    gen = trained_gen(tiny_dirs, "qwen3", num_thought=1, num_compress=2)
    out = export_official(gen, tmp_path / "ckpt", copy_base=True)
    run = yaml.safe_load((out / RUN_CONFIG).read_text())
    assert run["model_name_or_path"] == str((out / "base").resolve())
    config = json.loads((out / "base" / "config.json").read_text())
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"]  # where 4.56 looks
    assert json.loads((out / "base" / "tokenizer_config.json").read_text())["tokenizer_class"] == (
        "PreTrainedTokenizerFast"
    )
    assert torch.equal(workbench.load(out).embed(TEXTS), gen.embed(TEXTS))


def test_info_reads_an_official_folder(tiny_dirs, tmp_path, capsys) -> None:
    from conftest import tiny_gen

    from workbench.cli import main
    from workbench.store.official import export_official

    out = export_official(tiny_gen(tiny_dirs, "llama", num_thought=2, num_compress=3), tmp_path / "official")
    assert main(["info", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "official llm2vec-gen"
    assert data["tokens"]["thought"] == 2 and data["tokens"]["compress"] == 3
    assert data["tensors"]["special"] == [5, 64]


def test_describe_an_official_checkpoint(exported) -> None:
    from workbench.store.describe import describe_checkpoint

    gen, out = exported
    summary = describe_checkpoint(out)
    assert summary["format"] == "official llm2vec-gen"
    assert summary["tokens"]["thought"] == 2 and summary["tokens"]["compress"] == 3
    assert summary["tokens"]["strings"] == [f"<question{i}>" for i in range(1, 6)]
    assert summary["tensors"]["special"] == list(gen.special.shape)


def test_missing_run_config_values_take_the_genconfig_defaults(exported, tmp_path) -> None:
    """``encoding_mode`` and ``max_input_length`` absent: the defaults the workbench's model has."""
    import shutil

    import yaml

    from workbench.core.config import GenConfig

    _, out = exported
    dst = tmp_path / "ckpt"
    shutil.copytree(out, dst)
    run = yaml.safe_load((dst / RUN_CONFIG).read_text())
    del run["encoding_mode"], run["max_input_length"]
    (dst / RUN_CONFIG).write_text(yaml.safe_dump(run))
    (dst / ENC_DEC_CONFIG).unlink()
    assert GenConfig.num_compress > len(run["special_tokens"])  # 10 compression tokens of 5 ...
    with pytest.raises(WorkbenchError, match=f"last_{GenConfig.num_compress}_tokens"):
        read_official(dst)  # ... are refused, naming the default it tried
    run["encoding_mode"] = "last_3_tokens"
    (dst / RUN_CONFIG).write_text(yaml.safe_dump(run))
    assert read_official(dst).max_length == GenConfig.max_length
