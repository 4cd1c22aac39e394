"""Self-supervised LLM2Vec-Gen training: resumable, logged, and the same under ``accelerate launch``.

One optimiser step consumes a global batch of ``batch_size`` pairs, split over processes and
gradient-accumulation steps; both losses are normalised by the global batch (token-level mean for
reconstruction, mean over pairs and dimensions for alignment), so any split gives the same update.
"""

from __future__ import annotations

import platform
import sys
import time
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..core.config import with_instruction
from ..core.fingerprint import PromptFingerprint
from ..core.losses import (
    alignment_loss_sum,
    cosine_stats,
    pad_right,
    reconstruction_loss_sum,
    response_tokens,
)
from ..core.paths import check_output
from ..store.atomic import undo_on_failure
from ..store.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from ..store.loading import load
from .config import TrainConfig
from .pairs import check_provenance, global_batch, pairs_mix, read_pairs
from .run_dir import (
    LOG_FILE,
    RUN_CONFIG,
    STATE_FILE,
    TEACHER_CACHE,
    append_log,
    check_out,
    init_from_checkpoint,
    read_teacher_cache,
    restore_step,
    save_step,
    step_dirs,
    trim_log,
    write_run_config,
    write_teacher_cache,
)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to the peak, then linear decay to 0 at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


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
        self._provenance: dict[str, Any] = {}
        self._mix: dict[str, Any] = {}

    def _teacher_targets(self, gen: Any, responses: list[str], digest: str) -> torch.Tensor:
        """Teacher embeddings of every response, computed once (main process) and cached."""
        key = {"teacher": self.config.teacher, "responses_sha256": digest, "count": str(len(responses))}
        if self.accelerator.is_main_process and read_teacher_cache(self.out, key) is None:
            write_teacher_cache(self.out, gen.load_teacher().encode(responses, batch_size=32), key)
        self.accelerator.wait_for_everyone()
        targets = read_teacher_cache(self.out, key)
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
            "provenance": self._provenance,
            "mix": self._mix,
            "training_prompts": None if gen.training_prompts is None else gen.training_prompts.summary(),
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
        if self.accelerator.is_main_process:
            save_step(self.out, gen, optimizer, scheduler, step=step, elapsed=elapsed, config=self.config)
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ training
    def _my_shards(self, idx: list[int]) -> list[list[int]]:
        micro = self.config.micro_batch(self.world)
        shards = [idx[k * micro : (k + 1) * micro] for k in range(self.world * self.config.grad_accum)]
        return [shards[a * self.world + self.rank] for a in range(self.config.grad_accum)]

    def run(self, resume: bool = False) -> Path:
        """Train to ``max_steps`` (continuing the last step checkpoint with ``resume``).

        A run that fails before its first step checkpoint removes the output folder if it made it.
        """
        check_output(self.out, "training output folder", folder=True)
        check_out(self.out, self.config, resume)
        with undo_on_failure(self.out, keep=lambda: bool(step_dirs(self.out))):
            try:
                return self._run(resume)
            except BaseException:
                self._close_events()  # its writer thread stops before the folder may go
                raise

    def _close_events(self) -> None:
        """Close the TensorBoard writer of a failed run; its own error (a full disk) is the same one."""
        writer, self._events = getattr(self, "_events", None), None
        if writer is not None:
            with suppress(Exception):
                writer.close()

    def _run(self, resume: bool) -> Path:
        cfg, acc = self.config, self.accelerator
        self.out.mkdir(parents=True, exist_ok=True)
        pairs, digest = read_pairs(cfg.responses, cfg.limit)
        gen = load(
            cfg.model,
            teacher=cfg.teacher,
            num_thought=cfg.num_thought,
            num_compress=cfg.num_compress,
            max_length=cfg.max_query_length,
            dtype=cfg.dtype,
            untrained=True,
            seed=cfg.seed,
        )
        self._provenance = check_provenance(
            pairs, gen.backbone, allow_foreign=cfg.allow_foreign_responses, force=cfg.force, data=cfg.data_dir
        )
        self._mix = pairs_mix(pairs)
        earlier: PromptFingerprint | None = PromptFingerprint()
        if cfg.init_from:
            # on --resume the step checkpoint's weights then replace these
            self._init_meta = init_from_checkpoint(gen, cfg.init_from)
            earlier = gen.training_prompts
        gen.training_prompts = PromptFingerprint.from_texts(
            [p.prompt for p in pairs], [Path(cfg.responses).name]
        ).union(earlier)
        gen.backbone.model.to(acc.device)
        gen.to(acc.device)
        targets = self._teacher_targets(gen, [p.response for p in pairs], digest)
        bf16 = cfg.mixed_precision == "bf16"
        if bf16:
            # The frozen LLM's weights in half precision, so autocast has nothing to cast each step;
            # the trainable rows and heads, their gradients and the optimiser state stay float32.
            gen.backbone.model.to(torch.bfloat16)
        # autocast here rather than through Accelerator(mixed_precision=...): accelerate's state is
        # one per process, so a notebook could not train a second run with another setting
        autocast = torch.autocast(acc.device.type, dtype=torch.bfloat16, enabled=bf16)
        eos = gen.tokenizer.eos_token_id
        rows = response_tokens(gen.tokenizer, [p.response for p in pairs], cfg.max_response_length, eos)
        prompts = with_instruction([p.prompt for p in pairs], cfg.query_instruction or None)
        if acc.is_main_process:
            write_run_config(self.out, self._run_config(gen, len(pairs), digest))

        optimizer = torch.optim.AdamW(gen.trainable_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, cfg.warmup_steps, cfg.schedule_steps)
        )
        warn = (lambda line: print(line, file=sys.stderr)) if acc.is_main_process else (lambda line: None)
        start, elapsed = restore_step(self.out, gen, optimizer, scheduler, warn) if resume else (0, 0.0)
        if acc.is_main_process:
            trim_log(self.out, start)
        model, optimizer = acc.prepare(gen, optimizer)
        writer = self._writer(start)
        dim = targets.shape[1]
        gen.trained = True  # step checkpoints hold trained weights
        self.model = gen  # the trained model, in memory (what the tests inspect)
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
                provenance=self._provenance,
                mix=self._mix,
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
        self._events = SummaryWriter(str(self.out / "tensorboard"), purge_step=start + 1 if start else None)
        return self._events

    def _log(self, record: dict[str, Any], writer: Any) -> None:
        if not self.accelerator.is_main_process or record["step"] % self.config.log_every:
            return
        append_log(self.out, record)
        if writer is not None:
            for key, value in record.items():
                if key != "step":
                    writer.add_scalar(f"train/{key}", value, record["step"])


def train(config: TrainConfig, *, resume: bool = False, show_progress: bool = True) -> Path:
    """Run a training job; returns the output folder (a loadable checkpoint)."""
    return Trainer(config, show_progress=show_progress).run(resume=resume)


__all__ = [  # the run folder's file names are re-exported for the callers of this module
    "CONFIG_FILE",
    "LOG_FILE",
    "RUN_CONFIG",
    "STATE_FILE",
    "TEACHER_CACHE",
    "WEIGHTS_FILE",
    "TrainConfig",
    "Trainer",
    "lr_factor",
    "step_dirs",
    "train",
]
