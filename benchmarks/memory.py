"""Memory of one long ``encode`` call: is the resident set flat while 20,000 short texts are embedded?

Loads the default backbone, then embeds ``--texts`` seeded short texts (about 10 words each) in a
single ``gen.embed`` call (``encode`` before 0.3) while a thread samples the process's resident set
size (``VmRSS``) every ``--interval`` seconds and counts the texts whose batch has been computed. It
reports the RSS once the first ``--after`` texts are done and at the end of the call (the result
tensor itself included), and the growth between the two beyond what the growing result accounts for.

Run with ``python benchmarks/memory.py``; writes ``benchmarks/results/memory.json``.

Target: the growth from the first 2,000 texts to the end, less the embeddings kept for the
remaining texts, stays under 64 MB (flat up to allocator noise).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import threading
import time
from pathlib import Path
from typing import Any

from common import machine_info, print_table

from workbench.core.registry import DEFAULT_BACKBONE

BACKBONE = DEFAULT_BACKBONE
TARGET_GROWTH_MB = 64.0
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "memory.json"

SUBJECTS = ("the river", "a teacher", "my phone", "the old bridge", "our team", "a small cat", "the market")
VERBS = ("needs", "explains", "breaks", "finds", "protects", "ignores", "measures", "paints")
OBJECTS = ("the map", "a new recipe", "the winter plan", "cheap tickets", "the noisy pump", "two coins")
TAILS = ("today", "again", "by noon", "at night", "for the third time", "without help", "in spring")


def short_texts(count: int, seed: int = 0) -> list[str]:
    """``count`` seeded texts of about ten words, each distinct (a running number ends it)."""
    rng = random.Random(seed)
    return [
        f"Why {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}, case {i}?"
        for i in range(count)
    ]


def rss_mb() -> float:
    """Resident set size now (``VmRSS``), decimal megabytes; the peak where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


class Sampler(threading.Thread):
    """Samples (seconds, texts done, RSS MB) until stopped."""

    def __init__(self, done: list[int], interval: float) -> None:
        super().__init__(daemon=True)
        self.done, self.interval = done, interval
        self.samples: list[tuple[float, int, float]] = []
        self._stop_event = threading.Event()
        self._start = time.perf_counter()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append((time.perf_counter() - self._start, self.done[0], rss_mb()))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def counting(batches: Any, done: list[int]) -> Any:
    """Wrap ``gen._batches`` so that ``done[0]`` counts the texts of the batches already computed."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        for idx, batch in batches(*args, **kwargs):
            yield idx, batch
            done[0] += len(idx)  # the caller has finished this batch when it asks for the next

    return wrapped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=20_000, help="texts embedded in the one call")
    parser.add_argument("--after", type=int, default=2_000, help="texts done at the first reading")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between RSS samples")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    import workbench

    before_load = rss_mb()
    gen = workbench.load(BACKBONE)
    texts = short_texts(args.texts)
    gen.embed(texts[: args.batch_size], batch_size=args.batch_size, show_progress=False)  # warm-up
    after_load = rss_mb()
    done = [0]
    gen._batches = counting(gen._batches, done)  # type: ignore[method-assign]
    sampler = Sampler(done, args.interval)
    print(f"encoding {args.texts} texts in one call (batch size {args.batch_size}) ...", flush=True)
    sampler.start()
    began = time.perf_counter()
    emb = gen.embed(texts, batch_size=args.batch_size, show_progress=False)
    seconds = time.perf_counter() - began
    at_end = rss_mb()
    sampler.stop()
    samples = sampler.samples

    at_after = next((rss for _, n, rss in samples if n >= args.after), None)
    if at_after is None:
        raise RuntimeError(f"no RSS sample after {args.after} texts: lower --interval")
    result_mb = emb.nbytes / 1e6  # a tensor or a numpy array
    expected_mb = result_mb * (args.texts - args.after) / args.texts  # result rows still to come
    growth = at_end - at_after
    excess = growth - expected_mb
    peak = max(rss for _, _, rss in samples)
    rows: list[tuple[str, str, str, bool | None]] = [
        ("texts x words", f"{args.texts} x ~{sum(len(t.split()) for t in texts) / len(texts):.0f}", "", None),
        ("encode time", f"{seconds:.0f} s ({args.texts / seconds:.0f} texts/s)", "", None),
        ("RSS after load + warm-up", f"{after_load:.0f} MB", "info", None),
        (f"RSS after {args.after} texts", f"{at_after:.0f} MB", "info", None),
        ("RSS at the end", f"{at_end:.0f} MB", "info", None),
        ("peak RSS sampled", f"{peak:.0f} MB", "info", None),
        ("embeddings returned", f"{list(emb.shape)}, {result_mb:.1f} MB", "info", None),
        (
            "growth beyond the result",
            f"{excess:.1f} MB",
            f"< {TARGET_GROWTH_MB:.0f} MB",
            excess < TARGET_GROWTH_MB,
        ),
    ]
    print_table(f"workbench encode memory ({BACKBONE}, one call)", rows)
    step = max(1, len(samples) // 200)  # keep about 200 samples in the file
    results = {
        "backbone": BACKBONE,
        "texts": args.texts,
        "after": args.after,
        "batch_size": args.batch_size,
        "encode_seconds": seconds,
        "rss_mb": {
            "before_load": before_load,
            "after_load_and_warmup": after_load,
            "after_first_texts": at_after,
            "at_end": at_end,
            "peak_sampled": peak,
        },
        "result_mb": result_mb,
        "growth_mb": growth,
        "growth_beyond_result_mb": excess,
        "target_growth_mb": TARGET_GROWTH_MB,
        "passed": excess < TARGET_GROWTH_MB,
        "samples": [
            {"s": round(t, 2), "texts_done": n, "rss_mb": round(rss, 1)} for t, n, rss in samples[::step]
        ],
        "notes": "RSS is VmRSS of this process, decimal MB, sampled by a thread; texts_done counts "
        "texts whose batch was computed. growth_beyond_result_mb = RSS at the end - RSS after the "
        "first texts - the size of the result rows computed in between.",
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out.name} in {args.out.parent.name}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
