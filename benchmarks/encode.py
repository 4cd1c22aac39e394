"""Encoding throughput, cached load time and peak memory of the default backbone.

Encodes deterministic synthetic texts of about 64 tokens with ``workbench.load(...).encode`` and
compares with the forward-pass floor: a plain transformers forward of the same backbone on the
same batches (no nnsight wrapper, no heads), measured alternately in one run. Load time and peak
memory are measured in fresh subprocesses. Run with ``python benchmarks/encode.py``.

Targets: encode within 1.15x of the floor, cached load under 3 s, peak RSS under 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import machine_info, print_table, token_counter

from workbench.core.hashing import sha256_text
from workbench.core.registry import DEFAULT_BACKBONE

BACKBONE = DEFAULT_BACKBONE
TARGET_RATIO = 1.15
TARGET_LOAD_S = 3.0
TARGET_PEAK_MB = 1500.0  # 1.5 GB, decimal megabytes
TOKENS_LOW, TOKENS_HIGH = 56, 72  # per-text token targets: about 64 on average
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "encode.json"

# ----------------------------------------------------------------------------- synthetic texts
SUBJECTS = [
    "The committee",
    "A young engineer",
    "Our neighbour",
    "The research team",
    "My grandmother",
    "The city council",
    "A travelling musician",
    "The school principal",
    "Every farmer in the valley",
    "The new manager",
    "A curious student",
    "The museum curator",
    "The night nurse",
    "The software company",
    "A retired pilot",
    "The local bakery",
    "The orchestra",
    "The fishing crew",
]
VERBS = [
    "discussed",
    "repaired",
    "carefully studied",
    "quietly rejected",
    "enthusiastically supported",
    "documented",
    "postponed",
    "redesigned",
    "explained",
    "questioned",
    "celebrated",
    "measured",
    "painted",
    "translated",
    "reorganised",
    "tested",
    "borrowed",
    "described",
]
OBJECTS = [
    "the old railway bridge",
    "a proposal for cheaper bus tickets",
    "the broken water pump",
    "the history of the harbour",
    "a recipe for sourdough bread",
    "the results of the soil survey",
    "the winter festival schedule",
    "a map of the northern hills",
    "the budget for the new library",
    "the noisy ventilation system",
    "a collection of medieval coins",
    "the rules of the chess club",
    "the migration of swallows",
    "an unusual pattern in the sales data",
    "the roof of the town hall",
    "a plan to plant more trees",
    "the causes of the power outage",
    "the vaccine delivery route",
]
ADVERBIALS = [
    "before the heavy rain started",
    "during a long meeting on Tuesday",
    "with surprising patience",
    "after several weeks of delay",
    "in front of a large audience",
    "without asking for any help",
    "despite the limited budget",
    "while the children were asleep",
    "at the request of the mayor",
    "for the third time this year",
    "using only simple tools",
    "as the sun was setting",
]
FOLLOW_UPS = [
    "Nobody expected the outcome.",
    "Several people asked questions afterwards.",
    "The newspaper wrote a short article about it.",
    "It took longer than anyone had planned.",
    "Some details are still unclear.",
    "Everyone agreed to meet again next month.",
    "The report will be published in the spring.",
    "A few critics remained unconvinced.",
]


def _sentence(rng: random.Random) -> str:
    text = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(ADVERBIALS)}."
    return f"{text} {rng.choice(FOLLOW_UPS)}" if rng.random() < 0.3 else text


def make_texts(count: int, count_tokens: Callable[[str], int], seed: int = 0) -> list[str]:
    """``count`` seeded synthetic texts, each cut at a word boundary near a 56-72 token target."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        target = rng.randint(TOKENS_LOW, TOKENS_HIGH)
        words: list[str] = []
        while not words or count_tokens(" ".join(words)) < target:
            words += _sentence(rng).split()
        while len(words) > 1 and count_tokens(" ".join(words[:-1])) >= target:
            words.pop()
        texts.append(" ".join(words))
    return texts


def texts_digest(texts: list[str]) -> str:
    """sha256 of the texts, to check that a subprocess encoded the same ones."""
    return sha256_text(json.dumps(texts))


# ----------------------------------------------------------------------------- in-process timing
def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        torch.cuda.synchronize(device)


def floor_pass(gen: Any, texts: list[str], batch_size: int, keep_one: bool) -> float:
    """Seconds for a plain transformers forward over the batches that ``gen.encode`` builds.

    Same length-sorted chunks and EncoderBatch (tokenization included, as in encode); the special
    positions hold the pad id, as in the workbench's lookup before it injects the special rows.
    """
    import torch

    model = gen.backbone.model
    device = model.get_input_embeddings().weight.device
    n, pad = len(gen.special_ids), gen.tokenizer.pad_token_id
    extra = {"logits_to_keep": 1} if keep_one else {}
    start = time.perf_counter()
    with torch.no_grad():
        # gen._batches is the exact chunking encode uses (length-sorted, same batch size).
        for _, batch in gen._batches(texts, batch_size, "floor", False):
            ids = batch.input_ids.clone()
            ids[:, -n:] = pad
            model(
                input_ids=ids.to(device),
                attention_mask=batch.attention_mask.to(device),
                position_ids=batch.position_ids.to(device),
                use_cache=False,
                **extra,
            )
    _sync(device)
    return time.perf_counter() - start


def encode_pass(gen: Any, texts: list[str], batch_size: int) -> float:
    """Seconds for ``gen.encode`` over all texts."""
    start = time.perf_counter()
    gen.embed(texts, batch_size=batch_size, show_progress=False)
    _sync(gen.special.device)
    return time.perf_counter() - start


def measure_throughput(
    gen: Any, texts: list[str], batch_size: int, repeats: int, warmup_texts: int
) -> dict[str, list[float]]:
    """Warm up each variant once, then run them alternately (order rotated) ``repeats`` times."""
    variants: dict[str, Callable[[list[str]], float]] = {
        "floor_keep1": lambda t: floor_pass(gen, t, batch_size, keep_one=True),
        "floor_full_logits": lambda t: floor_pass(gen, t, batch_size, keep_one=False),
        "encode": lambda t: encode_pass(gen, t, batch_size),
    }
    for run in variants.values():
        run(texts[:warmup_texts])
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(variants[name](texts))
            print(f"  repeat {r + 1}/{repeats} {name:<18} {times[name][-1]:7.2f} s", flush=True)
    return times


# ----------------------------------------------------------------------------- subprocesses
LOAD_CHILD = """
import json, time
t0 = time.perf_counter()
import torch, transformers, nnsight
from transformers import AutoModelForCausalLM, AutoTokenizer
import workbench
from workbench.core import backbone, model
from workbench.store import loading as api
t1 = time.perf_counter()
obj = workbench.{func}({name!r})
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1}}))
"""

PEAK_CHILD = """
import json, platform, resource, sys
def rss_mb():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if platform.system() == "Darwin" else peak * 1024 / 1e6
def hwm_mb():
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) * 1024 / 1e6
sys.path.insert(0, {bench_dir!r})
from common import token_counter
from encode import make_texts, texts_digest
import workbench
gen = workbench.load({name!r})
after_load = rss_mb()
texts = make_texts({count}, token_counter(gen.tokenizer))
emb = gen.embed(texts, batch_size={batch_size}, show_progress=False)
print(json.dumps({{"after_load_mb": after_load, "peak_mb": rss_mb(), "vm_hwm_mb": hwm_mb(),
                  "shape": list(emb.shape), "texts_sha256": texts_digest(texts)}}))
"""


def run_child(code: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter and parse the JSON of its last stdout line."""
    env = {**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_loads(runs: int) -> dict[str, list[dict[str, float]]]:
    """Import and load seconds of ``load_backbone`` and ``load`` in fresh processes (cache warm)."""
    return {
        func: [run_child(LOAD_CHILD.format(func=func, name=BACKBONE)) for _ in range(runs)]
        for func in ("load_backbone", "load")
    }


def measure_peak(count: int, batch_size: int) -> dict[str, Any]:
    """Peak RSS of a fresh process that loads the model and encodes the ``count`` benchmark texts.

    Run it before this process loads anything large: on Linux a child's ``ru_maxrss`` starts from
    the parent's RSS at fork, so ``VmHWM`` (reset at exec) is reported as a cross-check.
    """
    code = PEAK_CHILD.format(
        bench_dir=str(Path(__file__).resolve().parent), name=BACKBONE, count=count, batch_size=batch_size
    )
    return run_child(code)


# ----------------------------------------------------------------------------- report
def main(argv: list[str] | None = None) -> int:
    """Run all measurements, print the table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=256, help="number of texts to encode")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="alternating floor/encode repeats")
    parser.add_argument("--load-runs", type=int, default=3, help="fresh processes per load timing")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    print(f"cached loads: {args.load_runs} fresh processes each ...", flush=True)
    loads = measure_loads(args.load_runs)
    load_med = {
        func: {k: statistics.median(r[k] for r in runs) for k in ("import_s", "load_s")}
        for func, runs in loads.items()
    }
    print("peak memory: fresh process loading and encoding ...", flush=True)
    peak = measure_peak(args.texts, args.batch_size)

    import workbench

    print(f"loading {BACKBONE} ...", flush=True)
    gen = workbench.load(BACKBONE)
    count_tokens = token_counter(gen.tokenizer)
    texts = make_texts(args.texts, count_tokens)
    if texts_digest(texts) != peak["texts_sha256"]:
        raise RuntimeError("the peak-memory subprocess made different texts")
    counts = [count_tokens(t) for t in texts]
    widths = [b.input_ids.shape[1] for _, b in gen._batches(texts, args.batch_size, "", False)]

    print(f"throughput: {args.texts} texts, batch size {args.batch_size}, {args.repeats} repeats", flush=True)
    times = measure_throughput(
        gen, texts, args.batch_size, args.repeats, warmup_texts=min(len(texts), 2 * args.batch_size)
    )
    median = {name: statistics.median(v) for name, v in times.items()}
    ratio = median["encode"] / median["floor_keep1"]
    ratio_full = median["encode"] / median["floor_full_logits"]
    paired = [e / f for e, f in zip(times["encode"], times["floor_keep1"], strict=True)]

    tps = {name: args.texts / m for name, m in median.items()}
    rows: list[tuple[str, str, str, bool | None]] = [
        (
            "texts",
            f"{args.texts} x {statistics.mean(counts):.1f} tok ({min(counts)}-{max(counts)})",
            "~64 tokens",
            None,
        ),
        ("encode", f"{tps['encode']:.1f} texts/s ({median['encode']:.2f} s)", "", None),
        (
            "floor (logits_to_keep=1)",
            f"{tps['floor_keep1']:.1f} texts/s ({median['floor_keep1']:.2f} s)",
            "",
            None,
        ),
        (
            "floor (full logits)",
            f"{tps['floor_full_logits']:.1f} texts/s ({median['floor_full_logits']:.2f} s)",
            "",
            None,
        ),
        ("encode / floor (keep 1)", f"{ratio:.3f}x", f"<= {TARGET_RATIO}x", ratio <= TARGET_RATIO),
        ("encode / floor (full)", f"{ratio_full:.3f}x", "info", None),
        ("imports (fresh process)", f"{load_med['load']['import_s']:.2f} s", "info", None),
        (
            "cached load_backbone",
            f"{load_med['load_backbone']['load_s']:.2f} s",
            f"< {TARGET_LOAD_S:.0f} s",
            load_med["load_backbone"]["load_s"] < TARGET_LOAD_S,
        ),
        (
            "cached workbench.load",
            f"{load_med['load']['load_s']:.2f} s",
            f"< {TARGET_LOAD_S:.0f} s",
            load_med["load"]["load_s"] < TARGET_LOAD_S,
        ),
        ("peak RSS after load", f"{peak['after_load_mb']:.0f} MB", "info", None),
        (
            "peak RSS (load+encode)",
            f"{peak['peak_mb']:.0f} MB",
            f"< {TARGET_PEAK_MB:.0f} MB",
            peak["peak_mb"] < TARGET_PEAK_MB,
        ),
        (
            "peak VmHWM (load+encode)",
            "n/a" if peak["vm_hwm_mb"] is None else f"{peak['vm_hwm_mb']:.0f} MB",
            "info",
            None,
        ),
    ]
    print_table(f"workbench encode benchmark ({BACKBONE})", rows)

    results = {
        "backbone": BACKBONE,
        "texts": args.texts,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "tokens_per_text": {"mean": statistics.mean(counts), "min": min(counts), "max": max(counts)},
        "batch_widths_incl_special": widths,
        "seconds": times,
        "median_seconds": median,
        "texts_per_s": tps,
        "ratio_encode_over_floor_keep1": ratio,
        "ratio_encode_over_floor_full_logits": ratio_full,
        "paired_ratios_keep1": paired,
        "loads": loads,
        "load_median_s": load_med,
        "peak_memory": peak,
        "targets": {"ratio": TARGET_RATIO, "load_s": TARGET_LOAD_S, "peak_mb": TARGET_PEAK_MB},
        "passed": {
            "ratio": ratio <= TARGET_RATIO,
            "load_backbone": load_med["load_backbone"]["load_s"] < TARGET_LOAD_S,
            "load": load_med["load"]["load_s"] < TARGET_LOAD_S,
            "peak_memory": peak["peak_mb"] < TARGET_PEAK_MB,
        },
        "notes": "floor = plain transformers forward (torch.no_grad, use_cache=False) on the batches "
        "encode builds, tokenization included; load times exclude imports (timed apart).",
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
