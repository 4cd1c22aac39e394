"""The model zoo: public LLM2Vec-Gen checkpoints (official layout) listed in ``data/zoo.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import WorkbenchError
from ..core.hub import hub_offline


@dataclass(frozen=True)
class ZooEntry:
    """One public checkpoint: where it lives, what it is built on, what the paper reports for it."""

    name: str
    hub_id: str | None
    hub_verified: bool
    base_model: str
    teacher: str | None
    special_tokens: int
    compression_tokens: int
    mteb: float | None
    teacher_mteb: float | None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def zoo() -> list[ZooEntry]:
    """Every entry of the packaged zoo, in file order."""
    data = yaml.safe_load(files("workbench").joinpath("data/zoo.yaml").read_text(encoding="utf-8"))
    names = {f.name for f in fields(ZooEntry)}
    return [ZooEntry(**{k: v for k, v in row.items() if k in names}) for row in data["models"]]


def find(name: str) -> ZooEntry | None:
    """The zoo entry called ``name`` or with hub id ``name`` (case-insensitive), if any."""
    key = name.strip().lower()
    return next((e for e in zoo() if key in (e.name.lower(), (e.hub_id or "").lower())), None)


def fetch(hub_id: str, revision: str | None = None) -> Path:
    """Download (or find in the hub cache) the files of an official checkpoint; a folder comes back."""
    from huggingface_hub import snapshot_download

    from .official import HUB_FILES

    offline = hub_offline()
    try:
        return Path(
            snapshot_download(hub_id, revision=revision, allow_patterns=HUB_FILES, local_files_only=offline)
        )
    except Exception as err:  # the hub client raises many types (offline, HTTP, DNS, missing repo)
        text = f"{type(err).__name__}: {err}".lower()
        if offline or any(w in text for w in ("offline", "connect", "resolve", "timed out", "network")):
            raise WorkbenchError(
                f"the Hugging Face hub is unreachable{' (HF_HUB_OFFLINE is set)' if offline else ''}, so the "
                f"official checkpoint {hub_id} cannot be fetched and is not in the local hub cache",
                "go online (and unset HF_HUB_OFFLINE), or download the repository on a machine that is "
                "online and pass its folder",
            ) from err
        raise WorkbenchError(
            f"could not fetch the official checkpoint {hub_id} from the hub ({type(err).__name__})",
            "check the id (`workbench zoo` lists the known ones) and your access to it",
        ) from err


def resolve_official(model: str, revision: str | None = None) -> Path | None:
    """The folder of the official checkpoint ``model`` names (folder, zoo name or hub id), else None."""
    from .official import is_official

    if is_official(model):
        return Path(model).expanduser()
    entry = find(model)
    if entry is not None:
        if entry.hub_id is None:
            raise WorkbenchError(
                f"no public hub id is known for {entry.name} (base model {entry.base_model})",
                "pass the checkpoint's hub id or a local folder in the official layout",
            )
        return fetch(entry.hub_id, revision)
    if model.count("/") == 1 and "llm2vec-gen" in model.lower() and not Path(model).expanduser().exists():
        return fetch(model, revision)
    return None
