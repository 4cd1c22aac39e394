"""Self-supervised LLM2Vec-Gen training: resumable, logged, and the same under ``accelerate launch``.

One optimiser step consumes a global batch of ``batch_size`` pairs, split over processes and
gradient-accumulation steps; both losses are normalised by the global batch (token-level mean for
reconstruction, mean over pairs and dimensions for alignment), so any split gives the same update.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..core.config import with_instruction
from ..core.errors import WorkbenchError
from ..core.losses import (
    alignment_loss_sum,
    cosine_stats,
    pad_right,
    reconstruction_loss_sum,
    response_tokens,
)
from ..store.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from .config import TRAINING_KEYS, TrainConfig
from .pairs import global_batch, read_pairs

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
LOG_FILE = "train_log.jsonl"
RUN_CONFIG = "run_config.json"
TEACHER_CACHE = "teacher_embeddings.safetensors"


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to the peak, then linear decay to 0 at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, rest = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, values in state["state"].items():
        rest["state"][str(pid)] = {}
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                rest["state"][str(pid)][name] = value
    return tensors, rest


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(pid): dict(v) for pid, v in rest["state"].items()}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def step_dirs(out: Path) -> list[Path]:
    """Complete step checkpoints, oldest first (temporary folders start with a dot)."""
    root = out / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.name.startswith("step-") and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


class Trainer:
    """Trains the special rows and both heads of an LLM2Vec-Gen model on prompt/response pairs."""

    def __init__(self, config: TrainConfig, *, show_progress: bool = True) -> None:
        from accelerate import Accelerator

        # On a machine without an accelerator, say so: accelerate then runs several processes
        # (``accelerate launch --multi_gpu --num_processes N`` or torchrun) as gloo DDP on the CPU.
        has_device = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
        self.accelerator = Accelerator(cpu=not has_device)
        self.world = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        config.validate(self.world)
        self.config = config
        self.out = Path(config.out).expanduser()
        self.show_progress = show_progress and self.accelerator.is_main_process
        self._init_meta: dict[str, Any] | None = None

    def _init_from(self, gen: Any) -> None:
        """Copy a trained checkpoint's special rows and heads into the fresh model (continued training)."""
        from ..core.fetch import sha256_file
        from ..store.checkpoint import check_backbone, read_checkpoint

        data = read_checkpoint(self.config.init_from)
        check_backbone(data, gen.backbone)
        mine, theirs = gen.config, data.config
        for name in ("num_thought", "num_compress", "teacher", "teacher_dim"):
            if getattr(mine, name) != getattr(theirs, name):
                raise WorkbenchError(
                    f"--init-from {data.path} has {name}={getattr(theirs, name)}, this run "
                    f"{getattr(mine, name)}",
                    f"train with the checkpoint's {name} (and its teacher), or start without --init-from",
                )
        gen.load_weights(data.tensors)
        self._init_meta = {
            "path": str(data.path),
            "weights_sha256": sha256_file(data.path / WEIGHTS_FILE),
            "steps": data.meta.get("card", {}).get("steps"),
            "responses_sha256": data.meta.get("card", {}).get("responses_sha256"),
            "train": data.meta.get("card", {}).get("train"),
        }

    # ------------------------------------------------------------------ set-up
    def _check_out(self, resume: bool) -> None:
        has_run = (self.out / RUN_CONFIG).is_file() or bool(step_dirs(self.out))
        if has_run and not resume:
            raise WorkbenchError(
                f"{self.out} already holds a training run",
                "pass --resume to continue it, or choose another --out",
            )
        if resume and (self.out / RUN_CONFIG).is_file():
            before = json.loads((self.out / RUN_CONFIG).read_text())["train"]
            now, default = self.config.to_dict(), TrainConfig().to_dict()
            # an option added after the run was started counts as its default
            changed = [k for k in TRAINING_KEYS if before.get(k, default[k]) != now[k]]
            if changed:
                raise WorkbenchError(
                    f"--resume with changed options {changed} would not continue the same run",
                    "resume with the original options (see run_config.json) or start a new --out",
                )

    def _teacher_targets(self, gen: Any, responses: list[str], digest: str) -> torch.Tensor:
        """Teacher embeddings of every response, computed once (main process) and cached."""
        from safetensors.torch import load_file, save_file

        path = self.out / TEACHER_CACHE
        key = {"teacher": self.config.teacher, "responses_sha256": digest, "count": str(len(responses))}

        def cached() -> torch.Tensor | None:
            if not path.is_file():
                return None
            from safetensors import safe_open

            with safe_open(str(path), "pt") as fh:
                if fh.metadata() != key:
                    return None
            return load_file(str(path))["teacher"]

        if self.accelerator.is_main_process and cached() is None:
            targets = gen.load_teacher().encode(responses, batch_size=32)
            tmp = path.with_name(f".{path.name}.tmp")
            save_file({"teacher": targets.contiguous()}, str(tmp), metadata=key)
            os.replace(tmp, path)
        self.accelerator.wait_for_everyone()
        targets = cached()
        assert targets is not None
        return targets

    def _run_config(self, gen: Any, pairs: int, digest: str) -> dict[str, Any]:
        import transformers

        import workbench

        return {
            "train": self.config.to_dict(),
            "model": gen.config.to_dict(),
            "backbone": gen.backbone.info.to_dict(),
            "pairs": pairs,
            "responses_sha256": digest,
            "init_from": self._init_meta,
            "world_size": self.world,
            "micro_batch": self.config.micro_batch(self.world),
            "versions": {
                "workbench": workbench.__version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "python": platform.python_version(),
            },
            "hardware": {
                "device": str(self.accelerator.device),
                "platform": platform.platform(),
                "cpu_threads": torch.get_num_threads(),
                "processor": platform.processor(),
            },
        }

    # ------------------------------------------------------------------ checkpoints
    def _save_step(self, gen: Any, optimizer: Any, scheduler: Any, step: int, elapsed: float) -> None:
        from safetensors.torch import save_file

        if self.accelerator.is_main_process:
            root = self.out / "checkpoints"
            final = root / f"step-{step:06d}"
            tmp = root / f".tmp-step-{step:06d}"
            shutil.rmtree(tmp, ignore_errors=True)
            gen.save(tmp, step=step)
            tensors, rest = _flatten_optimizer(optimizer.state_dict())
            tensors["torch_rng_state"] = torch.get_rng_state()
            save_file(tensors, str(tmp / OPTIMIZER_FILE))
            state = {
                "step": step,
                "optimizer": rest,
                "scheduler": scheduler.state_dict(),
                "elapsed_s": elapsed,
                "train": self.config.to_dict(),
            }
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in step_dirs(self.out)[: -self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def _restore(self, gen: Any, optimizer: Any, scheduler: Any) -> tuple[int, float]:
        from safetensors.torch import load_file

        from ..store.checkpoint import read_checkpoint

        done = step_dirs(self.out)
        if not done:
            return 0, 0.0
        last = done[-1]
        data = read_checkpoint(last)
        gen.load_weights(data.tensors)
        state = json.loads((last / STATE_FILE).read_text())
        tensors = load_file(str(last / OPTIMIZER_FILE))
        torch.set_rng_state(tensors.pop("torch_rng_state"))
        optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
        scheduler.load_state_dict(state["scheduler"])
        return int(state["step"]), float(state.get("elapsed_s", 0.0))

    def _trim_log(self, step: int) -> None:
        """Drop log rows past the resumed step, so a resumed log has each step once."""
        path = self.out / LOG_FILE
        if not path.is_file() or not self.accelerator.is_main_process:
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

    # ------------------------------------------------------------------ training
    def _my_shards(self, idx: list[int]) -> list[list[int]]:
        micro = self.config.micro_batch(self.world)
        shards = [idx[k * micro : (k + 1) * micro] for k in range(self.world * self.config.grad_accum)]
        return [shards[a * self.world + self.rank] for a in range(self.config.grad_accum)]

    def run(self, resume: bool = False) -> Path:
        """Train to ``max_steps`` (continuing the last step checkpoint with ``resume``)."""
        from ..store import loading as api

        cfg, acc = self.config, self.accelerator
        self._check_out(resume)
        self.out.mkdir(parents=True, exist_ok=True)
        pairs, digest = read_pairs(cfg.responses, cfg.limit)
        gen = api.load(
            cfg.model,
            teacher=cfg.teacher,
            num_thought=cfg.num_thought,
            num_compress=cfg.num_compress,
            max_length=cfg.max_query_length,
            dtype=cfg.dtype,
            untrained=True,
            seed=cfg.seed,
        )
        if cfg.init_from:
            self._init_from(gen)  # on --resume the step checkpoint's weights then replace these
        gen.backbone.model.to(acc.device)
        gen.to(acc.device)
        targets = self._teacher_targets(gen, [p.response for p in pairs], digest)
        bf16 = cfg.mixed_precision == "bf16"
        if bf16:
            # The frozen LLM's weights in half precision, so autocast has nothing to cast each step;
            # the trainable rows and heads, their gradients and the optimiser state stay in cfg.dtype.
            gen.backbone.model.to(torch.bfloat16)
        # autocast here rather than through Accelerator(mixed_precision=...): accelerate's state is
        # one per process, so a notebook could not train a second run with another setting
        autocast = torch.autocast(acc.device.type, dtype=torch.bfloat16, enabled=bf16)
        eos = gen.tokenizer.eos_token_id
        rows = response_tokens(gen.tokenizer, [p.response for p in pairs], cfg.max_response_length, eos)
        prompts = with_instruction([p.prompt for p in pairs], cfg.query_instruction or None)
        if acc.is_main_process:
            run_config = self._run_config(gen, len(pairs), digest)
            (self.out / RUN_CONFIG).write_text(json.dumps(run_config, indent=2))

        optimizer = torch.optim.AdamW(gen.trainable_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, cfg.warmup_steps, cfg.schedule_steps)
        )
        start, elapsed = self._restore(gen, optimizer, scheduler) if resume else (0, 0.0)
        self._trim_log(start)
        model, optimizer = acc.prepare(gen, optimizer)
        writer = self._writer(start)
        dim = targets.shape[1]
        gen.trained = True  # step checkpoints hold trained weights
        bar = tqdm(
            total=cfg.max_steps,
            initial=start,
            desc="training",
            disable=not self.show_progress,
            dynamic_ncols=True,
        )
        for step in range(start, cfg.max_steps):
            began = time.perf_counter()
            idx = global_batch(step, len(pairs), cfg.batch_size, cfg.seed)
            tokens = sum(len(rows[i]) for i in idx)
            stats = torch.zeros(6, dtype=torch.float64)
            shards = self._my_shards(idx)
            for a, shard in enumerate(shards):
                sync = nullcontext() if a == len(shards) - 1 else acc.no_sync(model)
                with sync, autocast:
                    out = model([prompts[i] for i in shard])
                    rec = reconstruction_loss_sum(
                        gen.traced,
                        out["soft_prompt"],
                        pad_right([rows[i] for i in shard], gen.tokenizer.pad_token_id),
                    )
                    ali = alignment_loss_sum(out["embedding"], targets[shard])
                    loss = cfg.recon_weight * rec / tokens + cfg.align_weight * ali / (cfg.batch_size * dim)
                    acc.backward(loss * self.world)
                cos = cosine_stats(out["embedding"], targets[shard])
                stats += torch.tensor(
                    [
                        rec.item(),
                        ali.item(),
                        out["embedding"].detach().norm(dim=-1).sum().item(),
                        targets[shard].norm(dim=-1).sum().item(),
                        cos["cos_diag"] * len(shard),
                        cos["cos_offdiag"] * len(shard),
                    ],
                    dtype=torch.float64,
                )
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            stats = acc.reduce(stats.to(acc.device), reduction="sum").cpu()
            elapsed += time.perf_counter() - began
            record = {
                "step": step + 1,
                "loss": float(
                    cfg.recon_weight * stats[0] / tokens
                    + cfg.align_weight * stats[1] / (cfg.batch_size * dim)
                ),
                "recon_loss": float(stats[0] / tokens),
                "align_loss": float(stats[1] / (cfg.batch_size * dim)),
                "emb_norm": float(stats[2] / cfg.batch_size),
                "teacher_norm": float(stats[3] / cfg.batch_size),
                "cos_diag": float(stats[4] / cfg.batch_size),
                "cos_offdiag": float(stats[5] / cfg.batch_size),
                "lr": lr,
                "tokens": tokens,
                "step_s": time.perf_counter() - began,
                "elapsed_s": elapsed,
            }
            self._log(record, writer)
            bar.set_postfix(
                recon=f"{record['recon_loss']:.3f}",
                align=f"{record['align_loss']:.4f}",
                cos=f"{record['cos_diag']:.2f}",
            )
            bar.update(1)
            if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.max_steps:
                self._save_step(gen, optimizer, scheduler, step + 1, elapsed)
        bar.close()
        if writer is not None:
            writer.close()
        if acc.is_main_process:
            gen.save(
                self.out,
                steps=cfg.max_steps,
                pairs=len(pairs),
                responses_sha256=digest,
                train=cfg.to_dict(),
                train_seconds=round(elapsed, 1),
                init_from=self._init_meta,
            )
        acc.wait_for_everyone()
        # Tear the process group down before exit: a gloo group left to the interpreter's exit can
        # abort one rank ("terminate called without an active exception") after training finished.
        acc.end_training()
        return self.out

    def _writer(self, start: int) -> Any:
        if not self.accelerator.is_main_process:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.out / "tensorboard"), purge_step=start + 1 if start else None)

    def _log(self, record: dict[str, Any], writer: Any) -> None:
        if not self.accelerator.is_main_process or record["step"] % self.config.log_every:
            return
        with open(self.out / LOG_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if writer is not None:
            for key, value in record.items():
                if key != "step":
                    writer.add_scalar(f"train/{key}", value, record["step"])


def train(config: TrainConfig, *, resume: bool = False, show_progress: bool = True) -> Path:
    """Run a training job; returns the output folder (a loadable checkpoint)."""
    return Trainer(config, show_progress=show_progress).run(resume=resume)


__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "TrainConfig", "Trainer", "train"]
