"""A checkpoint's recorded backbone must agree with itself: name, sha256, sizes and weight fingerprint."""

from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stderr
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from workbench.core.backbone import check_recorded_backbone, probe_matches
from workbench.core.errors import WorkbenchError
from workbench.core.paths import packaged_checkpoints_dir
from workbench.core.registry import BACKBONES
from workbench.store.checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_checkpoint

SMOL, QWEN = BACKBONES["smollm2-135m"], BACKBONES["qwen2.5-coder-0.5b"]


@pytest.fixture
def shipped(tmp_path) -> Path:
    """A copy of the shipped SmolLM2 checkpoint (its probe is SmolLM2's real fingerprint)."""
    return Path(shutil.copytree(packaged_checkpoints_dir() / "smollm2-135m", tmp_path / "ck"))


def edit(folder: Path, **backbone) -> None:
    meta = json.loads((folder / CONFIG_FILE).read_text())
    meta["backbone"].update(backbone)
    (folder / CONFIG_FILE).write_text(json.dumps(meta))


def test_shipped_fingerprints_match_their_registry_entries() -> None:
    for name, spec in BACKBONES.items():
        data = read_checkpoint(packaged_checkpoints_dir() / name)
        probe = data.tensors["backbone_probe"]
        assert probe_matches(probe, spec)
        assert probe_matches(probe.to(torch.bfloat16).float(), spec)  # a bf16 run's fingerprint
        assert not any(probe_matches(probe, other) for other in BACKBONES.values() if other is not spec)
        assert {k: data.backbone[k] for k in ("model_type", "hidden_size", "vocab_size", "num_layers")} == {
            "model_type": spec.model_type,
            "hidden_size": spec.hidden_size,
            "vocab_size": spec.vocab_size,
            "num_layers": spec.num_layers,
        }


@pytest.mark.parametrize(
    ("backbone", "fields"),
    [
        ({"name": QWEN.name, "sha256": QWEN.sha256}, ["model_type", "hidden_size", "weight fingerprint"]),
        ({"name": QWEN.name}, ["sha256", "hidden_size", "weight fingerprint (that of smollm2-135m)"]),
        ({"sha256": "0" * 64}, ["sha256 (000000000000…"]),
        ({"source": "hub"}, ["source ('hub', not 'registry')"]),
        ({"num_layers": 12}, ["num_layers (12, not 30)"]),
    ],
)
def test_edited_backbone_record_is_refused_naming_the_field(shipped, backbone, fields) -> None:
    edit(shipped, **backbone)
    with pytest.raises(WorkbenchError) as err:
        read_checkpoint(shipped)
    message = str(err.value)
    assert "disagree" in message and "\n" not in message
    for field in fields:
        assert field in message


def test_unknown_registry_name_is_refused(shipped) -> None:
    edit(shipped, name="llama-70b")
    with pytest.raises(WorkbenchError, match="registry backbone 'llama-70b', which is not in the registry"):
        read_checkpoint(shipped)


def test_swapped_fingerprint_is_refused(shipped) -> None:
    """Name and hash say SmolLM2; the fingerprint is Qwen's: refused, and named."""
    qwen_probe = load_file(str(packaged_checkpoints_dir() / QWEN.name / WEIGHTS_FILE))["backbone_probe"]
    tensors = load_file(str(shipped / WEIGHTS_FILE))
    tensors["backbone_probe"] = qwen_probe
    save_file(tensors, str(shipped / WEIGHTS_FILE), metadata={"format": "llm2vec-gen-workbench"})
    with pytest.raises(WorkbenchError, match=r"weight fingerprint \(that of qwen2.5-coder-0.5b\)"):
        read_checkpoint(shipped)


def test_gguf_record_with_a_registry_hash_must_match_that_backbone() -> None:
    probe = load_file(str(packaged_checkpoints_dir() / SMOL.name / WEIGHTS_FILE))["backbone_probe"]
    record = {
        "name": "/models/SmolLM2.gguf",
        "source": "gguf",
        "sha256": SMOL.sha256,
        "model_type": "llama",
        "hidden_size": 576,
        "vocab_size": 49152,
        "num_layers": 30,
    }
    check_recorded_backbone(record, probe, what="x")  # the same file under another path: fine
    with pytest.raises(WorkbenchError, match="hidden_size"):
        check_recorded_backbone(record | {"hidden_size": 896}, probe, what="x")
    local = {"name": "/some/folder", "source": "local", "sha256": None, "hidden_size": 64}
    check_recorded_backbone(local, torch.zeros(16 * 32), what="x")  # checked when loaded instead


def test_info_and_load_refuse_before_loading_any_backbone(shipped, monkeypatch) -> None:
    import workbench.store.loading as loading
    from workbench.cli import main

    edit(shipped, name=QWEN.name, sha256=QWEN.sha256)

    def no_load(*args, **kwargs):
        raise AssertionError("a backbone was loaded")

    monkeypatch.setattr(loading, "load_backbone", no_load)
    with pytest.raises(WorkbenchError, match=r"names backbone qwen2\.5-coder-0\.5b"):
        loading.load(shipped)
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(["info", str(shipped)]) == 1
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint") and "weight fingerprint" in lines[0]


def test_intact_checkpoints_still_read(shipped) -> None:
    assert read_checkpoint(shipped).backbone["name"] == SMOL.name
