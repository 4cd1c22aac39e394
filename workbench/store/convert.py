"""Write a checkpoint in another layout (``workbench export``): official ``llm2vec-gen`` or workbench."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.errors import WorkbenchError
from ..core.paths import check_output
from .atomic import refuse_non_empty, undo_on_failure
from .loading import load
from .official import export_official

FORMATS = ("official", "workbench")

RUN_CONFIG_NOTE = (
    "note: run_config.yml names the backbone's folder; if transformers 5 saved it, the official "
    "package (transformers 4.56) misreads its RoPE settings: --copy-base writes a copy it reads"
)


@dataclass(frozen=True)
class Exported:
    """Where the checkpoint went, and a caution for the user when there is one."""

    path: Path
    note: str | None = None


def export_checkpoint(
    source: str | Path,
    out: str | Path,
    *,
    format: str = "official",
    base_model: str | None = None,
    backbone: str | None = None,
    copy_base: bool = False,
    overwrite: bool = False,
) -> Exported:
    """Load ``source`` (anything :func:`~workbench.store.loading.load` opens) and write it to ``out``.

    ``official``: see :func:`~workbench.store.official.export_official`; ``workbench``: ``gen.save``.
    """
    if format not in FORMATS:
        raise WorkbenchError(f"unknown format {format!r}", f"use one of {', '.join(FORMATS)}")
    out = check_output(out, "export folder", folder=True)  # before the load: bad paths fail at once
    refuse_non_empty(out, overwrite)
    with undo_on_failure(out):  # a failed export leaves no folder it made (nor its parents)
        gen = load(source, backbone=backbone)
        if format == "official":
            path = export_official(gen, out, base_model=base_model, copy_base=copy_base, overwrite=overwrite)
            folder = gen.backbone.info.source in ("registry", "gguf", "local")
            return Exported(path, RUN_CONFIG_NOTE if folder and not (copy_base or base_model) else None)
        return Exported(gen.save(out, exported_from=str(source)))
