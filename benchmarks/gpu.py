"""GPU throughput of the workbench, and of the official ``llm2vec-gen`` 0.1.3, on random-weight backbones.

For each backbone (SmolLM2-135M, Qwen2.5-Coder-0.5B) a transformers folder with RANDOM weights is
built from the real ``config.json`` and tokenizer (weights cannot travel to the GPU machine;
throughput does not depend on weight values), loaded with ``workbench.load(folder, untrained=True,
dtype=...)`` and moved to the device, then measured:

- encode: ``gen.embed(texts, batch_size=B)`` in float32 and bfloat16, texts/s (median of timed
  passes after a warm-up, the two sides alternating), and the minimum bf16-vs-fp32 cosine;
- train: the trainer's step (``gen(prompts)``, ``reconstruction_loss_sum`` + ``alignment_loss_sum``,
  backward, AdamW) on random teacher targets: float32, the trainer's ``mixed_precision=bf16``
  recipe and a bfloat16 model; median step time and the first-step loss of each;
- generate: ``gen.generate(states, max_new_tokens=N)`` at batch 8 and 1 in both dtypes, the length
  forced (EOS suppressed), tokens/s;
- official: the same random model exported with the workbench's exporter and run by
  ``llm2vec_gen`` 0.1.3 (transformers 4.56) in a subprocess (``gpu_official_worker.py``): encode
  texts/s and generate tokens/s, and the paired ratios workbench / official.

Each section runs under a time limit and the JSON is rewritten (atomically) after every section, so
a failure or a kill leaves what was measured. ``--prepare`` (run where the backbones are cached)
copies each backbone's config and tokenizer files into ``.gpu/assets/NAME/`` and writes the texts
to ``.gpu/texts.json``; ``benchmarks/gpu_run.sh`` is the command for the GPU machine.

Run: ``python benchmarks/gpu.py --prepare`` here, then ``bash benchmarks/gpu_run.sh`` on the GPU;
``python benchmarks/gpu.py --device cpu --tiny`` is the dry run (2 layers, 16 texts, 2 steps).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from workbench.core.registry import BACKBONES as REGISTRY

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = HERE / "results" / "gpu.json"
DEFAULT_ASSETS = ROOT / ".gpu" / "assets"
DEFAULT_TEXTS = ROOT / ".gpu" / "texts.json"
DEFAULT_OFFICIAL_SITE = Path("/tmp/offsite")
BACKBONES = tuple(REGISTRY)  # the two registry backbones, in registry order
ASSET_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
)
COPIED_TO_MODEL = ASSET_FILES[1:]  # config.json is rewritten by save_pretrained
ASSETS_LIMIT_MB = 40.0
SEED = 0
LR = 1e-3

# Full run (GPU) and --tiny (CPU dry run) settings.
FULL = {
    "texts": 512,
    "batch_size": 32,
    "repeats": 5,
    "train_batch": 8,
    "train_pairs": 64,
    "input_tokens": 128,
    "response_tokens": 20,
    "train_warmup": 2,
    "train_steps": 10,
    "new_tokens": 256,
    "gen_batches": [8, 1],
    "gen_repeats": 3,
    "official_repeats": 3,
    "official_gen_repeats": 1,
    "layers": None,
}
TINY = {
    **FULL,
    "texts": 16,
    "batch_size": 8,
    "repeats": 2,
    "train_batch": 2,
    "train_pairs": 4,
    "input_tokens": 40,
    "response_tokens": 4,
    "train_warmup": 1,
    "train_steps": 2,
    "new_tokens": 8,
    "gen_repeats": 1,
    "official_repeats": 1,
    "layers": 2,
}
# Per-section limits in seconds (full run; x4 with --tiny on a CPU); the whole run also has --budget-s.
LIMITS = {
    "build": 120,
    "load": 120,
    "official_export": 90,
    "encode": 120,
    "generate": 150,
    "train": 120,
    "official": 200,
}

WEIGHTS_NOTE = (
    "RANDOM weights: each backbone is AutoModelForCausalLM.from_config(real config.json) with seed "
    f"{SEED}, saved in bfloat16 beside the real tokenizer (model weights cannot travel to the GPU "
    "machine). Throughput (texts/s, tokens/s, step time) does not depend on weight values; the "
    "cosines and losses below are random-weight numbers only and say nothing about a trained model."
)


# ----------------------------------------------------------------------------- helpers
def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (a temporary file in the same folder, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class SectionTimeout(Exception):
    """A section passed its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`SectionTimeout` in the main thread after ``seconds`` (SIGALRM)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SectionTimeout(f"passed its {seconds:.0f} s limit")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, max(float(seconds), 1.0))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Run:
    """The result document, saved after each section, and the overall time budget."""

    def __init__(self, out: Path, budget_s: float, result: dict[str, Any]) -> None:
        self.out = out
        self.start = time.monotonic()
        self.deadline = self.start + budget_s
        self.result = result

    def save(self) -> None:
        self.result["elapsed_s"] = round(time.monotonic() - self.start, 1)
        write_json(self.out, self.result)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def section(
        self,
        where: dict[str, Any],
        name: str,
        label: str,
        fn: Callable[[dict[str, Any]], Any],
        limit: float,
        need: float = 10.0,
    ) -> Any:
        """Run ``fn(record)``, which fills ``record`` (kept even if it fails); returns its value or None."""
        rec: dict[str, Any] = {}
        where[name] = rec
        left = self.left()
        if left < need:
            rec["skipped"] = f"time budget: {left:.0f} s left, section needs about {need:.0f} s"
            print(f"== {label}: skipped ({rec['skipped']})", flush=True)
            self.save()
            return None
        print(f"== {label} (limit {min(limit, left):.0f} s) ...", flush=True)
        began = time.monotonic()
        try:
            with time_limit(min(limit, left)):
                value = fn(rec)
            rec["ok"] = True
            return value
        except Exception as err:
            message = f"{type(err).__name__}: {err}"
            rec["ok"] = False
            rec["error"] = message[:3000]
            rec["traceback"] = traceback.format_exc()[-4000:]
            self.result["errors"].append(f"{label}: {message[:400]}")
            print(f"   FAILED: {message[:400]}", flush=True)
            return None
        finally:
            rec["section_s"] = round(time.monotonic() - began, 2)
            self.save()


def sync(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_mb(device: Any) -> float | None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return None


def free_memory(device: Any) -> None:
    import torch

    gc.collect()
    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.empty_cache()


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def rotated(items: list[Any], r: int) -> list[Any]:
    """``items`` rotated by ``r`` (alternates which side goes first in each repeat)."""
    k = r % len(items)
    return items[k:] + items[:k]


def min_cosine(a: Any, b: Any) -> float:
    import torch

    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1).min())


# ----------------------------------------------------------------------------- --prepare (here, on CPU)
def _data_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    return Path(os.environ.get("WORKBENCH_DATA", ROOT.parent / "shared" / "data"))


def _field(path: Path, name: str, start: int, count: int) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()[start : start + count]
    return [json.loads(line)[name].strip() for line in lines]


def bench_texts(data: Path) -> dict[str, Any]:
    """The encode texts and the training prompts and responses (NQ-open and GSM8K), with their sources."""
    from workbench.core.config import QUERY_INSTRUCTION, with_instruction

    nq = data / "nq-open" / "NQ-open.dev.jsonl"
    gsm = data / "gsm8k" / "train.jsonl"
    encode = with_instruction(
        _field(nq, "question", 0, 320) + _field(gsm, "question", 0, 192), QUERY_INSTRUCTION
    )
    random.Random(SEED).shuffle(encode)  # the --tiny prefix holds both kinds
    train_pairs = FULL["train_pairs"]
    questions = _field(gsm, "question", 1000, 4 * train_pairs)
    prompts = [" ".join(questions[4 * i : 4 * i + 4]) for i in range(train_pairs)]
    answers = _field(gsm, "answer", 1000, train_pairs)
    responses = [re.sub(r"<<[^>]*>>", "", a).replace("\n", " ") for a in answers]
    return {
        "encode": encode,
        "train_prompts": prompts,
        "train_responses": responses,
        "sources": {
            "encode": "NQ-open dev questions 0-319 and GSM8K train questions 0-191, with the query "
            "instruction, shuffled (seed 0)",
            "train_prompts": "GSM8K train questions 1000-1255, four per prompt (over 128 tokens each)",
            "train_responses": "GSM8K train answers 1000-1063, calculator annotations removed",
        },
    }


def short_prompts(tokenizer: Any, prompts: list[str], tokens: int) -> int:
    """How many ``prompts`` are under ``tokens`` tokens (each must fill the training input)."""
    return sum(len(tokenizer(p)["input_ids"]) < tokens for p in prompts)


def prepare(assets: Path, texts_file: Path, data: Path) -> int:
    """Copy the backbones' config and tokenizer files into ``assets`` and write the texts JSON."""
    from transformers import AutoTokenizer

    from workbench.core.paths import dequantised_path
    from workbench.core.registry import BACKBONES as REGISTRY

    for name in BACKBONES:
        spec = REGISTRY[name]
        src = dequantised_path(spec.name, spec.sha256)
        if not (src / "config.json").is_file():
            sys.exit(f"{name} is not cached at {src}: run `workbench fetch {name}` first")
        dest = assets / name
        dest.mkdir(parents=True, exist_ok=True)
        for file in ASSET_FILES:  # never model.safetensors
            if (src / file).is_file():
                shutil.copyfile(src / file, dest / file)
    texts = bench_texts(data)
    for name in BACKBONES:  # every training prompt must fill the 128-token input
        tok = AutoTokenizer.from_pretrained(str(assets / name))
        short = short_prompts(tok, texts["train_prompts"], FULL["input_tokens"])
        if short:
            sys.exit(f"{short} training prompts are under {FULL['input_tokens']} tokens for {name}")
    texts_file.parent.mkdir(parents=True, exist_ok=True)
    texts_file.write_text(json.dumps(texts, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    root = texts_file.parent
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20
    for f in sorted(root.rglob("*")):
        if f.is_file():
            print(f"{f.stat().st_size / 2**20:8.2f} MiB  {f.relative_to(root)}")
    print(f"{total:8.2f} MiB  total under {root}")
    if total > ASSETS_LIMIT_MB:
        sys.exit(f"{root} holds {total:.1f} MiB, over the {ASSETS_LIMIT_MB:.0f} MiB allowed")
    return 0


# ----------------------------------------------------------------------------- sections
def build_random(
    name: str, assets: Path, work: Path, layers: int | None, device: Any, rec: dict[str, Any]
) -> Path:
    """A transformers folder with random weights (bfloat16 on disk) and the real tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    src = assets / name
    config = AutoConfig.from_pretrained(str(src))
    if layers is not None:
        config.num_hidden_layers = layers
        if getattr(config, "layer_types", None):
            config.layer_types = list(config.layer_types)[:layers]
    torch.manual_seed(SEED)
    try:  # random initialisation is quicker on the GPU
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        rec["initialised_on"] = str(device)
    except Exception as err:  # then on the CPU
        rec["initialised_on"] = f"cpu ({type(err).__name__} on {device})"
        torch.manual_seed(SEED)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    folder = work / name
    model.save_pretrained(str(folder))
    for file in COPIED_TO_MODEL:
        if (src / file).is_file():
            shutil.copyfile(src / file, folder / file)
    rec.update(
        model_class=type(model).__name__,
        parameters=sum(p.numel() for p in model.parameters()),
        layers=int(config.num_hidden_layers),
        hidden_size=int(config.hidden_size),
        vocab_size=int(config.vocab_size),
        tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        weights_on_disk="bfloat16, random (seed 0)",
        folder_mb=round(sum(f.stat().st_size for f in folder.iterdir()) / 2**20, 1),
    )
    del model
    free_memory(device)
    return folder


def load_gen(folder: str | Path, dtype: str, device: Any, rec: dict[str, Any], untrained: bool = True) -> Any:
    """``workbench.load(folder, untrained=..., dtype=...)``, on ``device`` (a registry name with
    ``untrained=False`` gets its shipped trained checkpoint)."""
    import torch

    import workbench

    kwargs: dict[str, Any] = {"untrained": untrained, "dtype": dtype}
    has_device = "device" in inspect.signature(workbench.load).parameters
    if has_device:
        kwargs["device"] = str(device)
    began = time.perf_counter()
    gen = workbench.load(str(folder), **kwargs)
    model = gen.backbone.model
    if model.get_input_embeddings().weight.device != device:
        model.to(device)  # as Trainer._run does: the backbone, then the LLM2VecGen module
    if gen.special.device != device:
        gen.to(device)
    sync(device)
    rec[dtype] = {
        "load_s": round(time.perf_counter() - began, 2),
        "load_has_device_option": has_device,
        "moved_with_to": not has_device,
        "backbone_device": str(model.get_input_embeddings().weight.device),
        "module_device": str(gen.special.device),
        "backbone_dtype": str(model.get_input_embeddings().weight.dtype).replace("torch.", ""),
        "trainable_dtype": str(gen.special.dtype).replace("torch.", ""),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "teacher": gen.config.teacher,
        "teacher_dim": gen.config.teacher_dim,
        "special_tokens": {"thought": gen.config.num_thought, "compress": gen.config.num_compress},
        "max_length": gen.config.max_length,
        "precision": getattr(gen, "precision", None),
        "trained": bool(getattr(gen, "trained", False)),
    }
    assert isinstance(gen.special, torch.nn.Parameter)
    return gen


def export_official_pair(gens: dict[str, Any], work: Path, name: str, rec: dict[str, Any]) -> dict[str, Path]:
    """Both models in the official layout: fp32 with a 4.56-readable copy of the base, bf16 naming it."""
    from workbench.store.official.export import export_official

    out32, out16 = work / f"{name}-official-float32", work / f"{name}-official-bfloat16"
    began = time.perf_counter()
    export_official(gens["float32"], out32, copy_base=True, overwrite=True)
    export_official(gens["bfloat16"], out16, base_model=str(out32 / "base"), overwrite=True)
    rec.update(
        seconds=round(time.perf_counter() - began, 2),
        how="workbench.store.official.export.export_official: float32 with copy_base=True, bfloat16 "
        "with base_model=<the float32 export>/base (run_config torch_dtype and heads in each dtype)",
    )
    return {"float32": out32, "bfloat16": out16}


def encode_section(
    gens: dict[str, Any],
    texts: list[str],
    s: dict[str, Any],
    device: Any,
    rec: dict[str, Any],
    others: dict[str, Callable[[], float]] | None = None,
) -> dict[str, Any]:
    """texts/s of ``gen.embed`` per dtype (alternating), and the bf16-vs-fp32 cosine.

    ``others`` are further sides timed in the same rotation: a label and a call that encodes the
    same texts (warmed up already) and returns its seconds."""
    others = others or {}
    batch = s["batch_size"]
    tok = gens["float32"].tokenizer
    counts = [len(tok(t)["input_ids"]) for t in texts]
    rec.update(
        texts=len(texts),
        batch_size=batch,
        tokens_per_text={"mean": round(statistics.mean(counts), 1), "min": min(counts), "max": max(counts)},
        call="gen.embed(texts, batch_size=B, show_progress=False)",
    )
    for gen in gens.values():  # warm-up
        gen.embed(texts[: 2 * batch], batch_size=batch, show_progress=False)
    sync(device)
    times: dict[str, list[float]] = {d: [] for d in [*gens, *others]}
    embs: dict[str, Any] = {}
    reset_peak(device)
    for r in range(s["repeats"]):
        for dtype in rotated(list(times), r):
            if dtype in others:
                times[dtype].append(others[dtype]())
                continue
            sync(device)
            began = time.perf_counter()
            embs[dtype] = gens[dtype].embed(texts, batch_size=batch, show_progress=False)
            sync(device)
            times[dtype].append(time.perf_counter() - began)
        rec["seconds"] = {d: [round(t, 4) for t in v] for d, v in times.items()}
        print(f"   repeat {r + 1}: " + ", ".join(f"{d} {v[-1]:.3f} s" for d, v in times.items()), flush=True)
    med = {d: median(v) for d, v in times.items()}
    rec.update(
        median_s={d: round(m, 4) for d, m in med.items()},
        texts_per_s={d: round(len(texts) / m, 1) for d, m in med.items()},
        speedup_bf16_over_fp32=round(med["float32"] / med["bfloat16"], 3),
        paired_ratios_fp32_over_bf16=[
            round(a / b, 3) for a, b in zip(times["float32"], times["bfloat16"], strict=True)
        ],
        min_cosine_bf16_vs_fp32_random_weights=round(min_cosine(embs["float32"], embs["bfloat16"]), 6),
        peak_gpu_mb=peak_mb(device),
    )
    return embs


@contextlib.contextmanager
def forced_length(gen: Any, counter: list[int]) -> Iterator[None]:
    """Generation runs to max_new_tokens (min_new_tokens = max_new_tokens); counts the new tokens."""
    import workbench.core.generation as generation

    original = generation.generation_config
    model = gen.backbone.model
    real_generate = model.generate

    def forced(*args: Any, **kwargs: Any) -> Any:
        config = original(*args, **kwargs)
        config.min_new_tokens = config.max_new_tokens
        return config

    def counting(*args: Any, **kwargs: Any) -> Any:
        out = real_generate(*args, **kwargs)
        counter.append(int(out.shape[0] * out.shape[1]))  # inputs_embeds only: new tokens only
        return out

    generation.generation_config = forced
    model.generate = counting
    try:
        yield
    finally:
        generation.generation_config = original
        del model.generate


def generate_section(
    gens: dict[str, Any],
    texts: list[str],
    s: dict[str, Any],
    device: Any,
    rec: dict[str, Any],
    others: dict[tuple[str, int], Callable[[], tuple[float, int]]] | None = None,
    others_repeats: int = 1,
) -> None:
    """tokens/s of ``gen.generate(states, max_new_tokens=N)`` per dtype and batch size.

    ``others`` are further sides, keyed (label, batch size): a call that generates N tokens from
    the same first texts (warmed up by itself) and returns its seconds and new tokens; they join the
    rotation in the first ``others_repeats`` repeats."""
    others = others or {}
    new, batches = s["new_tokens"], s["gen_batches"]
    rec.update(
        new_tokens=new,
        batch_sizes=batches,
        call="gen.generate(gen.compression_states(texts), max_new_tokens=N, batch_size=B): greedy, KV cache",
        length="forced: min_new_tokens = max_new_tokens (EOS suppressed), by wrapping "
        "workbench.core.generation.generation_config; new tokens counted on the backbone's generate output",
    )
    states = {
        d: g.compression_states(texts[: max(batches)], batch_size=max(batches)) for d, g in gens.items()
    }
    combos = [(d, b) for d in gens for b in batches]
    counters: dict[tuple[str, int], list[int]] = {c: [] for c in [*combos, *others]}
    times: dict[tuple[str, int], list[float]] = {c: [] for c in [*combos, *others]}
    with contextlib.ExitStack() as stack:
        counts: dict[str, list[int]] = {}
        for dtype, gen in gens.items():
            counts[dtype] = []
            stack.enter_context(forced_length(gen, counts[dtype]))
        for dtype, b in combos:  # warm-up, short
            gens[dtype].generate(states[dtype][:b], max_new_tokens=min(8, new), batch_size=b)
        reset_peak(device)
        for r in range(s["gen_repeats"]):
            for dtype, b in rotated(combos + list(others) if r < others_repeats else combos, r):
                if (dtype, b) in others:
                    seconds, tokens = others[(dtype, b)]()
                    times[(dtype, b)].append(seconds)
                    counters[(dtype, b)].append(tokens)
                else:
                    before = len(counts[dtype])
                    sync(device)
                    began = time.perf_counter()
                    gens[dtype].generate(states[dtype][:b], max_new_tokens=new, batch_size=b)
                    sync(device)
                    times[(dtype, b)].append(time.perf_counter() - began)
                    counters[(dtype, b)].append(sum(counts[dtype][before:]))
                print(f"   {dtype} batch {b}: {times[(dtype, b)][-1]:.2f} s", flush=True)
            rec["seconds"] = {f"{d}_b{b}": [round(t, 3) for t in v] for (d, b), v in times.items() if v}
    out: dict[str, Any] = {}
    for (dtype, b), values in times.items():
        if not values:
            continue
        t, n = median(values), statistics.median(counters[(dtype, b)])
        out[f"{dtype}_b{b}"] = {
            "median_s": round(t, 3),
            "new_tokens_total": int(n),
            "tokens_per_s": round(n / t, 1),
            "ms_per_step": round(1000 * t / (new if (dtype, b) in combos else max(1.0, n / b)), 2),
        }
    rec["results"] = out
    rec["speedup_bf16_over_fp32"] = {
        f"b{b}": round(out[f"bfloat16_b{b}"]["tokens_per_s"] / out[f"float32_b{b}"]["tokens_per_s"], 3)
        for b in batches
    }
    rec["peak_gpu_mb"] = peak_mb(device)


class TrainBench:
    """The trainer's step (``Trainer._run``'s inner loop, one process, no accumulation) on fixed batches."""

    def __init__(self, gen: Any, data: dict[str, Any], s: dict[str, Any]) -> None:
        import torch

        from workbench.core.losses import response_tokens

        self.gen = gen
        self.s = s
        n = s["train_pairs"]
        self.prompts = data["train_prompts"][:n]
        eos = gen.tokenizer.eos_token_id
        self.rows = response_tokens(gen.tokenizer, data["train_responses"][:n], s["response_tokens"], eos)
        g = torch.Generator().manual_seed(SEED)
        dim = gen.config.teacher_dim
        self.dim = dim
        self.targets = torch.randn(n, dim, generator=g) / dim**0.5  # random teacher targets
        b = s["train_batch"]
        self.batches = [list(range(i, i + b)) for i in range(0, n - b + 1, b)]

    @contextlib.contextmanager
    def stepping(self, autocast_bf16: bool, device: Any) -> Iterator[Callable[[int], tuple[float, float]]]:
        """A fresh optimiser and the step ``k -> (loss, seconds)`` on batch ``k`` (cycling); the encoder
        input is ``input_tokens`` wide meanwhile (``self.width`` once it starts)."""
        import torch

        from workbench.core.losses import alignment_loss_sum, cosine_stats, pad_right, reconstruction_loss_sum

        gen, s = self.gen, self.s
        old_length = gen.config.max_length
        gen.config.max_length = s["input_tokens"]  # every prompt is longer: inputs of exactly this width
        optimizer = torch.optim.AdamW(gen.trainable_parameters(), lr=LR, weight_decay=0.0)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast_bf16)
        b, pad = s["train_batch"], gen.tokenizer.pad_token_id

        def step(idx: list[int]) -> float:
            tokens = sum(len(self.rows[i]) for i in idx)
            with autocast:
                out = gen([self.prompts[i] for i in idx])
                rec_sum = reconstruction_loss_sum(
                    gen.traced, out["soft_prompt"], pad_right([self.rows[i] for i in idx], pad)
                )
                ali = alignment_loss_sum(out["embedding"], self.targets[idx])
                loss = rec_sum / tokens + ali / (b * self.dim)
                loss.backward()
            cosine_stats(out["embedding"], self.targets[idx])  # the trainer's per-step statistics
            _ = (rec_sum.item(), ali.item())
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return float(loss.item())

        def timed(k: int) -> tuple[float, float]:
            idx = self.batches[k % len(self.batches)]
            sync(device)
            began = time.perf_counter()
            loss = step(idx)
            sync(device)
            return loss, time.perf_counter() - began

        try:
            self.width = int(gen.encoder_batch([self.prompts[i] for i in self.batches[0]]).input_ids.shape[1])
            yield timed
        finally:
            gen.config.max_length = old_length

    def run(self, autocast_bf16: bool, device: Any, rec: dict[str, Any]) -> None:
        s = self.s
        with self.stepping(autocast_bf16, device) as timed:
            losses, times = [], []
            reset_peak(device)
            for k in range(s["train_warmup"] + s["train_steps"]):
                loss, seconds = timed(k)
                losses.append(loss)
                if k >= s["train_warmup"]:
                    times.append(seconds)
            rec.update(
                first_step_loss=losses[0],
                losses=[round(x, 5) for x in losses],
                step_s=[round(t, 5) for t in times],
                median_step_s=round(median(times), 5),
                pairs_per_s=round(s["train_batch"] / median(times), 1),
                encoder_width=self.width,
                peak_gpu_mb=peak_mb(device),
            )


def train_section(
    gens: dict[str, Any], data: dict[str, Any], s: dict[str, Any], device: Any, rec: dict[str, Any]
) -> None:
    """float32, the trainer's mixed bf16 recipe and a bfloat16 model; step times and first losses."""
    import torch

    rec.update(
        batch=s["train_batch"],
        input_tokens=s["input_tokens"],
        response_tokens_cap=s["response_tokens"],
        warmup_steps=s["train_warmup"],
        timed_steps=s["train_steps"],
        teacher="random targets of the teacher's dimension (seeded), no teacher model: the timed work "
        "is the student's step; teacher embeddings are cached once per run by the trainer anyway",
        step="Trainer._run's step for one process: gen(prompts) (nnsight trace), reconstruction_loss_sum "
        "+ alignment_loss_sum (weights 1), backward, cosine_stats and .item() of both sums, AdamW step, "
        "zero_grad; constant lr, no scheduler, no logging or checkpoints",
    )

    def dtypes(gen: Any) -> str:
        backbone = str(gen.backbone.model.get_input_embeddings().weight.dtype).replace("torch.", "")
        return f"backbone {backbone}, rows and heads {str(gen.special.dtype).replace('torch.', '')}"

    gen32 = gens["float32"]
    rec["variants"] = {
        "float32": f"workbench.load(dtype='float32'): {dtypes(gen32)}; no autocast",
        "bfloat16": f"workbench.load(dtype='bfloat16'): {dtypes(gens['bfloat16'])}; no autocast",
        "bf16_mixed": "the trainer's mixed_precision=bf16 on the float32 model: backbone cast to bfloat16, "
        f"rows and heads {str(gen32.special.dtype).replace('torch.', '')}, autocast bfloat16",
    }
    initial = {k: v.detach().clone() for k, v in gen32.state_dict().items()}
    for name, gen, autocast in (
        ("float32", gen32, False),
        ("bfloat16", gens["bfloat16"], False),
        ("bf16_mixed", gen32, True),
    ):
        if name == "bf16_mixed":
            gen32.load_state_dict(initial)  # the same start as the float32 run
            gen32.backbone.model.to(torch.bfloat16)  # as Trainer._run does for mixed_precision=bf16
        part: dict[str, Any] = {}
        rec[name] = part
        bench = TrainBench(gen, data, s)
        bench.run(autocast, device, part)
        print(
            f"   {name}: {part['median_step_s'] * 1000:.1f} ms/step, first loss {part['first_step_loss']:.5f}"
        )
    ref = rec["float32"]
    for name in ("bf16_mixed", "bfloat16"):
        rec[name]["first_loss_rel_diff_vs_fp32"] = round(
            abs(rec[name]["first_step_loss"] - ref["first_step_loss"]) / abs(ref["first_step_loss"]), 6
        )
        rec[name]["speedup_over_fp32"] = round(ref["median_step_s"] / rec[name]["median_step_s"], 3)
    rec["first_loss_note"] = (
        "random weights, random targets: the relative difference is a precision check only"
    )


def official_section(
    name: str,
    exports: dict[str, Path],
    texts_file: Path,
    wb: dict[str, Any],
    embs: dict[str, Any] | None,
    s: dict[str, Any],
    device: Any,
    site: Path,
    work: Path,
    limit: float,
    rec: dict[str, Any],
) -> None:
    """Run ``gpu_official_worker.py`` with the official package's site folder; paired ratios."""
    from safetensors.torch import load_file

    out = work / f"{name}-official-embeddings.safetensors"
    cmd = [
        sys.executable,
        str(HERE / "gpu_official_worker.py"),
        "--checkpoint",
        f"float32={exports['float32']}",
        "--checkpoint",
        f"bfloat16={exports['bfloat16']}",
        "--texts",
        str(texts_file),
        "--out",
        str(out),
        "--device",
        device.type,
        "--batch-size",
        str(s["batch_size"]),
        "--repeats",
        str(s["official_repeats"]),
        "--new-tokens",
        str(s["new_tokens"]),
        "--gen-batches",
        ",".join(str(b) for b in s["gen_batches"]),
        "--gen-repeats",
        str(s["official_gen_repeats"]),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    rec["side_environment"] = f"PYTHONPATH={site.name} (official wheels installed with --target)"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=limit)
    except subprocess.TimeoutExpired as err:
        tail = err.stderr or ""
        rec["stderr_tail"] = (tail.decode(errors="replace") if isinstance(tail, bytes) else tail)[-3000:]
        raise SectionTimeout(f"official worker passed {limit:.0f} s") from err
    line = next((x for x in proc.stdout.splitlines() if x.startswith("REPORT ")), None)
    if proc.returncode != 0 or line is None:
        rec["stderr_tail"] = proc.stderr[-4000:]
        raise RuntimeError(f"official worker failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
    report = json.loads(line[len("REPORT ") :])
    rec["official"] = report
    ratios: dict[str, Any] = {}
    encode = wb.get("encode", {})
    if encode.get("texts_per_s") and report.get("encode"):
        ratios["encode_texts_per_s"] = {
            d: round(encode["texts_per_s"][d] / report["encode"]["texts_per_s"][d], 3)
            for d in report["encode"]["texts_per_s"]
            if d in encode["texts_per_s"]
        }
    gen = wb.get("generate", {}).get("results")
    if gen and report.get("generate"):
        ratios["generate_tokens_per_s"] = {
            k: round(gen[k]["tokens_per_s"] / v["tokens_per_s"], 3)
            for k, v in report["generate"].items()
            if k in gen and v.get("tokens_per_s")
        }
    rec["ratios_workbench_over_official"] = ratios
    if embs is not None and out.is_file():
        theirs = load_file(str(out))
        rec["min_cosine_workbench_vs_official_random_weights"] = {
            d: round(min_cosine(embs[d], theirs[d]), 6) for d in theirs if d in embs
        }
        rec["cosine_note"] = (
            "same random model and texts in both codes; informational (the official code gives "
            "left-padded rows no position_ids, so padded rows differ a little)"
        )


# ----------------------------------------------------------------------------- device facts
def device_facts(device: Any) -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(
            gpu=torch.cuda.get_device_name(device),
            capability=".".join(str(x) for x in torch.cuda.get_device_capability(device)),
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            cudnn=torch.backends.cudnn.version(),
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
        with contextlib.suppress(Exception):
            facts["nvidia_smi"] = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                    "--format=csv,noheader",
                ],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            ).stdout.strip()
    return facts


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for module in ("torch", "transformers", "accelerate", "nnsight", "safetensors", "tokenizers", "numpy"):
        with contextlib.suppress(Exception):
            out[module] = __import__(module).__version__
    return out


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The headline numbers, one line each (failed and skipped sections included)."""
    lines: list[str] = []
    for name, b in result["backbones"].items():
        enc = b.get("encode", {})
        if enc.get("texts_per_s"):
            t = enc["texts_per_s"]
            lines.append(f"{name}: encode texts/s fp32 {t['float32']}, bf16 {t['bfloat16']}")
        for key, v in (b.get("generate", {}).get("results") or {}).items():
            lines.append(f"{name}: generate {key} {v['tokens_per_s']} tokens/s")
        tr = b.get("train", {})
        for variant in ("float32", "bf16_mixed", "bfloat16"):
            if tr.get(variant, {}).get("median_step_s"):
                lines.append(f"{name}: train step {variant} {tr[variant]['median_step_s'] * 1000:.1f} ms")
        ratios = b.get("official", {}).get("ratios_workbench_over_official", {})
        for what, values in ratios.items():
            lines.append(f"{name}: workbench/official {what}: {values}")
        for section, rec in b.items():
            if isinstance(rec, dict) and rec.get("ok") is False:
                lines.append(f"{name}: {section} FAILED: {rec.get('error', '')[:200]}")
            elif isinstance(rec, dict) and "skipped" in rec:
                lines.append(f"{name}: {section} skipped: {rec['skipped']}")
    return lines


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepare", action="store_true", help="copy assets and write the texts (CPU, here)")
    parser.add_argument("--assets", type=Path, default=DEFAULT_ASSETS)
    parser.add_argument("--texts", type=Path, default=DEFAULT_TEXTS, help="texts JSON written by --prepare")
    parser.add_argument("--data", type=Path, default=None, help="data folder for --prepare (shared/data)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="dry run: 2 layers, 16 texts, 2 steps, 8 tokens")
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--budget-s", type=float, default=400.0, help="whole-run time budget")
    parser.add_argument("--official-site", type=Path, default=DEFAULT_OFFICIAL_SITE)
    parser.add_argument("--skip-official", action="store_true")
    parser.add_argument("--skip", default="", help="comma list of sections to leave out: generate, train")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.prepare:
        return prepare(args.assets, args.texts, _data_dir(args.data))

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    s = TINY if args.tiny else FULL
    limits = {k: v * (4 if args.tiny else 1) for k, v in LIMITS.items()}
    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    result: dict[str, Any] = {
        "benchmark": "gpu",
        "status": "running",
        "weights": WEIGHTS_NOTE,
        "tiny": args.tiny,
        "settings": dict(s),
        "budget_s": args.budget_s,
        "backbones": {},
        "errors": [],
        "notes": [
            "attention: the backbones' default implementation (attn_implementation per load below; "
            "transformers picks sdpa)",
            "timings: torch.cuda.synchronize() around every timed call; medians of the timed repeats; "
            "the two dtypes (and batch sizes) alternate within each repeat",
            "official side: llm2vec-gen 0.1.3 with transformers 4.56.2, peft 0.18.0 (wheels installed "
            "with --target into their own folder, run in a subprocess with PYTHONPATH to it); "
            "its generate has no KV cache (a full forward per new token) and computes the logits of "
            "every position; it is timed through EncoderDecoderModel.generate (LLM2VecGenModel.generate "
            "is a batch-1 wrapper of it that hard-codes cuda)",
        ],
    }
    run = Run(args.out, args.budget_s, result)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # finally blocks save the JSON
    run.save()

    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        result["errors"].append("cuda requested but torch.cuda.is_available() is False")
        result["status"] = "failed"
        run.save()
        return 1
    result["device"] = device_facts(device)
    result["versions"] = versions()
    with contextlib.suppress(Exception):
        sys.path.insert(0, str(HERE))
        from common import machine_info

        result["machine"] = machine_info()
    run.save()
    import workbench

    if "device" in inspect.signature(workbench.load).parameters:
        result["notes"].insert(0, f"device placement: workbench.load(..., device='{device}')")
    else:
        result["notes"].insert(
            0,
            "device placement: workbench.load has no device option in this tree (it loads on the CPU); the "
            "script moves gen.backbone.model and then gen (the special rows and heads) with .to(device), "
            "as Trainer._run does",
        )
    data = json.loads(args.texts.read_text(encoding="utf-8"))
    texts = data["encode"][: s["texts"]]
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(texts))
    pending: list[tuple[str, dict[str, Path], dict[str, Any] | None]] = []
    for name in names:
        b: dict[str, Any] = {}
        result["backbones"][name] = b
        folder = run.section(
            b, "build", f"{name}: build random model",
            lambda rec, name=name: build_random(name, args.assets, work, s["layers"], device, rec),
            limits["build"], need=20,
        )  # fmt: skip
        if folder is None:
            continue
        gens: dict[str, Any] = {}

        def load_both(rec: dict[str, Any], folder: Path = folder, gens: dict[str, Any] = gens) -> None:
            for dtype in ("float32", "bfloat16"):
                gens[dtype] = load_gen(folder, dtype, device, rec)

        run.section(b, "load", f"{name}: workbench.load", load_both, limits["load"], need=20)
        if len(gens) < 2:
            continue
        exports = None
        if not args.skip_official:
            exports = run.section(
                b, "official_export", f"{name}: export official layout",
                lambda rec, name=name, gens=gens: export_official_pair(gens, work, name, rec),
                limits["official_export"], need=20,
            )  # fmt: skip
        embs = run.section(
            b, "encode", f"{name}: encode",
            lambda rec, gens=gens: encode_section(gens, texts, s, device, rec), limits["encode"], need=20,
        )  # fmt: skip
        skip = {x.strip() for x in args.skip.split(",") if x.strip()}
        run.section(
            b, "generate", f"{name}: generate",
            lambda rec, gens=gens: generate_section(gens, texts, s, device, rec), limits["generate"], need=30,
        ) if "generate" not in skip else None  # fmt: skip
        run.section(
            b, "train", f"{name}: train step",
            lambda rec, gens=gens: train_section(gens, data, s, device, rec), limits["train"], need=20,
        ) if "train" not in skip else None  # fmt: skip
        if exports is not None:
            pending.append((name, exports, embs))
        gens.clear()
        free_memory(device)
    for name, exports, embs in pending:
        b = result["backbones"][name]

        def official(rec: dict[str, Any], name: str = name, exports: Any = exports, embs: Any = embs) -> None:
            limit = max(10.0, min(limits["official"], run.left() - 5))
            official_section(
                name, exports, texts_file, result["backbones"][name], embs, s, device,
                args.official_site, work, limit, rec,
            )  # fmt: skip

        run.section(
            b, "official", f"{name}: official llm2vec-gen", official, limits["official"] + 10, need=45
        )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    result["status"] = "complete" if not result["errors"] else "complete with errors"
    run.save()
    print(f"== summary ({result.get('device', {}).get('gpu', device)}; random weights)")
    for line in summary_lines(result):
        print("   " + line)
    print(f"wrote {args.out} ({result['status']}, {result['elapsed_s']} s)")
    return 0 if not result["errors"] else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    raise SystemExit(main())
