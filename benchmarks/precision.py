"""bfloat16 against float32 on this machine: is reduced precision a lever here, and what does it cost?

In one run, alternating the sides, on the default backbone with its shipped checkpoint:
- a 1024 x 1024 matrix product, float32 and bfloat16 (what the hardware gives);
- ``gen.embed`` of ``--texts`` NQ-open questions with the retrieval instruction, the frozen LLM in
  float32 and in bfloat16 (trained rows and heads float32 in both): texts/s, paired ratios, and the
  minimum cosine of the bfloat16 embeddings to the float32 ones;
- what ``dtype="auto"`` picks here, and why.

Run with ``python benchmarks/precision.py``; writes ``benchmarks/results/precision.json``. The
``auto`` default of ``workbench.load`` follows from such runs: bfloat16 only where it is native.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from common import machine_info, print_table

from workbench.core.registry import DEFAULT_BACKBONE

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "precision.json"
TARGET_COSINE = 0.995


def matmul_seconds(dtype: Any, size: int = 1024, repeats: int = 5) -> float:
    import torch

    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return (time.perf_counter() - start) / repeats


def questions(data: Path, k: int) -> list[str]:
    rows = (data / "nq-open" / "NQ-open.dev.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"].strip() for line in rows[:k]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("WORKBENCH_DATA", "../shared/data")))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    import torch
    from torch.nn import functional as F

    import workbench
    from workbench.core.config import QUERY_INSTRUCTION, resolve_dtype

    auto, why = resolve_dtype("auto", "cpu")
    fp32_mm = [matmul_seconds(torch.float32)]
    bf16_mm = [matmul_seconds(torch.bfloat16)]
    texts = questions(args.data, args.texts)
    models = {name: workbench.load(DEFAULT_BACKBONE, dtype=name) for name in ("float32", "bfloat16")}
    times: dict[str, list[float]] = {name: [] for name in models}
    embeddings: dict[str, torch.Tensor] = {}
    for gen in models.values():  # warm-up
        gen.embed(texts[: args.batch_size], instruction=QUERY_INSTRUCTION, batch_size=args.batch_size)
    for repeat in range(args.repeats):
        order = list(models) if repeat % 2 == 0 else list(reversed(models))
        for name in order:
            start = time.perf_counter()
            embeddings[name] = models[name].embed(
                texts, instruction=QUERY_INSTRUCTION, batch_size=args.batch_size, show_progress=False
            )
            times[name].append(time.perf_counter() - start)
    cosine = F.cosine_similarity(embeddings["bfloat16"], embeddings["float32"]).min().item()
    ratios = [b / f for b, f in zip(times["bfloat16"], times["float32"], strict=True)]
    speedup = 1 / statistics.median(ratios)
    result = {
        "backbone": DEFAULT_BACKBONE,
        "texts": len(texts),
        "batch_size": args.batch_size,
        "auto": {"dtype": auto, "why": why},
        "matmul_1024_s": {"float32": min(fp32_mm), "bfloat16": min(bf16_mm)},
        "matmul_bf16_over_fp32": min(bf16_mm) / min(fp32_mm),
        "encode_s": times,
        "encode_texts_per_s": {k: len(texts) / statistics.median(v) for k, v in times.items()},
        "paired_ratios_bf16_over_fp32": ratios,
        "bf16_speedup": speedup,
        "min_cosine_bf16_vs_fp32": cosine,
        "machine": machine_info(),
        "note": "bfloat16 is a lever only where the hardware has it: compare matmul_bf16_over_fp32",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print_table(
        f"bfloat16 vs float32, {DEFAULT_BACKBONE}, {len(texts)} texts ({why})",
        [
            ("1024² matmul, bf16 / fp32 time", f"{result['matmul_bf16_over_fp32']:.2f}x", "", None),
            ("encode fp32", f"{result['encode_texts_per_s']['float32']:.2f} texts/s", "", None),
            ("encode bf16", f"{result['encode_texts_per_s']['bfloat16']:.2f} texts/s", "", None),
            ("bf16 speed-up (median paired)", f"{speedup:.2f}x", "", None),
            ("min cosine bf16 vs fp32", f"{cosine:.4f}", f">= {TARGET_COSINE}", cosine >= TARGET_COSINE),
        ],
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
