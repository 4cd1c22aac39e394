"""``workbench.load``: a backbone name, hub id, folder or checkpoint in, an LLM2VecGen model out."""

from __future__ import annotations

import logging
from pathlib import Path

from ..core.backbone import load_backbone
from ..core.config import GenConfig, resolve_device, resolve_dtype, torch_dtype
from ..core.errors import WorkbenchError
from ..core.fingerprint import PromptFingerprint
from ..core.model import LLM2VecGen
from ..core.paths import packaged_checkpoints_dir
from ..core.registry import DEFAULT_BACKBONE
from ..core.teacher import teacher_dim
from .checkpoint import WEIGHTS_FILE, CheckpointData, check_backbone, is_checkpoint, read_checkpoint
from .official import load_official
from .zoo import resolve_official

log = logging.getLogger("workbench")


def packaged_checkpoint(backbone: str) -> Path | None:
    """The trained checkpoint shipped in the package for a registry backbone, if any."""
    path = packaged_checkpoints_dir() / backbone
    return path if is_checkpoint(path) else None


def _pick_checkpoint(
    model: str, checkpoint: str | Path | None, untrained: bool, overrides: tuple
) -> CheckpointData | None:
    if checkpoint is not None:
        return read_checkpoint(checkpoint)
    if (Path(model).expanduser() / WEIGHTS_FILE).exists():
        read_checkpoint(model)  # a damaged checkpoint folder: raises the precise reason
    shipped = None if untrained else packaged_checkpoint(model)
    if shipped is not None and all(o is None for o in overrides):
        return read_checkpoint(shipped)
    if not untrained:
        log.info("no trained checkpoint for %s: starting from untrained special tokens", model)
    return None


def load(
    model: str | Path = DEFAULT_BACKBONE,
    *,
    checkpoint: str | Path | None = None,
    backbone: str | None = None,
    teacher: str | None = None,
    num_thought: int | None = None,
    num_compress: int | None = None,
    max_length: int | None = None,
    dtype: str = GenConfig.dtype,
    device: str = "cpu",
    revision: str | None = None,
    trust_remote_code: bool = False,
    untrained: bool = False,
    seed: int = GenConfig.seed,
) -> LLM2VecGen:
    """Load an LLM2Vec-Gen model.

    ``model`` is a checkpoint folder (its backbone is loaded from the name it records, or from
    ``backbone``), or a backbone: a registry name (``smollm2-135m``), a ``.gguf`` file, a local
    transformers folder or a hub id. A registry backbone gets its shipped trained checkpoint
    unless ``checkpoint`` names another or ``untrained`` is set; otherwise the model starts
    untrained with ``num_thought``/``num_compress`` special tokens and a head sized for ``teacher``
    (each left at None takes its :class:`~workbench.core.config.GenConfig` default).
    An official ``llm2vec-gen`` checkpoint (folder, ``workbench zoo`` name or hub id) is opened on its
    base model, or on ``backbone``: see :mod:`workbench.store.official`.

    ``dtype`` is the frozen LLM's (``float32``, ``bfloat16``, ``float16``, or ``auto``: bfloat16 where
    the device runs it natively, else float32); the trained rows and heads stay float32. ``device``:
    ``cpu``, ``cuda``, ``cuda:N`` or ``auto``. The choice and its reason are in ``gen.precision``.
    """
    device = resolve_device(device)
    asked = dtype
    dtype, why = resolve_dtype(dtype, device)
    gen = _load(
        model,
        checkpoint=checkpoint,
        backbone=backbone,
        teacher=teacher,
        num_thought=num_thought,
        num_compress=num_compress,
        max_length=max_length,
        dtype=dtype,
        revision=revision,
        trust_remote_code=trust_remote_code,
        untrained=untrained,
        seed=seed,
    )
    gen.precision = {"dtype": dtype, "asked": asked, "why": why, "device": device}
    if device != "cpu":
        gen.backbone.model.to(device)
        gen.to(device)
    return gen


def _load(
    model: str | Path,
    *,
    checkpoint: str | Path | None,
    backbone: str | None,
    teacher: str | None,
    num_thought: int | None,
    num_compress: int | None,
    max_length: int | None,
    dtype: str,
    revision: str | None,
    trust_remote_code: bool,
    untrained: bool,
    seed: int,
) -> LLM2VecGen:
    model = str(model)
    official = resolve_official(model, revision)  # official llm2vec-gen layout: folder, zoo name, hub id
    if official is not None:
        if checkpoint is not None:
            raise WorkbenchError(
                f"{model} is already a checkpoint, and checkpoint= names another", "pass one checkpoint"
            )
        return load_official(
            official,
            backbone=backbone,
            dtype=dtype,
            max_length=max_length,
            trust_remote_code=trust_remote_code,
        )
    if is_checkpoint(model):
        if checkpoint is not None:
            raise WorkbenchError(
                f"{model} is already a checkpoint, and checkpoint= names another", "pass one checkpoint"
            )
        data: CheckpointData | None = read_checkpoint(model)
        name = backbone or data.backbone["name"]
    else:
        if backbone is not None and backbone != model:
            raise WorkbenchError(
                f"two backbones given: {model!r} and backbone={backbone!r}", "name the backbone once"
            )
        data = _pick_checkpoint(model, checkpoint, untrained, (teacher, num_thought, num_compress))
        name = model
    revision = revision or (data.backbone.get("revision") if data else None)
    loaded = load_backbone(
        name, dtype=torch_dtype(dtype), revision=revision, trust_remote_code=trust_remote_code
    )
    if data is not None:
        check_backbone(data, loaded)
        config = data.config
        config.dtype = dtype
        if max_length is not None:
            config.max_length = max_length
        gen = LLM2VecGen(loaded, config)
        gen.load_weights(data.tensors, trained=bool(data.meta.get("trained", False)))
        gen.training_prompts = data.fingerprint if data.meta.get("trained", False) else PromptFingerprint()
        return gen
    teacher = teacher or GenConfig.teacher
    given = {"num_thought": num_thought, "num_compress": num_compress, "max_length": max_length}
    config = GenConfig(
        **{k: v for k, v in given.items() if v is not None},
        teacher=teacher,
        teacher_dim=teacher_dim(teacher, loaded.info.hidden_size),
        dtype=dtype,
        seed=seed,
    )
    return LLM2VecGen(loaded, config)
