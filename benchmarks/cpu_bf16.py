"""Issue 18's targets on a CPU with native bfloat16 (AVX-512 BF16 / AMX), on REAL weights.

Each registry backbone is loaded with its shipped trained checkpoint (``workbench.load(name,
dtype="float32" | "bfloat16")``) and exported for the official ``llm2vec-gen`` 0.1.3 with
``export_official(copy_base=True)`` (``gpu.export_official_pair``); the official side runs in its own
process (``gpu_official_worker.py --serve``: transformers 4.56 from ``--official-site``) that stays
up, so its timed passes alternate with the workbench's. Sections, each under a time limit, the JSON
rewritten (atomically) after each one (``gpu.Run``):

- encode: the same texts and batch size, fp32 and bf16, workbench and official, four sides in a
  rotating order each repeat (``gpu.encode_section``): texts/s, paired ratios, bf16-vs-fp32 cosine;
- generate: ``gen.generate`` from the embedding, 256 new tokens (forced: EOS suppressed), batch 8
  and 1, both dtypes, alternating, with the official ``generate`` loop (bf16) in the first repeat
  (``gpu.generate_section``);
- train: the trainer's step in float32 and with its ``mixed_precision=bf16`` recipe (a second model,
  backbone cast to bfloat16, rows and heads float32, autocast), the steps alternating;
- retrieval: AdvBench-IR queries and their corpus (``workbench.eval.safety_data``, as
  ``workbench eval safety --limit Q`` builds it; ``--corpus N``: a seeded subset), each encoded once
  per dtype; cosine top-10 lists, bf16 against fp32: mean and minimum overlap;
- rss: peak RSS of load + one encode pass, each side and dtype in a fresh process.

``checks`` in the JSON lists every target with its value and pass/fail. ``--tiny`` is the dry run:
the same real weights (full depth) with a few texts, tokens and steps.

Run: ``python benchmarks/cpu_bf16.py [--tiny] [--backbones a,b] [--budget-s S] [--corpus N]`` on an
otherwise idle machine; writes ``benchmarks/results/cpu_bf16.json`` (give ``--tiny`` another
``--out``). The official site folder (never the workbench's venv)::

    pip install --target /tmp/offsite --no-deps llm2vec-gen==0.1.3 transformers==4.56.2 peft==0.18.0 \\
        tokenizers==0.22.1 "huggingface_hub>=0.34,<1.0"
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import IO, Any

from common import machine_info, peak_rss_mb
from gpu import (
    BACKBONES,
    DEFAULT_OFFICIAL_SITE,
    Run,
    TrainBench,
    _data_dir,
    bench_texts,
    encode_section,
    export_official_pair,
    free_memory,
    generate_section,
    load_gen,
    median,
    min_cosine,
    rotated,
    short_prompts,
    versions,
)

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "cpu_bf16.json"
SEED = 0
TARGETS = {
    "encode_vs_official": 1.5,
    "min_cosine_bf16_vs_fp32": 0.995,
    "top10_overlap_mean": 0.95,
    "generate_vs_official": 3.0,
    "train_bf16_speedup": 1.8,
    "first_loss_rel_diff": 0.01,
    "peak_rss_vs_official": 0.75,
}
CPU = {
    "texts": 128,
    "batch_size": 16,
    "repeats": 3,
    "queries": 200,
    "corpus": 1000,
    "top_k": 10,
    "new_tokens": 256,
    "gen_batches": [8, 1],
    "gen_repeats": 2,
    "official_gen_repeats": 1,
    "official_gen_dtypes": ["bfloat16"],
    "train_batch": 8,
    "train_pairs": 64,
    "input_tokens": 128,
    "response_tokens": 20,
    "train_warmup": 1,
    "train_steps": 4,
    "rss_dtypes": ["bfloat16", "float32"],
}
TINY = {
    **CPU,
    "texts": 8,
    "batch_size": 4,
    "repeats": 1,
    "queries": 4,
    "corpus": 12,
    "new_tokens": 8,
    "gen_batches": [2, 1],
    "gen_repeats": 1,
    "train_batch": 2,
    "train_pairs": 4,
    "input_tokens": 40,
    "response_tokens": 4,
    "train_steps": 1,
}
# Per-section limits in seconds, sized for Qwen2.5-Coder-0.5B on 2 cores; the run also has --budget-s.
LIMITS = {
    "load": 300,
    "official_export": 300,
    "official_start": 600,
    "encode": 1500,
    "generate": 2400,
    "train": 1200,
    "retrieval": 2400,
    "official_finish": 120,
    "rss": 1500,
}


# ----------------------------------------------------------------------------- the official side
class OfficialServer:
    """``gpu_official_worker.py --serve`` in its own process: one JSON command a line, one reply line."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._err: IO[str] = log.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True, env=env
        )
        self.broken = False
        try:
            self.ready = self._read("READY ")
        except BaseException:  # a time limit or a crash while loading: no worker left behind
            self.close()
            raise

    def _read(self, prefix: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.broken = True
                raise RuntimeError(f"official worker exited ({self.proc.poll()}): {self.tail()}")
            if line.startswith(prefix):
                return json.loads(line[len(prefix) :])

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send a command and wait for its reply; a call cut short leaves the worker out of step."""
        if self.broken:
            raise RuntimeError("official worker out of step: an earlier call was cut short")
        assert self.proc.stdin is not None
        self.broken = True
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        reply = self._read("REPLY ")
        self.broken = False
        if "error" in reply:
            raise RuntimeError(f"official worker: {reply['error']}")
        return reply

    def tail(self) -> str:
        self._err.flush()
        return self.log.read_text(encoding="utf-8", errors="replace")[-2000:]

    def close(self) -> None:
        """Close its stdin (the worker exits at EOF), then kill it if it is still there after 10 s."""
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._err.close()


def official_encode(server: OfficialServer, dtype: str) -> float:
    """One timed official encode pass over the texts: seconds."""
    return server.call("encode", label=dtype)["seconds"]


def official_generate(server: OfficialServer, dtype: str, batch: int, s: dict[str, Any]) -> tuple[float, int]:
    """One timed official generation of ``new_tokens`` from the first ``batch`` texts: seconds, tokens."""
    reply = server.call(
        "generate", label=dtype, batch=batch, new=s["new_tokens"], states=max(s["gen_batches"])
    )
    return reply["seconds"], reply["tokens"]


def official_env(site: Path, threads: int) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(site),
        "OMP_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def worker_report(cmd: list[str], env: dict[str, str], limit: float) -> dict[str, Any]:
    """Run a worker process and return its ``REPORT {json}`` line."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=limit)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("REPORT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"worker failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return json.loads(line[len("REPORT ") :])


# ----------------------------------------------------------------------------- retrieval
def top_k(queries: Any, docs: Any, k: int) -> Any:
    """Indices ``[Q, k]`` of each query's ``k`` nearest documents by cosine, best first."""
    import torch

    q = torch.nn.functional.normalize(queries.double(), dim=-1)
    d = torch.nn.functional.normalize(docs.double(), dim=-1)
    return (q @ d.T).topk(min(k, d.shape[0]), dim=-1).indices


def overlaps(a: Any, b: Any) -> list[float]:
    """Per row, the share of ``a``'s ids that ``b``'s row holds too (order ignored)."""
    return [len(set(x) & set(y)) / len(x) for x, y in zip(a.tolist(), b.tolist(), strict=True)]


def retrieval_data(
    data: Path, queries: int, corpus: int | None
) -> tuple[dict[str, str], list[Any], dict[str, Any]]:
    """The first ``queries`` AdvBench-IR queries and the eval's corpus for them (or a seeded subset)."""
    from workbench.eval.safety import ADVBENCH_FILE, benign_passages, load_advbench, run_safety

    distractors = inspect.signature(run_safety).parameters["max_distractors"].default
    qs, harmful = load_advbench(data / ADVBENCH_FILE, queries)
    passages = harmful + benign_passages(data, distractors)
    full = len(passages)
    if corpus and corpus < full:
        passages = random.Random(SEED).sample(passages, corpus)
    info = {
        "queries": len(qs),
        "corpus": "full" if len(passages) == full else f"seeded subset (random.Random({SEED}).sample)",
        "corpus_passages": len(passages),
        "full_corpus_passages": full,
        "full_corpus": f"what `workbench eval safety --limit {queries}` retrieves from: the malicious "
        f"passages of these queries ({len(harmful)}) and {distractors} benign passages "
        "(workbench.eval.safety_data.benign_passages, seed 0)",
        "harmful_in_corpus": sum(p.source.startswith("q") for p in passages),
    }
    return qs, passages, info


def retrieval_section(
    gens: dict[str, Any], data: Path, s: dict[str, Any], rec: dict[str, Any]
) -> dict[str, Any]:
    """Queries and passages encoded once per dtype; bf16 top-k lists against the fp32 ones."""
    from workbench.core.config import DOCUMENT_INSTRUCTION
    from workbench.eval.safety import QUERY_INSTRUCTION

    qs, passages, info = retrieval_data(data, s["queries"], s["corpus"])
    k = s["top_k"]
    texts = {"queries": list(qs.values()), "passages": [p.text for p in passages]}
    instruction = {"queries": QUERY_INSTRUCTION, "passages": DOCUMENT_INSTRUCTION}
    rec.update(info)
    rec.update(k=k, similarity="cosine", instructions=instruction, batch_size=s["batch_size"])
    embs: dict[str, dict[str, Any]] = {d: {} for d in gens}
    rec["seconds"] = {}
    for dtype in gens:  # fp32 first, then bf16: each side encoded once
        for part in ("queries", "passages"):
            began = time.perf_counter()
            embs[dtype][part] = gens[dtype].embed(
                texts[part], instruction=instruction[part], batch_size=s["batch_size"], show_progress=False
            )
            rec["seconds"][f"{dtype}_{part}"] = round(time.perf_counter() - began, 2)
            print(f"   {dtype} {part}: {rec['seconds'][f'{dtype}_{part}']:.1f} s", flush=True)
    lists = {d: top_k(e["queries"], e["passages"], k) for d, e in embs.items()}
    shares = overlaps(lists["bfloat16"], lists["float32"])
    qids = list(qs)
    own = {
        d: statistics.mean(
            float(any(passages[j].source == q for j in row))
            for q, row in zip(qids, lists[d].tolist(), strict=True)
        )
        for d in lists
    }
    rec.update(
        top_k_overlap_mean=round(statistics.mean(shares), 4),
        top_k_overlap_min=round(min(shares), 4),
        queries_with_identical_sets=sum(x == 1.0 for x in shares),
        min_cosine_bf16_vs_fp32={
            part: round(min_cosine(embs["float32"][part], embs["bfloat16"][part]), 6) for part in texts
        },
        own_passage_in_top_k={d: round(v, 4) for d, v in own.items()},
        passages_per_s={d: round(len(passages) / rec["seconds"][f"{d}_passages"], 2) for d in gens},
    )
    return embs


def generate_ratios(rec: dict[str, Any]) -> None:
    """Workbench / official tokens/s per ``DTYPE_bB``: of the medians, and paired in the first repeat."""
    res, secs = rec["results"], rec["seconds"]
    medians, paired = {}, {}
    for key, theirs in res.items():
        ours_key = key.removeprefix("official_")
        if ours_key == key or ours_key not in res:
            continue
        ours = res[ours_key]
        medians[ours_key] = round(ours["tokens_per_s"] / theirs["tokens_per_s"], 3)
        first = (ours["new_tokens_total"] / secs[ours_key][0]) / (theirs["new_tokens_total"] / secs[key][0])
        paired[ours_key] = round(first, 3)
    rec["ratios_workbench_over_official"] = medians
    rec["paired_ratios_workbench_over_official_first_repeat"] = paired


# ----------------------------------------------------------------------------- train
def train_paired_section(
    gens: dict[str, Any],
    mixed: Any,
    data: dict[str, Any],
    s: dict[str, Any],
    device: Any,
    rec: dict[str, Any],
) -> None:
    """float32 against the trainer's mixed bf16 recipe: the same start and batches, steps alternating."""
    rec.update(
        batch=s["train_batch"],
        input_tokens=s["input_tokens"],
        response_tokens_cap=s["response_tokens"],
        warmup_steps=s["train_warmup"],
        timed_steps=s["train_steps"],
        order="step k of each variant in turn, the first variant rotating with k",
        teacher="random targets of the teacher's dimension (seeded, the same for both), no teacher model",
        step="gpu.TrainBench: Trainer._run's step for one process (gen(prompts), reconstruction_loss_sum "
        "+ alignment_loss_sum, backward, cosine_stats, AdamW step, zero_grad)",
        variants={
            "float32": "workbench.load(name, dtype='float32'), shipped checkpoint; no autocast",
            "bf16_mixed": "the trainer's mixed_precision=bf16: a second workbench.load(name, "
            "dtype='float32') with gen.backbone.model.to(torch.bfloat16) (rows and heads stay float32), "
            "autocast bfloat16",
        },
        dtypes={
            "bf16_mixed_backbone": str(mixed.backbone.model.get_input_embeddings().weight.dtype),
            "bf16_mixed_rows_and_heads": str(mixed.special.dtype),
        },
    )
    runs = {"float32": (gens["float32"], False), "bf16_mixed": (mixed, True)}
    losses: dict[str, list[float]] = {v: [] for v in runs}
    times: dict[str, list[float]] = {v: [] for v in runs}
    with contextlib.ExitStack() as stack:
        steps = {
            v: stack.enter_context(TrainBench(gen, data, s).stepping(autocast, device))
            for v, (gen, autocast) in runs.items()
        }
        for k in range(s["train_warmup"] + s["train_steps"]):
            for v in rotated(list(steps), k):
                loss, seconds = steps[v](k)
                losses[v].append(loss)
                if k >= s["train_warmup"]:
                    times[v].append(seconds)
                print(f"   step {k + 1} {v}: {seconds:.2f} s, loss {loss:.5f}", flush=True)
    for v in runs:
        rec[v] = {
            "first_step_loss": losses[v][0],
            "losses": [round(x, 5) for x in losses[v]],
            "step_s": [round(t, 4) for t in times[v]],
            "median_step_s": round(median(times[v]), 4),
        }
    ref = losses["float32"][0]
    rec["first_loss_rel_diff"] = round(abs(losses["bf16_mixed"][0] - ref) / abs(ref), 6)
    rec["speedup_bf16_mixed_over_fp32"] = round(
        rec["float32"]["median_step_s"] / rec["bf16_mixed"]["median_step_s"], 3
    )
    rec["paired_ratios_fp32_over_bf16_mixed"] = [
        round(a / b, 3) for a, b in zip(times["float32"], times["bf16_mixed"], strict=True)
    ]


# ----------------------------------------------------------------------------- peak RSS
def rss_worker(name: str, dtype: str, texts_file: str, batch: int, threads: int) -> None:
    """The workbench side of the RSS runs, in its own process: load, warm-up, one encode pass."""
    import torch

    torch.set_num_threads(threads)
    began = time.perf_counter()
    import workbench

    gen = workbench.load(name, dtype=dtype)
    load_s = time.perf_counter() - began
    texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    gen.embed(texts[:batch], batch_size=batch, show_progress=False)
    began = time.perf_counter()
    gen.embed(texts, batch_size=batch, show_progress=False)
    seconds = time.perf_counter() - began
    report = {
        "load_s": round(load_s, 2),
        "encode_s": round(seconds, 3),
        "texts_per_s": round(len(texts) / seconds, 2),
        "peak_rss_mb": peak_rss_mb(),
    }
    print("REPORT " + json.dumps(report))


def rss_section(
    name: str,
    exports: dict[str, Path] | None,
    texts_file: Path,
    max_length: int,
    s: dict[str, Any],
    args: argparse.Namespace,
    run: Run,
    rec: dict[str, Any],
) -> None:
    """Peak RSS of load + warm-up + one encode pass, each side and dtype in a fresh process."""
    batch, threads = s["batch_size"], args.threads
    rec["how"] = (
        "peak resident set (VmHWM; common.peak_rss_mb) of a fresh process that loads one model, "
        "encodes the first batch (warm-up) and then every encode text once; workbench: "
        "workbench.load(name, dtype); official: gpu_official_worker.py with one checkpoint, --repeats 1, "
        "no generation"
    )
    for i, dtype in enumerate(s["rss_dtypes"]):
        part: dict[str, Any] = {}
        rec[dtype] = part
        sides = ["workbench", "official"] if exports is not None else ["workbench"]
        for side in rotated(sides, i):
            limit = max(10.0, min(LIMITS["rss"], run.left() - 5))
            if side == "workbench":
                cmd = [sys.executable, __file__, "--rss-worker", name, dtype, str(texts_file)]
                cmd += ["--batch-size", str(batch), "--threads", str(threads)]
                env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
                part["workbench"] = worker_report(cmd, env, limit)
            else:
                assert exports is not None
                cmd = [sys.executable, str(HERE / "gpu_official_worker.py"), "--checkpoint"]
                cmd += [f"{dtype}={exports[dtype]}", "--texts", str(texts_file), "--out"]
                cmd += [str(texts_file.with_suffix(f".rss-{dtype}.safetensors")), "--device", "cpu"]
                cmd += ["--batch-size", str(batch), "--repeats", "1", "--gen-batches", ""]
                cmd += ["--max-length", str(max_length), "--threads", str(threads)]
                report = worker_report(cmd, official_env(args.official_site, threads), limit)
                part["official"] = {
                    "peak_rss_mb": report["peak_rss_mb"],
                    "load_s": report["load"][dtype]["load_s"],
                    "parameters_loaded": report["load"][dtype]["parameters_loaded"],
                    "texts_per_s": report["encode"]["texts_per_s"][dtype],
                }
            print(f"   {dtype} {side}: peak RSS {part[side]['peak_rss_mb']:.0f} MB", flush=True)
        if "official" in part:
            part["ratio_workbench_over_official"] = round(
                part["workbench"]["peak_rss_mb"] / part["official"]["peak_rss_mb"], 3
            )


# ----------------------------------------------------------------------------- checks
def checks(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target with its measured value (None, and passed None, when its section did not run)."""
    out: list[dict[str, Any]] = []
    for name, b in result["backbones"].items():
        enc, gen, ret = b.get("encode", {}), b.get("generate", {}), b.get("retrieval", {})
        tr, tps, res = b.get("train", {}), enc.get("texts_per_s", {}), gen.get("results", {})
        rows: list[tuple[str, float | None, str, str]] = []  # check, value, target key, where
        for d in ("bfloat16", "float32"):
            ours, theirs = tps.get(d), tps.get(f"official_{d}")
            value = ours / theirs if ours and theirs else None
            rows.append((f"encode texts/s, workbench / official, {d}", value, "encode_vs_official",
                         f"encode.texts_per_s.{d} / official_{d}"))  # fmt: skip
        cosines = [enc.get("min_cosine_bf16_vs_fp32"), *ret.get("min_cosine_bf16_vs_fp32", {}).values()]
        cosines = [c for c in cosines if c is not None]
        rows.append(("min cosine, bf16 vs fp32 embeddings", min(cosines) if cosines else None,
                     "min_cosine_bf16_vs_fp32", "encode and retrieval: min_cosine_bf16_vs_fp32"))  # fmt: skip
        rows.append(("top-10 overlap, bf16 vs fp32 (mean over queries)", ret.get("top_k_overlap_mean"),
                     "top10_overlap_mean", "retrieval.top_k_overlap_mean"))  # fmt: skip
        for batch in result["settings"]["gen_batches"]:
            ours, theirs = res.get(f"bfloat16_b{batch}"), res.get(f"official_bfloat16_b{batch}")
            value = ours["tokens_per_s"] / theirs["tokens_per_s"] if ours and theirs else None
            where = f"generate.results.bfloat16_b{batch} / official_bfloat16_b{batch}"
            rows.append((f"generate tokens/s, workbench / official, bf16, batch {batch}", value,
                         "generate_vs_official", where))  # fmt: skip
        rows.append(("train step time, fp32 / bf16 mixed", tr.get("speedup_bf16_mixed_over_fp32"),
                     "train_bf16_speedup", "train.speedup_bf16_mixed_over_fp32"))  # fmt: skip
        rows.append(("first-step loss, |bf16 mixed - fp32| / fp32", tr.get("first_loss_rel_diff"),
                     "first_loss_rel_diff", "train.first_loss_rel_diff"))  # fmt: skip
        for d in result["settings"]["rss_dtypes"]:
            value = b.get("rss", {}).get(d, {}).get("ratio_workbench_over_official")
            rows.append((f"peak RSS of load + encode, workbench / official, {d}", value,
                         "peak_rss_vs_official", f"rss.{d}.ratio_workbench_over_official"))  # fmt: skip
        for check, value, key, where in rows:
            target, higher = TARGETS[key], key not in ("first_loss_rel_diff", "peak_rss_vs_official")
            out.append(
                {
                    "backbone": name,
                    "check": check,
                    "value": None if value is None else round(value, 4),
                    "target": f"{'>=' if higher else '<='} {target}",
                    "passed": None if value is None else bool(value >= target if higher else value <= target),
                    "from": where,
                }
            )
    return out


class CpuRun(Run):
    """``gpu.Run`` that refreshes the checks before every save."""

    def save(self) -> None:
        self.result["checks"] = checks(self.result)
        super().save()


# ----------------------------------------------------------------------------- machine
def cpu_facts() -> dict[str, Any]:
    """The CPU, its bfloat16 features, what ``dtype="auto"`` picks here and a 1024² matmul in both dtypes."""
    import torch
    from precision import matmul_seconds

    from workbench.core.config import resolve_dtype

    facts: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        facts["model_name"] = next(
            (x.split(":", 1)[1].strip() for x in info.splitlines() if x.startswith("model name")), None
        )
        flags = next((x.split(":", 1)[1].split() for x in info.splitlines() if x.startswith("flags")), [])
        facts["bf16_flags"] = sorted(f for f in flags if "bf16" in f or f.startswith("amx") or f == "avx512f")
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        with contextlib.suppress(Exception):
            facts[probe.strip("_")] = bool(getattr(torch.cpu, probe)())
    dtype, why = resolve_dtype("auto", "cpu")
    facts["auto_dtype"] = {
        "dtype": dtype,
        "why": why,
        "call": 'workbench.core.config.resolve_dtype("auto", "cpu")',
    }
    fp32, bf16 = matmul_seconds(torch.float32), matmul_seconds(torch.bfloat16)
    facts["matmul_1024_s"] = {"float32": round(fp32, 5), "bfloat16": round(bf16, 5)}
    facts["matmul_1024_fp32_over_bf16"] = round(fp32 / bf16, 2)
    return facts


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for c in result.get("checks", []):
        verdict = {True: "pass", False: "FAIL", None: "not measured"}[c["passed"]]
        lines.append(f"{c['backbone']}: {c['check']}: {c['value']} (target {c['target']}): {verdict}")
    for name, b in result["backbones"].items():
        for section, rec in b.items():
            if isinstance(rec, dict) and rec.get("ok") is False:
                lines.append(f"{name}: {section} FAILED: {rec.get('error', '')[:200]}")
            elif isinstance(rec, dict) and "skipped" in rec:
                lines.append(f"{name}: {section} skipped: {rec['skipped']}")
    return lines


# ----------------------------------------------------------------------------- main
def bench_backbone(
    name: str,
    b: dict[str, Any],
    s: dict[str, Any],
    data: dict[str, Any],
    args: argparse.Namespace,
    run: CpuRun,
    work: Path,
) -> None:
    """Every section for one backbone; the official worker is stopped at the end whatever happens."""
    import torch

    device, skip = torch.device("cpu"), set(args.skip.split(","))
    gens: dict[str, Any] = {}

    def load_both(rec: dict[str, Any]) -> None:
        for dtype in ("float32", "bfloat16"):
            gens[dtype] = load_gen(name, dtype, device, rec, untrained=False)
        tok = gens["float32"].tokenizer
        rec["train_prompts_under_input_tokens"] = short_prompts(
            tok, data["train_prompts"][: s["train_pairs"]], s["input_tokens"]
        )

    run.section(b, "load", f"{name}: workbench.load (shipped checkpoint)", load_both, LIMITS["load"], need=30)
    if len(gens) < 2:
        return
    texts = data["encode"][: s["texts"]]
    texts_file = work / f"{name}-texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    max_length = gens["float32"].config.max_length
    exports = server = None
    if "official" not in skip:
        exports = run.section(
            b, "official_export", f"{name}: export official layout",
            lambda rec: export_official_pair(gens, work, name, rec), LIMITS["official_export"], need=30,
        )  # fmt: skip
    try:
        if exports is not None:

            def start(rec: dict[str, Any]) -> OfficialServer:
                cmd = [sys.executable, str(HERE / "gpu_official_worker.py"), "--serve"]
                cmd += [
                    f"--checkpoint=float32={exports['float32']}",
                    f"--checkpoint=bfloat16={exports['bfloat16']}",
                ]
                cmd += ["--texts", str(texts_file), "--out", str(work / f"{name}-official.safetensors")]
                cmd += ["--device", "cpu", "--batch-size", str(s["batch_size"])]
                cmd += ["--max-length", str(max_length), "--threads", str(args.threads)]
                rec["side_environment"] = (
                    f"PYTHONPATH={args.official_site.name} (wheels installed with --target)"
                )
                srv = OfficialServer(
                    cmd, official_env(args.official_site, args.threads), work / f"{name}-official.log"
                )
                rec.update(srv.ready)
                return srv

            server = run.section(
                b,
                "official_start",
                f"{name}: official llm2vec-gen, load",
                start,
                LIMITS["official_start"],
                need=60,
            )
        encode_others: dict[str, Any] = {}
        if server is not None:
            for d in ("float32", "bfloat16"):
                encode_others[f"official_{d}"] = partial(official_encode, server, d)
        embs: dict[str, Any] = {}

        def encode(rec: dict[str, Any]) -> None:
            embs.update(encode_section(gens, texts, s, device, rec, others=encode_others))
            rec.pop("min_cosine_bf16_vs_fp32_random_weights", None)
            rec["min_cosine_bf16_vs_fp32"] = round(min_cosine(embs["float32"], embs["bfloat16"]), 6)
            rec["max_length"] = max_length
            rec["order"] = (
                "the sides in a rotating order each repeat (workbench fp32, bf16, official fp32, bf16)"
            )
            med = rec["median_s"]
            rec["ratios_workbench_over_official"] = {
                d: round(med[f"official_{d}"] / med[d], 3) for d in gens if f"official_{d}" in med
            }
            rec["paired_ratios_workbench_over_official"] = {
                d: [
                    round(o / w, 3)
                    for w, o in zip(rec["seconds"][d], rec["seconds"][f"official_{d}"], strict=True)
                ]
                for d in gens
                if f"official_{d}" in rec["seconds"]
            }

        run.section(b, "encode", f"{name}: encode", encode, LIMITS["encode"], need=30)
        if "generate" not in skip:
            gen_others: dict[tuple[str, int], Any] = {}
            if server is not None:
                for d in s["official_gen_dtypes"]:
                    for batch in s["gen_batches"]:
                        gen_others[(f"official_{d}", batch)] = partial(official_generate, server, d, batch, s)

            def generate(rec: dict[str, Any]) -> None:
                generate_section(
                    gens, texts, s, device, rec, others=gen_others, others_repeats=s["official_gen_repeats"]
                )
                generate_ratios(rec)
                rec["official_note"] = (
                    "official: EncoderDecoderModel.generate from the soft prompts of the same first texts, "
                    "no KV cache, full logits each step, EOS id set to -1 (a Qwen2 model still stops at "
                    "151643 at batch 1: new_tokens_total says how many it made); timed in the first repeat, "
                    "in the same rotation"
                )

            run.section(b, "generate", f"{name}: generate", generate, LIMITS["generate"], need=60)
        if "retrieval" not in skip:
            run.section(
                b, "retrieval", f"{name}: retrieval overlap",
                lambda rec: retrieval_section(gens, args.data, s, rec), LIMITS["retrieval"], need=60,
            )  # fmt: skip
        if "train" not in skip:

            def train(rec: dict[str, Any]) -> None:
                mixed = load_gen(name, "float32", device, rec.setdefault("load_mixed", {}), untrained=False)
                mixed.backbone.model.to(torch.bfloat16)  # as Trainer._run does for mixed_precision=bf16
                try:
                    train_paired_section(gens, mixed, data, s, device, rec)
                finally:
                    del mixed
                    free_memory(device)

            # last: its optimiser steps change the float32 model
            run.section(b, "train", f"{name}: train step", train, LIMITS["train"], need=60)
        if server is not None:

            def finish(rec: dict[str, Any]) -> None:
                from safetensors.torch import load_file

                rec.update(server.call("finish"))
                run.result["versions"]["official"] = rec.get("versions")
                out = work / f"{name}-official.safetensors"
                if out.is_file() and embs:
                    theirs = load_file(str(out))
                    rec["min_cosine_workbench_vs_official"] = {
                        d: round(min_cosine(embs[d], theirs[d]), 6) for d in theirs if d in embs
                    }

            run.section(
                b,
                "official_finish",
                f"{name}: official llm2vec-gen, finish",
                finish,
                LIMITS["official_finish"],
                need=10,
            )
    finally:
        if server is not None:
            server.close()
    gens.clear()
    free_memory(device)
    if "rss" not in skip:

        def rss(rec: dict[str, Any]) -> None:
            rss_section(name, exports, texts_file, max_length, s, args, run, rec)

        run.section(b, "rss", f"{name}: peak RSS, load + encode", rss, LIMITS["rss"], need=60)


def checks_table(result: dict[str, Any]) -> str:
    """The JSON's ``checks`` as a markdown table: one row per check, one column per backbone."""
    names = list(result["backbones"])
    rows: dict[str, dict[str, Any]] = {}
    for c in result["checks"]:
        rows.setdefault(c["check"], {"target": c["target"]})[c["backbone"]] = c
    mark = {True: "met", False: "**not met**", None: "not measured"}
    lines = [
        "| check | target | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for check, row in rows.items():
        cells = []
        for name in names:
            c = row.get(name)
            cells.append(
                ""
                if c is None
                else f"{c['value']} ({mark[c['passed']]})"
                if c["value"] is not None
                else mark[None]
            )
        label = check.replace("|", "\\|")  # |x| inside a table cell
        lines.append(f"| {label} | {row['target']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--table", type=Path, default=None, help="only write the checks of --out as a markdown table here"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="dry run: real weights, a few texts, tokens, steps"
    )
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--budget-s", type=float, default=6000.0, help="whole-run time budget")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, each process")
    parser.add_argument("--official-site", type=Path, default=DEFAULT_OFFICIAL_SITE)
    parser.add_argument(
        "--data", type=Path, default=None, help="data folder (default $WORKBENCH_DATA or ../shared/data)"
    )
    parser.add_argument("--corpus", type=int, default=None, help="retrieval corpus size (0: the full one)")
    parser.add_argument("--skip", default="", help="comma list: official, generate, train, retrieval, rss")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--rss-worker", nargs=3, metavar=("NAME", "DTYPE", "TEXTS"), help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=CPU["batch_size"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.table is not None:
        args.table.write_text(
            checks_table(json.loads(args.out.read_text(encoding="utf-8"))), encoding="utf-8"
        )
        return 0
    if args.rss_worker:
        rss_worker(*args.rss_worker, args.batch_size, args.threads)
        return 0

    for key, value in (
        ("HF_HUB_OFFLINE", "1"),
        ("TRANSFORMERS_OFFLINE", "1"),
        ("TOKENIZERS_PARALLELISM", "false"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("TRANSFORMERS_VERBOSITY", "error"),
    ):
        os.environ.setdefault(key, value)
    import torch

    torch.set_num_threads(args.threads)
    args.data = _data_dir(args.data)
    s = dict(TINY if args.tiny else CPU)
    if args.corpus is not None:
        s["corpus"] = args.corpus or None
    result: dict[str, Any] = {
        "benchmark": "cpu_bf16",
        "status": "running",
        "weights": "REAL: each registry backbone with its shipped trained checkpoint, workbench.load(name, "
        "dtype=...); the official side reads the same model exported with export_official(copy_base=True)",
        "tiny": args.tiny,
        "settings": s,
        "threads": args.threads,
        "budget_s": args.budget_s,
        "targets": TARGETS,
        "checks": [],
        "backbones": {},
        "errors": [],
        "notes": [
            "timings: time.perf_counter around each call; medians of the timed repeats; within a repeat the "
            "sides run in an order that rotates from repeat to repeat; paired ratios are per repeat",
            "official side: llm2vec-gen 0.1.3, transformers 4.56.2, peft 0.18.0 (pip --target folder on "
            "PYTHONPATH, torch from this venv) in one long-lived process per backbone that holds both "
            "dtypes; its seconds are measured inside that process around its own call",
            "the workbench's encode sorts texts by length into batches; the official encode takes them in "
            "order: both get the same texts and batch size",
        ],
    }
    run = CpuRun(args.out, args.budget_s, result)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # finally blocks save the JSON
    run.save()
    result["machine"] = {**machine_info(), **cpu_facts()}
    result["versions"] = versions()
    run.save()
    data = bench_texts(args.data)
    result["texts"] = data["sources"]
    work = args.work or Path(tempfile.mkdtemp(prefix="cpu-bf16-"))
    work.mkdir(parents=True, exist_ok=True)
    result["status"] = "interrupted"
    try:
        for name in [n.strip() for n in args.backbones.split(",") if n.strip()]:
            b: dict[str, Any] = {}
            result["backbones"][name] = b
            bench_backbone(name, b, s, data, args, run, work)
        result["status"] = "complete" if not result["errors"] else "complete with errors"
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
        run.save()
    print(f"== summary ({result['machine'].get('model_name')}, {args.threads} threads, real weights)")
    for line in summary_lines(result):
        print("   " + line)
    print(f"wrote {args.out} ({result['status']}, {result['elapsed_s']} s)")
    return 0 if not result["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
