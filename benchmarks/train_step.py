"""Training-step time and memory of the nnsight path against the same computation in plain PyTorch.

One training step as the trainer runs it (``gen(prompts)`` through nnsight, the summed
reconstruction and alignment losses, backward, AdamW over the special rows and both heads) is
compared with the same step written in plain PyTorch: the token embeddings of the encoder batch
with the special rows written over its last N positions, ``model.base_model`` for the post-norm
states, the same heads, and a plain ``model(inputs_embeds=...)`` forward for the decoder logits.
Both are first checked to give the same loss and gradients on one batch, then timed alternately
in one run on the same batches (medians of per-repeat mean step times). Memory: RSS and the count
of live torch tensors after step 20 and after step ``--steps`` of the nnsight path.

Data: deterministic synthetic prompts of about 20 tokens and responses capped at
``--response-tokens`` (plus EOS); the teacher targets are a fixed seeded random tensor, since the
teacher is not what is measured. Run with ``python benchmarks/train_step.py``.

Targets: nnsight step within 1.15x of plain PyTorch; RSS after ``--steps`` within 5% of RSS after
step 20.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import machine_info, print_table, token_counter

from workbench.core.registry import DEFAULT_BACKBONE

BACKBONE = DEFAULT_BACKBONE
TEACHER = "minilm"
TEACHER_DIM = 384
MAX_QUERY_LENGTH = 128
TARGET_RATIO = 1.15
TARGET_MEMORY_RATIO = 1.05
FIRST_MEMORY_STEP = 20
PROMPT_LOW, PROMPT_HIGH = 16, 24  # prompt token targets: about 20 on average
LR = 1e-3  # the shipped recipe's peak learning rate (constant here: no schedule)
SEED = 42
TOLERANCE = 1e-5
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "train_step.json"

# ----------------------------------------------------------------------------- synthetic pairs
ASKS = [
    "Explain briefly why",
    "Tell me in a few sentences how",
    "Describe what happened when",
    "Summarise the reasons why",
    "Write a short note about how",
    "Give a simple account of how",
    "Can you explain why",
    "Say in plain words how",
]
SUBJECTS = [
    "the harbour master",
    "a small bakery",
    "the city library",
    "an old lighthouse keeper",
    "the village school",
    "a team of volunteers",
    "the night train",
    "a local beekeeper",
    "the football club",
    "a young architect",
    "the weather station",
    "the hospital kitchen",
]
VERBS = [
    "changed",
    "rebuilt",
    "planned",
    "cancelled",
    "improved",
    "measured",
    "protected",
    "moved",
    "shared",
    "tested",
]
OBJECTS = [
    "its opening hours",
    "the northern footpath",
    "a winter market",
    "the water supply",
    "its oldest records",
    "the evening timetable",
    "a garden on the roof",
    "the annual budget",
    "the flood defences",
    "a new reading room",
]
REASONS = [
    "after the storm last spring",
    "when the funding ran out",
    "because visitors complained",
    "during the long summer holidays",
    "to save energy",
    "at the request of the council",
]
STATEMENTS = [
    "The first reason is practical.",
    "Most people noticed the change within a week.",
    "It started with a short meeting and a simple plan.",
    "The costs were shared between several groups.",
    "Some of the older residents were worried at first.",
    "A few careful measurements showed the real problem.",
    "The work took about three months to finish.",
    "Local newspapers followed the story closely.",
    "In the end, the result was better than expected.",
    "Volunteers helped with most of the heavy lifting.",
    "The plan was changed twice before it worked.",
    "Today the place is busier than it has been for years.",
    "Nobody had tried anything similar in the region before.",
    "The decision was not easy, but it was necessary.",
]


def _fit(words: list[str], target: int, count_tokens: Callable[[str], int]) -> str:
    """Drop trailing words while the text still has at least ``target`` tokens."""
    while len(words) > 1 and count_tokens(" ".join(words[:-1])) >= target:
        words.pop()
    return " ".join(words)


def make_pairs(
    count: int, count_tokens: Callable[[str], int], response_tokens: int, seed: int = 0
) -> list[tuple[str, str]]:
    """``count`` seeded (prompt, response) pairs: prompts of about 20 tokens, responses near the cap.

    Response targets spread over 0.75x-1.25x of ``response_tokens``, so about half are cut at the
    cap (as greedy responses capped at a maximum of new tokens are) and the rest leave padding.
    """
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        subject, verb, obj = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)
        words = f"{rng.choice(ASKS)} {subject} {verb} {obj} {rng.choice(REASONS)}?".split()
        target = rng.randint(PROMPT_LOW, PROMPT_HIGH)
        while count_tokens(" ".join(words)) < target:
            words += rng.choice(STATEMENTS).split()
        prompt = _fit(words, target, count_tokens)
        target = rng.randint(max(1, response_tokens * 3 // 4), response_tokens * 5 // 4)
        words = f"{subject.capitalize()} {verb} {obj} {rng.choice(REASONS)}.".split()
        while count_tokens(" ".join(words)) < target:
            words += rng.choice(STATEMENTS).split()
        pairs.append((prompt, _fit(words, target, count_tokens)))
    return pairs


# ----------------------------------------------------------------------------- the two steps
class Bench:
    """The model, the data split into fixed batches, one optimiser, and both step implementations."""

    def __init__(self, gen: Any, pairs: list[tuple[str, str]], batch_size: int, response_tokens: int):
        import torch

        from workbench.core.losses import response_tokens as tokenize_responses

        self.gen = gen
        self.model = gen.backbone.model
        self.device = self.model.get_input_embeddings().weight.device
        self.prompts = [p for p, _ in pairs]
        eos = gen.tokenizer.eos_token_id
        self.rows = tokenize_responses(gen.tokenizer, [r for _, r in pairs], response_tokens, eos)
        g = torch.Generator().manual_seed(SEED)
        self.targets = torch.randn(len(pairs), TEACHER_DIM, generator=g) / TEACHER_DIM**0.5
        self.batches = [
            list(range(i, min(i + batch_size, len(pairs)))) for i in range(0, len(pairs), batch_size)
        ]
        self.batch_size = batch_size
        self.dim = TEACHER_DIM
        self.optimizer = torch.optim.AdamW(gen.trainable_parameters(), lr=LR, weight_decay=0.0)

    # -- losses, shared by both paths except for how states and logits are computed
    def _scaled_loss(self, rec: Any, ali: Any, tokens: int) -> Any:
        """The trainer's loss (weights 1): token-mean reconstruction plus per-dimension alignment."""
        return rec / tokens + ali / (self.batch_size * self.dim)

    def nnsight_loss(self, idx: list[int]) -> tuple[Any, Any]:
        """Forward and loss exactly as ``Trainer.run`` computes them (one process, no accumulation)."""
        from workbench.core.losses import alignment_loss_sum, pad_right, reconstruction_loss_sum

        gen = self.gen
        tokens = sum(len(self.rows[i]) for i in idx)
        out = gen([self.prompts[i] for i in idx])
        rec = reconstruction_loss_sum(
            gen.traced, out["soft_prompt"], pad_right([self.rows[i] for i in idx], gen.tokenizer.pad_token_id)
        )
        ali = alignment_loss_sum(out["embedding"], self.targets[idx])
        return self._scaled_loss(rec, ali, tokens), out["embedding"]

    def plain_loss(self, idx: list[int]) -> tuple[Any, Any]:
        """The same computation with plain PyTorch/transformers calls: no nnsight trace."""
        import torch
        from torch.nn import functional as F

        from workbench.core.inputs import check_texts, position_ids
        from workbench.core.losses import pad_right

        gen, model, device = self.gen, self.model, self.device
        tokens = sum(len(self.rows[i]) for i in idx)
        # encoder: special rows written over the token embeddings of the last N positions
        batch = gen.encoder_batch(check_texts([self.prompts[i] for i in idx]))
        n, c = gen.special.shape[0], gen.config.num_compress
        ids = batch.input_ids.clone()
        ids[:, -n:] = gen.tokenizer.pad_token_id
        embeds = model.get_input_embeddings()(ids.to(device))
        rows = gen.special.to(embeds.dtype).unsqueeze(0).expand(embeds.shape[0], -1, -1)
        embeds = torch.cat([embeds[:, : embeds.shape[1] - n], rows], dim=1)
        hidden = model.base_model(
            inputs_embeds=embeds,
            attention_mask=batch.attention_mask.to(device),
            position_ids=batch.position_ids.to(device),
            use_cache=False,
        ).last_hidden_state  # post final norm
        soft = gen.soft_prompt(hidden[:, -c:])
        embedding = gen.alignment(soft).mean(1)
        # decoder: soft prompt, then the response tokens; the same summed cross-entropy
        target = pad_right([self.rows[i] for i in idx], gen.tokenizer.pad_token_id)
        rids, rmask = target.ids.to(device), target.mask.to(device)
        dec = torch.cat([soft, model.get_input_embeddings()(rids).to(soft.dtype)], dim=1)
        attention = torch.cat([torch.ones(soft.shape[:2], dtype=rmask.dtype, device=device), rmask], dim=1)
        logits = model(
            inputs_embeds=dec,
            attention_mask=attention,
            position_ids=position_ids(attention),
            use_cache=False,
        ).logits
        predictions = logits[:, c - 1 : c - 1 + rids.shape[1]].float()
        ce = F.cross_entropy(
            predictions.reshape(-1, predictions.shape[-1]), rids.reshape(-1), reduction="none"
        )
        rec = (ce * rmask.reshape(-1)).sum()
        ali = (embedding.float() - self.targets[idx].to(device).float()).pow(2).sum()
        return self._scaled_loss(rec, ali, tokens), embedding

    def step(self, path: str, idx: list[int]) -> float:
        """One full optimiser step; returns the loss (read back, as the trainer's logging does)."""
        loss, _ = (self.nnsight_loss if path == "nnsight" else self.plain_loss)(idx)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.item())

    def gradients(self, path: str, idx: list[int]) -> tuple[float, Any, dict[str, Any]]:
        """Loss, embedding and gradients of one batch, with no optimiser step."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, embedding = (self.nnsight_loss if path == "nnsight" else self.plain_loss)(idx)
        loss.backward()
        grads = {name: p.grad.detach().clone() for name, p in self.gen.named_parameters()}
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.item()), embedding.detach().clone(), grads


def check_equivalence(bench: Bench) -> dict[str, Any]:
    """Both paths on the first batch: the same loss, embeddings and gradients to ~1e-5 (relative)."""
    idx = bench.batches[0]
    loss_a, emb_a, grads_a = bench.gradients("nnsight", idx)
    loss_b, emb_b, grads_b = bench.gradients("plain", idx)

    def rel(a: Any, b: Any) -> float:
        return float((a - b).abs().max() / a.abs().max().clamp(min=1e-30))

    report = {
        "loss_nnsight": loss_a,
        "loss_plain": loss_b,
        "loss_rel_diff": abs(loss_a - loss_b) / max(abs(loss_a), 1e-30),
        "embedding_rel_diff": rel(emb_a, emb_b),
        "grad_rel_diff": {name: rel(grads_a[name], grads_b[name]) for name in grads_a},
    }
    worst = max(report["loss_rel_diff"], report["embedding_rel_diff"], *report["grad_rel_diff"].values())
    report["max_rel_diff"] = worst
    if not all(float(g.abs().max()) > 0 for g in grads_a.values()):
        raise RuntimeError(f"a trainable parameter got no gradient: {report}")
    if worst > TOLERANCE:
        raise RuntimeError(f"the two paths differ (max relative difference {worst:.2e}): {report}")
    return report


# ----------------------------------------------------------------------------- measurements
def rss_mb() -> float:
    """Resident set size now (VmRSS), in decimal megabytes."""
    with open("/proc/self/status") as fh:
        line = next(x for x in fh if x.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024 / 1e6


def live_objects() -> dict[str, int]:
    """Live torch tensors (parameters included) and nnsight objects, after a full collection."""
    import torch

    gc.collect()
    tensors = nnsight_objects = 0
    with warnings.catch_warnings():  # isinstance on deprecated torch aliases warns
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            try:
                if isinstance(obj, torch.Tensor):
                    tensors += 1
                elif type(obj).__module__.startswith("nnsight"):
                    nnsight_objects += 1
            except Exception:  # objects whose type lookup fails (e.g. dead proxies)
                continue
    return {"tensors": tensors, "nnsight_objects": nnsight_objects}


def measure_memory(bench: Bench, steps: int) -> dict[str, Any]:
    """RSS and live objects after step 20 and after step ``steps`` of the nnsight path."""
    trace, losses, points = [], [], {}
    for step in range(1, steps + 1):
        idx = bench.batches[(step - 1) % len(bench.batches)]
        losses.append(bench.step("nnsight", idx))
        trace.append(round(rss_mb(), 1))
        if step in (FIRST_MEMORY_STEP, steps):
            objects = live_objects()  # collects first, so RSS is read after gc too
            points[step] = {"rss_mb": rss_mb(), **objects}
            print(
                f"  step {step:>4}: RSS {points[step]['rss_mb']:.1f} MB, "
                f"{objects['tensors']} tensors, {objects['nnsight_objects']} nnsight objects",
                flush=True,
            )
        elif step % 10 == 0:
            print(f"  step {step:>4}: RSS {trace[-1]:.1f} MB, loss {losses[-1]:.4f}", flush=True)
    first, last = points[FIRST_MEMORY_STEP], points[steps]
    return {
        "steps": steps,
        "at_first": {"step": FIRST_MEMORY_STEP, **first},
        "at_last": {"step": steps, **last},
        "rss_ratio": last["rss_mb"] / first["rss_mb"],
        "tensor_growth": last["tensors"] - first["tensors"],
        "nnsight_object_growth": last["nnsight_objects"] - first["nnsight_objects"],
        "rss_trace_mb": trace,
        "losses": losses,
    }


def timed_epoch(bench: Bench, path: str) -> list[float]:
    """Seconds of each step over one pass of the fixed batches."""
    times = []
    for idx in bench.batches:
        start = time.perf_counter()
        bench.step(path, idx)
        times.append(time.perf_counter() - start)
    return times


def measure_steps(bench: Bench, repeats: int, warmup: int) -> dict[str, list[list[float]]]:
    """Warm both paths up, then run one pass of the batches per path, alternately (order rotated)."""
    for path in ("nnsight", "plain"):
        for w in range(warmup):
            bench.step(path, bench.batches[w % len(bench.batches)])
    times: dict[str, list[list[float]]] = {"nnsight": [], "plain": []}
    for r in range(repeats):
        for path in ("nnsight", "plain") if r % 2 == 0 else ("plain", "nnsight"):
            times[path].append(timed_epoch(bench, path))
            mean = statistics.mean(times[path][-1])
            print(f"  repeat {r + 1}/{repeats} {path:<8} {mean:6.3f} s/step", flush=True)
    return times


# ----------------------------------------------------------------------------- report
def main(argv: list[str] | None = None) -> int:
    """Check equivalence, measure memory and step times, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per optimiser step")
    parser.add_argument("--pairs", type=int, default=64, help="synthetic pairs (fixed batches of them)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating passes over the batches")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per path before timing")
    parser.add_argument("--steps", type=int, default=200, help="nnsight steps of the memory check")
    parser.add_argument("--response-tokens", type=int, default=64, help="response cap (EOS added)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's); use 1 beside another job"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args(argv)
    if args.steps <= FIRST_MEMORY_STEP:
        parser.error(f"--steps must be more than {FIRST_MEMORY_STEP}")
    if args.pairs < args.batch_size or args.batch_size < 1:
        parser.error("--pairs must be at least --batch-size, and --batch-size at least 1")

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    import workbench

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    load_before = os.getloadavg()
    print(f"loading {BACKBONE} (untrained, teacher {TEACHER}) ...", flush=True)
    gen = workbench.load(BACKBONE, untrained=True, teacher=TEACHER, max_length=MAX_QUERY_LENGTH)
    if gen.config.teacher_dim != TEACHER_DIM:
        raise RuntimeError(f"expected a {TEACHER_DIM}-d alignment head, got {gen.config.teacher_dim}")
    count_tokens = token_counter(gen.tokenizer)
    pairs = make_pairs(args.pairs, count_tokens, args.response_tokens)
    bench = Bench(gen, pairs, args.batch_size, args.response_tokens)
    prompt_tokens = [count_tokens(p) for p, _ in pairs]
    response_lengths = [len(r) for r in bench.rows]
    widths = [gen.encoder_batch([bench.prompts[i] for i in b]).input_ids.shape[1] for b in bench.batches]

    print("equivalence: loss and gradients of both paths on one batch ...", flush=True)
    equivalence = check_equivalence(bench)
    print(f"  max relative difference {equivalence['max_rel_diff']:.2e}", flush=True)

    print(f"memory: {args.steps} nnsight steps ...", flush=True)
    memory = measure_memory(bench, args.steps)

    print(f"step time: {len(bench.batches)} batches per pass, {args.repeats} repeats", flush=True)
    times = measure_steps(bench, args.repeats, args.warmup)
    load_after = os.getloadavg()
    per_repeat = {path: [statistics.mean(t) for t in runs] for path, runs in times.items()}
    median = {path: statistics.median(v) for path, v in per_repeat.items()}
    ratio = median["nnsight"] / median["plain"]
    paired = [a / b for a, b in zip(per_repeat["nnsight"], per_repeat["plain"], strict=True)]
    steps_per_s = {path: 1.0 / m for path, m in median.items()}
    pairs_per_s = {path: args.batch_size / m for path, m in median.items()}
    mem_ok = memory["rss_ratio"] <= TARGET_MEMORY_RATIO
    first, last = memory["at_first"], memory["at_last"]

    rows: list[tuple[str, str, str, bool | None]] = [
        (
            "pairs (prompt + response)",
            f"{args.pairs} ({statistics.mean(prompt_tokens):.1f} + "
            f"{statistics.mean(response_lengths):.1f} tok)",
            f"~20 + <={args.response_tokens + 1} tok",
            None,
        ),
        (
            "max relative diff (loss, grads)",
            f"{equivalence['max_rel_diff']:.1e}",
            f"<= {TOLERANCE:.0e}",
            True,
        ),
        ("nnsight step", f"{median['nnsight']:.3f} s", "", None),
        ("plain PyTorch step", f"{median['plain']:.3f} s", "", None),
        ("nnsight / plain", f"{ratio:.3f}x", f"<= {TARGET_RATIO}x", ratio <= TARGET_RATIO),
        (
            "paired ratios (per repeat)",
            f"{min(paired):.3f}-{max(paired):.3f}x",
            "info",
            None,
        ),
        ("steps/s (nnsight)", f"{steps_per_s['nnsight']:.3f}", "info", None),
        ("pairs/s (nnsight)", f"{pairs_per_s['nnsight']:.2f}", "info", None),
        ("pairs/s (plain)", f"{pairs_per_s['plain']:.2f}", "info", None),
        (f"RSS after step {FIRST_MEMORY_STEP}", f"{first['rss_mb']:.1f} MB", "", None),
        (f"RSS after step {args.steps}", f"{last['rss_mb']:.1f} MB", "", None),
        (
            f"RSS {args.steps} / {FIRST_MEMORY_STEP}",
            f"{memory['rss_ratio']:.3f}x",
            f"<= {TARGET_MEMORY_RATIO}x",
            mem_ok,
        ),
        ("live tensors", f"{first['tensors']} -> {last['tensors']}", "info", None),
        ("live nnsight objects", f"{first['nnsight_objects']} -> {last['nnsight_objects']}", "info", None),
        ("load average (1 min) before/after", f"{load_before[0]:.2f} / {load_after[0]:.2f}", "info", None),
    ]
    print_table(f"workbench training-step benchmark ({BACKBONE}, batch {args.batch_size})", rows)

    results = {
        "backbone": BACKBONE,
        "teacher_dim": TEACHER_DIM,
        "batch_size": args.batch_size,
        "pairs": args.pairs,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "response_tokens": args.response_tokens,
        "special_tokens": {"thought": gen.config.num_thought, "compress": gen.config.num_compress},
        "prompt_tokens": {
            "mean": statistics.mean(prompt_tokens),
            "min": min(prompt_tokens),
            "max": max(prompt_tokens),
        },
        "response_tokens_incl_eos": {
            "mean": statistics.mean(response_lengths),
            "min": min(response_lengths),
            "max": max(response_lengths),
        },
        "encoder_widths_incl_special": widths,
        "equivalence": equivalence,
        "step_seconds": times,
        "mean_step_seconds_per_repeat": per_repeat,
        "median_step_seconds": median,
        "ratio_nnsight_over_plain": ratio,
        "paired_ratios": paired,
        "steps_per_s": steps_per_s,
        "pairs_per_s": pairs_per_s,
        "memory": memory,
        "load_average": {"before": load_before, "after": load_after},
        "targets": {"ratio": TARGET_RATIO, "memory_ratio": TARGET_MEMORY_RATIO, "tolerance": TOLERANCE},
        "passed": {"ratio": ratio <= TARGET_RATIO, "memory": mem_ok, "equivalence": True},
        "notes": "step = forward (tokenization included), both losses, backward, AdamW step, zero_grad "
        "and loss.item(); constant lr, no scheduler. Both paths share one parameter set and "
        "optimiser. Step time per path: mean over one pass of the fixed batches, median over "
        "repeats. Memory: VmRSS and gc-tracked objects after gc.collect(), nnsight path only, "
        "measured before the timing phase.",
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
