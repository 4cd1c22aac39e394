"""Checkpoint folders: ``llm2vec_gen_config.json`` plus ``llm2vec_gen_weights.safetensors``.

No pickles: tensors go to safetensors, everything else to JSON. Files are written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.backbone import Backbone, backbone_probe, check_recorded_backbone, check_same_backbone
from ..core.config import GenConfig
from ..core.errors import WorkbenchError
from ..core.extensions import extension
from ..core.fingerprint import PromptFingerprint
from .atomic import atomic_write
from .official import config_from_dict

CONFIG_FILE = "llm2vec_gen_config.json"
WEIGHTS_FILE = "llm2vec_gen_weights.safetensors"
PROMPTS_FILE = "llm2vec_gen_prompts.safetensors"
"""Hashes of the training prompts (:class:`~workbench.core.fingerprint.PromptFingerprint`)."""
FORMAT = "llm2vec-gen-workbench"
FORMAT_VERSION = 1


@dataclass
class CheckpointData:
    """What a checkpoint folder holds, validated."""

    path: Path
    config: GenConfig
    backbone: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    fingerprint: PromptFingerprint | None = None
    """Its training prompts; None when the checkpoint does not record them."""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """In a notebook: the checkpoint's card (its README.md, else a summary of its config)."""
        trained = "trained" if self.meta.get("trained") else "untrained"
        plain = f"<checkpoint {self.path.name}: {self.backbone.get('name')}, {trained}>"
        return {"text/markdown": extension("checkpoint_markdown")(self), "text/plain": plain}


def is_checkpoint(path: str | Path) -> bool:
    return (Path(path).expanduser() / CONFIG_FILE).is_file()


def save_checkpoint(model: Any, path: Path, **card: Any) -> Path:
    """Write ``model``'s special rows, heads and configuration into the folder ``path``."""
    from safetensors.torch import save_file

    path = path.expanduser()
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors["backbone_probe"] = backbone_probe(model.backbone)
    strings = model.config.token_strings()
    t = model.config.num_thought
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "backbone": model.backbone.info.to_dict(),
        "tokens": {"thought": strings[:t], "compress": strings[t:]},
        "heads": {
            "reconstruction": list(model.reconstruction.weight.shape),
            "alignment": list(model.alignment.weight.shape),
        },
        "trained": bool(model.trained),
        "card": card,
    }
    prompts: PromptFingerprint | None = getattr(model, "training_prompts", None)
    meta["training_prompts"] = None if prompts is None else {"file": PROMPTS_FILE, **prompts.summary()}
    atomic_write(path / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))
    if prompts is not None:
        write_fingerprint(path / PROMPTS_FILE, prompts)
    elif (path / PROMPTS_FILE).exists():
        (path / PROMPTS_FILE).unlink()  # a stale one from an earlier save would be believed
    atomic_write(
        path / CONFIG_FILE,
        lambda tmp: tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n"),
    )
    return path


def write_fingerprint(path: Path, prompts: PromptFingerprint) -> None:
    """Store a fingerprint as a safetensors file (one int64 tensor of sorted hashes)."""
    from safetensors.torch import save_file

    atomic_write(
        path, lambda tmp: save_file({"hashes": prompts.to_tensor()}, tmp, metadata={"format": FORMAT})
    )


def read_fingerprint(folder: Path, record: Any) -> PromptFingerprint | None:
    """The fingerprint a checkpoint's config points at (``record``), or None when it has none."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not record:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("file"), str):
        raise _corrupt(folder, "its training_prompts record is malformed")
    path = folder / Path(record["file"]).name
    if not path.is_file():
        raise _corrupt(folder, f"{path.name} (the training-prompt fingerprint its config names) is missing")
    try:
        hashes = load_file(str(path))["hashes"]
    except (SafetensorError, OSError, ValueError, KeyError) as err:
        raise _corrupt(folder, f"{path.name} is unreadable ({err})") from err
    if hashes.dtype != torch.int64 or hashes.dim() != 1 or len(hashes) != record.get("count", len(hashes)):
        raise _corrupt(folder, f"{path.name} does not hold the {record.get('count')} hashes its config names")
    return PromptFingerprint.from_tensor(
        hashes, record.get("sources") or (), complete=bool(record.get("complete", True))
    )


def _corrupt(path: Path, what: str) -> WorkbenchError:
    return WorkbenchError(
        f"checkpoint {path} is corrupt: {what}",
        "re-save or re-download it (weights and config must come from one save)",
    )


def read_checkpoint(path: str | Path) -> CheckpointData:
    """Read and validate a checkpoint folder (shapes, keys, format)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    if not path.is_dir():
        raise WorkbenchError(
            f"checkpoint folder {path} does not exist", "check the path, or save one with gen.save(path)"
        )
    if not (path / CONFIG_FILE).is_file():
        raise WorkbenchError(
            f"{path} is not a workbench checkpoint: {CONFIG_FILE} is missing",
            "point at a folder written by gen.save() or `workbench train`",
        )
    if not (path / WEIGHTS_FILE).is_file():
        raise WorkbenchError(
            f"checkpoint {path} has no {WEIGHTS_FILE}", "copy the whole checkpoint folder, or re-save it"
        )
    try:
        meta = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
        config = config_from_dict(meta["config"])  # official token names need their list
        backbone = dict(meta["backbone"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise _corrupt(path, f"{CONFIG_FILE} is unreadable ({type(err).__name__}: {err})") from err
    if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
        raise WorkbenchError(
            f"{path} has format {meta.get('format')!r} "
            f"v{meta.get('format_version')}, not {FORMAT} v{FORMAT_VERSION}",
            "upgrade the workbench to read it",
        )
    try:
        tensors = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as err:
        raise _corrupt(path, f"{WEIGHTS_FILE} is unreadable ({err})") from err
    hidden, dim, n = backbone.get("hidden_size"), config.teacher_dim, config.num_special
    expected = {
        "special": (n, hidden),
        "reconstruction.weight": (hidden, hidden),
        "reconstruction.bias": (hidden,),
        "alignment.weight": (dim, hidden),
        "alignment.bias": (dim,),
    }
    for key, shape in expected.items():
        if key not in tensors:
            raise _corrupt(path, f"tensor {key!r} is missing")
        if tuple(tensors[key].shape) != shape:
            raise _corrupt(
                path, f"tensor {key!r} has shape {list(tensors[key].shape)}, config says {list(shape)}"
            )
    check_recorded_backbone(backbone, tensors.get("backbone_probe"), what=f"checkpoint {path}")
    fingerprint = read_fingerprint(path, meta.get("training_prompts"))
    return CheckpointData(path, config, backbone, tensors, meta, fingerprint)


def check_backbone(data: CheckpointData, backbone: Backbone) -> None:
    """Refuse to put a checkpoint on a backbone other than the one it was trained on."""
    check_same_backbone(
        data.backbone,
        data.tensors.get("backbone_probe"),
        backbone,
        what=f"checkpoint {data.path}",
        fix=f"load it with its own backbone: workbench.load('{data.path}') "
        f"(trained on {data.backbone.get('name')})",
    )
