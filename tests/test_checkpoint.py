"""Checkpoint folders: fixed file names, no pickles, round trips, and clear refusals."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import tiny_gen

import workbench
from workbench.core.errors import WorkbenchError
from workbench.store.checkpoint import CONFIG_FILE, PROMPTS_FILE, WEIGHTS_FILE, read_checkpoint

TEXTS = ["How do I bake bread?", "Paris is the capital of France."]


@pytest.fixture
def saved(tiny_dirs, tmp_path):
    gen = tiny_gen(tiny_dirs, "qwen2", num_thought=0, num_compress=4)
    torch.nn.init.normal_(gen.special, std=0.5)  # differ from the seeded start
    torch.nn.init.normal_(gen.reconstruction.weight, std=0.05)
    gen.trained = True
    path = gen.save(tmp_path / "ckpt", note="unit test")
    return gen, path


def test_files_and_config(saved) -> None:
    gen, path = saved
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_FILE, PROMPTS_FILE, WEIGHTS_FILE]
    meta = json.loads((path / CONFIG_FILE).read_text())
    assert meta["training_prompts"]["count"] == 0  # untrained: its fingerprint is empty, not unknown
    assert meta["backbone"]["name"] == str(gen.backbone.info.name)
    assert meta["backbone"]["model_type"] == "qwen2"
    assert meta["tokens"] == {"thought": [], "compress": [f"<compress_{i}>" for i in range(1, 5)]}
    assert meta["config"]["num_thought"] == 0 and meta["config"]["num_compress"] == 4
    assert meta["heads"] == {"reconstruction": [64, 64], "alignment": [16, 64]}
    assert meta["config"]["teacher"] == "minilm" and meta["config"]["dtype"] == "float32"
    assert meta["card"] == {"note": "unit test"}
    # the weights file is safetensors, not a pickle
    assert (path / WEIGHTS_FILE).read_bytes()[8:9] == b"{"


def test_round_trip_gives_identical_embeddings(saved) -> None:
    gen, path = saved
    again = workbench.load(path)
    assert again.trained and again.config == gen.config
    assert torch.equal(again.special, gen.special)
    assert torch.equal(again.embed(TEXTS), gen.embed(TEXTS))


def test_checkpoint_on_explicit_backbone(saved, tiny_dirs) -> None:
    gen, path = saved
    again = workbench.load(str(tiny_dirs["qwen2"]), checkpoint=path)
    assert torch.equal(again.embed(TEXTS), gen.embed(TEXTS))


def test_other_backbone_is_refused(saved, tiny_dirs) -> None:
    _, path = saved
    with pytest.raises(WorkbenchError, match=r"trained on .*differ") as err:
        workbench.load(str(tiny_dirs["llama"]), checkpoint=path)
    assert "\n" not in str(err.value) and "Fix:" in str(err.value)


def test_other_backbone_shape_is_refused(saved, tmp_path) -> None:
    _, path = saved
    from conftest import make_model, make_tokenizer

    tok = make_tokenizer()
    other = tmp_path / "other"
    make_model("qwen2", len(tok) + 100).save_pretrained(other)  # same family, larger vocabulary
    tok.save_pretrained(other)
    with pytest.raises(WorkbenchError, match=r"is for backbone .* not "):
        workbench.load(str(other), checkpoint=path)


def test_missing_folder(tmp_path) -> None:
    with pytest.raises(WorkbenchError, match="does not exist"):
        read_checkpoint(tmp_path / "nope")


def test_not_a_checkpoint(tmp_path) -> None:
    with pytest.raises(WorkbenchError, match="not a workbench checkpoint"):
        read_checkpoint(tmp_path)


def test_missing_config_is_named(saved) -> None:
    _, path = saved
    (path / CONFIG_FILE).unlink()
    with pytest.raises(WorkbenchError, match=f"{CONFIG_FILE} is missing"):
        workbench.load(path)


def test_corrupt_weights(saved) -> None:
    _, path = saved
    data = (path / WEIGHTS_FILE).read_bytes()
    (path / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(WorkbenchError, match="corrupt"):
        workbench.load(path)


def test_corrupt_config(saved) -> None:
    _, path = saved
    (path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(WorkbenchError, match="corrupt"):
        workbench.load(path)


def test_config_and_weights_disagree(saved) -> None:
    _, path = saved
    meta = json.loads((path / CONFIG_FILE).read_text())
    meta["config"]["num_compress"] = 5
    (path / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(WorkbenchError, match="shape"):
        workbench.load(path)


def test_save_overwrites_atomically(saved) -> None:
    gen, path = saved
    with torch.no_grad():
        gen.special.add_(1.0)
    gen.save(path)
    assert torch.equal(workbench.load(path).special, gen.special)
    assert not [p for p in path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_atomic_writes_get_normal_permissions(tmp_path) -> None:
    from workbench.store.atomic import atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.json", lambda p: p.write_text("{}"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644  # readable by others, as open() gives


def test_untrained_load_takes_its_defaults_from_genconfig(tiny_dirs) -> None:
    from workbench.core.config import GenConfig

    gen = workbench.load(str(tiny_dirs["llama"]), untrained=True, teacher="self")
    defaults = GenConfig()
    for name in ("num_thought", "num_compress", "max_length", "dtype", "seed"):
        assert getattr(gen.config, name) == getattr(defaults, name)
    assert len(gen.config.token_strings()) == GenConfig.num_thought + GenConfig.num_compress
    llama = str(tiny_dirs["llama"])
    again = workbench.load(llama, untrained=True, teacher="self", num_thought=0, max_length=40)
    config = again.config
    assert (config.num_thought, config.num_compress, config.max_length) == (0, GenConfig.num_compress, 40)


def test_thought_count_and_dtype_names() -> None:
    from workbench.core.config import DTYPES, check_dtype, thought_count, torch_dtype

    assert thought_count(["<t1>", "<t2>", "<c1>"], 1) == 2 and thought_count(["<c1>"], 1) == 0
    assert [torch_dtype(name) for name in DTYPES] == [torch.float32, torch.bfloat16, torch.float16]
    with pytest.raises(WorkbenchError, match="unknown dtype 'fp8'"):
        check_dtype("fp8")
    with pytest.raises(WorkbenchError, match="unknown dtype 'half'"):
        workbench.load("x", dtype="half")


def test_describe_a_workbench_checkpoint(saved) -> None:
    from workbench.store.describe import describe_checkpoint

    gen, path = saved
    summary = describe_checkpoint(path)
    assert set(summary) == {"config", "backbone", "tokens", "heads", "trained"}
    assert summary["config"] == gen.config.to_dict() and summary["trained"] is True


def test_export_in_the_workbench_layout(saved, tmp_path) -> None:
    from workbench.store.convert import export_checkpoint

    gen, path = saved
    done = export_checkpoint(path, tmp_path / "copy", format="workbench")
    assert done.note is None and done.path == tmp_path / "copy"
    assert torch.equal(workbench.load(done.path).special, gen.special)
    with pytest.raises(WorkbenchError, match="not empty"):
        export_checkpoint(path, tmp_path / "copy", format="workbench")
    export_checkpoint(path, tmp_path / "copy", format="workbench", overwrite=True)
    with pytest.raises(WorkbenchError, match="unknown format 'onnx'"):
        export_checkpoint(path, tmp_path / "x", format="onnx")
