"""A training run's folder on disk: step checkpoints with optimiser state, the log, the run config.

``OUT/checkpoints/step-NNNNNN/`` holds a checkpoint (``gen.save``) plus ``optimizer.safetensors``
(optimiser tensors and the torch RNG state) and ``trainer_state.json`` (step, schedule, the rest of
the optimiser state); it is written under a dot-name and renamed, so a folder without its state file
is never read. ``train_log.jsonl`` has one row per logged step; ``run_config.json`` records what the
run was started with; ``teacher_embeddings.safetensors`` caches the teacher's targets. Nothing here
knows about processes: the trainer decides who writes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..core.errors import WorkbenchError
from ..core.hashing import sha256_file
from ..store.checkpoint import WEIGHTS_FILE, check_backbone, read_checkpoint
from .config import TRAINING_KEYS, TrainConfig

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
LOG_FILE = "train_log.jsonl"
RUN_CONFIG = "run_config.json"
TEACHER_CACHE = "teacher_embeddings.safetensors"
STEPS_DIR = "checkpoints"


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser ``state_dict`` as safetensors-ready tensors and the JSON-ready rest."""
    tensors, rest = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, values in state["state"].items():
        rest["state"][str(pid)] = {}
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                rest["state"][str(pid)][name] = value
    return tensors, rest


def unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {int(pid): dict(v) for pid, v in rest["state"].items()}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def step_dirs(out: Path) -> list[Path]:
    """Complete step checkpoints, oldest first (temporary folders start with a dot)."""
    root = out / STEPS_DIR
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.name.startswith("step-") and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def check_out(out: Path, config: TrainConfig, resume: bool) -> None:
    """Refuse to overwrite a run, or to resume one with options that change its result."""
    has_run = (out / RUN_CONFIG).is_file() or bool(step_dirs(out))
    if has_run and not resume:
        raise WorkbenchError(
            f"{out} already holds a training run", "pass --resume to continue it, or choose another --out"
        )
    if resume and (out / RUN_CONFIG).is_file():
        before = json.loads((out / RUN_CONFIG).read_text())["train"]
        now, default = config.to_dict(), TrainConfig().to_dict()
        # an option added after the run was started counts as its default
        changed = [k for k in TRAINING_KEYS if before.get(k, default[k]) != now[k]]
        if changed:
            raise WorkbenchError(
                f"--resume with changed options {changed} would not continue the same run",
                "resume with the original options (see run_config.json) or start a new --out",
            )


def init_from_checkpoint(gen: Any, path: str | Path) -> dict[str, Any]:
    """Copy a trained checkpoint's special rows and heads into a fresh model (continued training).

    Returns what the run config records about the start: path, weights sha256, steps, training options.
    """
    data = read_checkpoint(path)
    check_backbone(data, gen.backbone)
    mine, theirs = gen.config, data.config
    for name in ("num_thought", "num_compress", "teacher", "teacher_dim"):
        if getattr(mine, name) != getattr(theirs, name):
            raise WorkbenchError(
                f"--init-from {data.path} has {name}={getattr(theirs, name)}, this run {getattr(mine, name)}",
                f"train with the checkpoint's {name} (and its teacher), or start without --init-from",
            )
    gen.load_weights(data.tensors)
    card = data.meta.get("card", {})
    return {
        "path": str(data.path),
        "weights_sha256": sha256_file(data.path / WEIGHTS_FILE),
        "steps": card.get("steps"),
        "responses_sha256": card.get("responses_sha256"),
        "train": card.get("train"),
    }


def write_run_config(out: Path, run_config: dict[str, Any]) -> None:
    (out / RUN_CONFIG).write_text(json.dumps(run_config, indent=2))


def read_teacher_cache(out: Path, key: dict[str, str]) -> torch.Tensor | None:
    """The cached teacher targets if the cache was written for ``key``, else None."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = out / TEACHER_CACHE
    if not path.is_file():
        return None
    with safe_open(str(path), "pt") as fh:
        if fh.metadata() != key:
            return None
    return load_file(str(path))["teacher"]


def write_teacher_cache(out: Path, targets: torch.Tensor, key: dict[str, str]) -> None:
    """Write the teacher targets with ``key`` as metadata (atomically)."""
    from safetensors.torch import save_file

    path = out / TEACHER_CACHE
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({"teacher": targets.contiguous()}, str(tmp), metadata=key)
    os.replace(tmp, path)


def save_step(
    out: Path, gen: Any, optimizer: Any, scheduler: Any, *, step: int, elapsed: float, config: TrainConfig
) -> Path:
    """Write step checkpoint ``step`` (model, optimiser, schedule, RNG); keep the newest ones only."""
    from safetensors.torch import save_file

    root = out / STEPS_DIR
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    gen.save(tmp, step=step)
    tensors, rest = flatten_optimizer(optimizer.state_dict())
    tensors["torch_rng_state"] = torch.get_rng_state()
    save_file(tensors, str(tmp / OPTIMIZER_FILE))
    state = {
        "step": step,
        "optimizer": rest,
        "scheduler": scheduler.state_dict(),
        "elapsed_s": elapsed,
        "train": config.to_dict(),
    }
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in step_dirs(out)[: -config.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def restore_step(out: Path, gen: Any, optimizer: Any, scheduler: Any) -> tuple[int, float]:
    """Load the last step checkpoint into ``gen``, the optimiser, the schedule and torch's RNG.

    Returns the step and the training seconds so far; ``(0, 0.0)`` when there is none.
    """
    from safetensors.torch import load_file

    done = step_dirs(out)
    if not done:
        return 0, 0.0
    last = done[-1]
    data = read_checkpoint(last)
    gen.load_weights(data.tensors)
    state = json.loads((last / STATE_FILE).read_text())
    tensors = load_file(str(last / OPTIMIZER_FILE))
    torch.set_rng_state(tensors.pop("torch_rng_state"))
    optimizer.load_state_dict(unflatten_optimizer(tensors, state["optimizer"]))
    scheduler.load_state_dict(state["scheduler"])
    return int(state["step"]), float(state.get("elapsed_s", 0.0))


def trim_log(out: Path, step: int) -> None:
    """Drop log rows past ``step``, so a resumed log has each step once."""
    path = out / LOG_FILE
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError):
            break
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in keep))
    os.replace(tmp, path)


def append_log(out: Path, record: dict[str, Any]) -> None:
    """Append one row to ``train_log.jsonl``."""
    with open(out / LOG_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
