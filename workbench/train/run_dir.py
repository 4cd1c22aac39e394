"""A training run's folder on disk: step checkpoints with optimiser state, the log, the run config.

``OUT/checkpoints/step-NNNNNN/`` holds a checkpoint (``gen.save``) plus ``optimizer.safetensors``
(optimiser tensors and the torch RNG state), ``trainer_state.json`` (step, schedule, the rest of
the optimiser state) and ``manifest.json`` (each file's size and sha256); it is written under a
dot-name and renamed, so a folder without its state file is never read, and ``--resume`` skips one
whose files do not match its manifest for the newest intact one. ``train_log.jsonl`` has one row
per logged step; ``run_config.json`` records what the run was started with;
``teacher_embeddings.safetensors`` caches the teacher's targets. Nothing here knows about
processes: the trainer decides who writes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..core.errors import WorkbenchError
from ..core.hashing import sha256_file
from ..core.paths import plain_permissions
from ..store.atomic import atomic_write
from ..store.checkpoint import CONFIG_FILE, WEIGHTS_FILE, check_backbone, read_checkpoint
from .config import TRAINING_KEYS, TrainConfig

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
LOG_FILE = "train_log.jsonl"
RUN_CONFIG = "run_config.json"
TEACHER_CACHE = "teacher_embeddings.safetensors"
STEPS_DIR = "checkpoints"
MANIFEST_FILE = "manifest.json"
"""In each step folder: every other file's size and sha256, checked before ``--resume`` trusts it."""


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
    gen.training_prompts = data.fingerprint  # the trainer adds this run's prompts to it
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

    atomic_write(
        out / TEACHER_CACHE, lambda tmp: save_file({"teacher": targets.contiguous()}, str(tmp), metadata=key)
    )


def save_step(
    out: Path, gen: Any, optimizer: Any, scheduler: Any, *, step: int, elapsed: float, config: TrainConfig
) -> Path:
    """Write step checkpoint ``step`` (model, optimiser, schedule, RNG); keep the newest ones only."""
    from safetensors.torch import save_file

    root = out / STEPS_DIR
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        gen.save(tmp, step=step)
        tensors, rest = flatten_optimizer(optimizer.state_dict())
        tensors["torch_rng_state"] = torch.get_rng_state()
        save_file(tensors, str(tmp / OPTIMIZER_FILE))
        plain_permissions(tmp / OPTIMIZER_FILE)  # safetensors creates its files 0600
        state = {
            "step": step,
            "optimizer": rest,
            "scheduler": scheduler.state_dict(),
            "elapsed_s": elapsed,
            "train": config.to_dict(),
        }
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
        write_manifest(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # no half-written step folder stays behind
        raise
    done = step_dirs(out)
    for old in [d for d in done if _step_of(d) > step]:  # after a resume from an older intact step:
        shutil.rmtree(old, ignore_errors=True)  # the damaged newer ones it skipped
    for old in [d for d in done if _step_of(d) <= step][: -config.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _step_of(folder: Path) -> int:
    return int(folder.name.split("-")[1])


def write_manifest(folder: Path) -> None:
    """Record the size and sha256 of every file in a step folder, in its ``manifest.json``."""
    files = {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST_FILE
    }
    (folder / MANIFEST_FILE).write_text(json.dumps({"files": files}, indent=2) + "\n")


def verify_step(folder: Path) -> str | None:
    """Why the step folder cannot be trusted, or None when its files match its manifest."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return f"{MANIFEST_FILE} is missing"
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        listed = {str(k): (int(v["size"]), str(v["sha256"])) for k, v in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as err:
        return f"{MANIFEST_FILE} is unreadable ({type(err).__name__})"
    for name in (WEIGHTS_FILE, CONFIG_FILE, OPTIMIZER_FILE, STATE_FILE):
        if name not in listed:
            return f"{MANIFEST_FILE} does not list {name}"
    for name, (size, digest) in listed.items():
        file = folder / Path(name).name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, its manifest says {size}"
        if sha256_file(file) != digest:
            return f"{name} does not match the sha256 in its manifest"
    return None


def restore_step(
    out: Path, gen: Any, optimizer: Any, scheduler: Any, warn: Callable[[str], None] | None = None
) -> tuple[int, float]:
    """Load the newest intact step checkpoint into ``gen``, the optimiser, the schedule and torch's RNG.

    A step folder whose files do not match its manifest (sizes and sha256), or that does not read,
    is skipped for the next older one; ``warn`` gets a line naming each skipped step and why.
    (Runs from before manifests, where no step has one, are read without that check.) Returns the
    step and the training seconds so far; ``(0, 0.0)`` when there is none.
    """
    from safetensors import SafetensorError

    done = step_dirs(out)
    if not done:
        return 0, 0.0
    say = warn or (lambda line: print(line, file=sys.stderr))
    manifests = any((d / MANIFEST_FILE).is_file() for d in done)
    skipped: list[str] = []
    for folder in reversed(done):
        problem = verify_step(folder) if manifests else None
        if problem is None:
            try:
                data, state, tensors = _read_step(folder)
            except (WorkbenchError, SafetensorError, OSError, ValueError, KeyError, TypeError) as err:
                problem = f"it does not read ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
        if problem is not None:
            skipped.append(folder.name)
            say(f"warning: skipped step checkpoint {folder.name}: {problem}")
            continue
        gen.load_weights(data.tensors)
        torch.set_rng_state(tensors.pop("torch_rng_state"))
        optimizer.load_state_dict(unflatten_optimizer(tensors, state["optimizer"]))
        scheduler.load_state_dict(state["scheduler"])
        if skipped:
            say(f"warning: resuming from {folder.name}, the newest intact step checkpoint")
        return int(state["step"]), float(state.get("elapsed_s", 0.0))
    raise WorkbenchError(
        f"no intact step checkpoint in {out / STEPS_DIR} to resume from ({', '.join(skipped)} damaged)",
        f"delete {out / STEPS_DIR} to train from step 0, or start a new --out",
    )


def _read_step(folder: Path) -> tuple[Any, dict[str, Any], dict[str, torch.Tensor]]:
    """A step folder's checkpoint, trainer state and optimiser tensors, all read before any is used."""
    from safetensors.torch import load_file

    data = read_checkpoint(folder)
    state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    tensors = load_file(str(folder / OPTIMIZER_FILE))
    if "torch_rng_state" not in tensors or not isinstance(state.get("optimizer"), dict):
        raise ValueError(f"{OPTIMIZER_FILE} or {STATE_FILE} lacks the optimiser or RNG state")
    if not isinstance(state.get("step"), int) or not isinstance(state.get("scheduler"), dict):
        raise ValueError(f"{STATE_FILE} lacks the step or the schedule")
    return data, state, tensors


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
    atomic_write(path, lambda tmp: tmp.write_text("".join(f"{line}\n" for line in keep)))


def append_log(out: Path, record: dict[str, Any]) -> None:
    """Append one row to ``train_log.jsonl``."""
    with open(out / LOG_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
