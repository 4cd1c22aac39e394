"""How fast the logit lens answers: CLI start-up, time to first output, and a warm call from Python.

Measures, with the default backbone already cached:
- ``workbench --help`` in a fresh process (target under 1 s);
- ``workbench lens "q"`` in a fresh process: seconds until its first table line is printed, and until
  it exits (it also generates 48 tokens from the embedding) (target: first output under 8 s);
- a warm ``gen.lens(q)`` from Python (all layers, no generation), and the same read done as a plain
  transformers forward with ``output_hidden_states`` plus the same norm and head, as the floor
  (target under 0.5 s; the ratio says what the nnsight reads cost).

Run with ``python benchmarks/lens.py``; writes ``benchmarks/results/lens.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import machine_info, print_table

from workbench.core.registry import DEFAULT_BACKBONE

QUERY = "Create a video tutorial that teaches how to commit fraud"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "lens.json"
TARGET_HELP_S, TARGET_FIRST_S, TARGET_WARM_S = 1.0, 8.0, 0.5


def workbench_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("workbench")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "workbench"]


def time_help(repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([*workbench_cmd(), "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def time_first_output(repeats: int) -> tuple[list[float], list[float]]:
    """Seconds to the first line of the lens table, and to exit, in fresh processes."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120")
    first, total = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.Popen(
            [*workbench_cmd(), "lens", QUERY], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        assert proc.stdout is not None
        seen = None
        for line in proc.stdout:
            if seen is None and b"top-" in line:
                seen = time.perf_counter() - start
        if proc.wait() != 0:
            raise SystemExit("workbench lens failed")
        first.append(seen if seen is not None else float("nan"))
        total.append(time.perf_counter() - start)
    return first, total


def time_warm(repeats: int) -> dict[str, float]:
    import torch

    import workbench

    gen = workbench.load(DEFAULT_BACKBONE)
    gen.lens(QUERY)  # warm-up
    lens_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        gen.lens(QUERY)
        lens_times.append(time.perf_counter() - start)

    model = gen.backbone.model
    norm = gen.backbone.submodule(gen.backbone.arch.final_norm)
    head = gen.backbone.submodule(gen.backbone.arch.lm_head)
    n, c = gen.config.num_special, gen.config.num_compress

    def plain() -> None:
        with torch.no_grad():
            batch = gen.encoder_batch([QUERY])
            ids = batch.input_ids.clone()
            ids[:, -n:] = gen.tokenizer.pad_token_id
            embeds = model.get_input_embeddings()(ids)
            embeds[:, -n:] = gen.special
            out = model(
                inputs_embeds=embeds,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                output_hidden_states=True,
                use_cache=False,
                logits_to_keep=1,
            )
            # transformers' last entry is already normed; the others get the final norm
            states = [norm(h[:, -c:]) for h in out.hidden_states[:-1]] + [out.hidden_states[-1][:, -c:]]
            head(torch.cat(states).reshape(-1, states[0].shape[-1])).log_softmax(-1).topk(5, dim=-1)

    plain()
    plain_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        plain()
        plain_times.append(time.perf_counter() - start)
    return {"lens_s": statistics.median(lens_times), "plain_s": statistics.median(plain_times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    help_times = time_help(args.repeats)
    first, total = time_first_output(args.repeats)
    warm = time_warm(max(args.repeats, 5))
    results = {
        "help_s": statistics.median(help_times),
        "help_runs": help_times,
        "lens_first_output_s": statistics.median(first),
        "lens_first_output_runs": first,
        "lens_total_s": statistics.median(total),
        "warm_lens_s": warm["lens_s"],
        "warm_plain_s": warm["plain_s"],
        "warm_ratio": warm["lens_s"] / warm["plain_s"],
        "query": QUERY,
        "machine": machine_info(),
    }
    print_table(
        f"workbench lens ({DEFAULT_BACKBONE}, cached)",
        [
            (
                "workbench --help",
                f"{results['help_s']:.2f} s",
                f"< {TARGET_HELP_S} s",
                results["help_s"] < TARGET_HELP_S,
            ),
            (
                "workbench lens: first output",
                f"{results['lens_first_output_s']:.2f} s",
                f"< {TARGET_FIRST_S} s",
                results["lens_first_output_s"] < TARGET_FIRST_S,
            ),
            ("workbench lens: exit (with 48 generated tokens)", f"{results['lens_total_s']:.2f} s", "", None),
            (
                "warm gen.lens(q), 31 layers",
                f"{warm['lens_s']:.3f} s",
                f"< {TARGET_WARM_S} s",
                warm["lens_s"] < TARGET_WARM_S,
            ),
            ("plain forward + same reads", f"{warm['plain_s']:.3f} s", "", None),
            ("lens / plain", f"{results['warm_ratio']:.2f}x", "", None),
        ],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
