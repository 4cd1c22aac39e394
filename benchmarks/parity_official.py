"""Parity with the official ``llm2vec-gen`` 0.1.3 package on the default backbone.

Exports the shipped SmolLM2 checkpoint in the official layout with ``copy_base`` (base model: the
dequantised SmolLM2 from the workbench cache, copied with a config transformers 4.56 reads), encodes
the same 64 texts with the workbench and with the official code (run by ``official_worker.py`` in a
side environment), and reports max |Δ|, minimum cosine, texts/s, load time and peak memory of each.
Each side runs in its own subprocess so that peak RSS is its own. Writes
``benchmarks/results/parity_official.json``.

Side environment (created by ``--setup`` when missing; the official package pins transformers 4.56,
which the workbench's transformers 5 cannot share a venv with)::

    python -m venv /tmp/official-venv
    /tmp/official-venv/bin/pip install torch==2.13.0
    /tmp/official-venv/bin/pip install --no-deps llm2vec-gen==0.1.3
    /tmp/official-venv/bin/pip install transformers==4.56.2 peft==0.18.0 pyyaml safetensors

Run: ``python benchmarks/parity_official.py [--setup] [--venv /tmp/official-venv]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "parity_official.json"
DEFAULT_VENV = Path("/tmp/official-venv")
TARGET_COSINE = 0.9999
SIDE_PACKAGES = (
    ["torch==2.13.0"],
    ["--no-deps", "llm2vec-gen==0.1.3"],
    ["transformers==4.56.2", "peft==0.18.0", "pyyaml", "safetensors"],
)
DIFFERENCES = [
    "instruction join: same string (official README: instruction ending in a space + text; workbench: "
    "instruction.strip() + ' ' + text)",
    "special tokens: official appends the N token strings to the text and tokenizes once; the workbench "
    "tokenizes the text (split_special_tokens=True) and appends the N ids: identical ids unless the text "
    "spells a special token string",
    "truncation: official truncates text + specials to max_length from the right, then overwrites the last "
    "N positions of rows that lost a special token; the workbench truncates the text to max_length - N: the "
    "same ids",
    "max length: official encode() truncates at its max_length argument (default 512) and ignores "
    "run_config's max_input_length; the workbench uses the checkpoint's max_length (128 for the shipped "
    "SmolLM2 checkpoint); this benchmark passes the checkpoint's value to both",
    "padding: both pad on the left when the tokenizer says so; the official code passes no position_ids "
    "(positions count from the first pad), the workbench starts positions at each row's first real token",
    "padding side: a tokenizer saved by the official trainer under transformers 4.56 keeps no "
    "padding_side, which loads as 'right', and encode() then reads pad positions for shorter texts in a "
    "batch; workbench exports write padding_side 'left'",
    "BOS: both use the tokenizer's default add_special_tokens=True",
    "memory: official from_pretrained loads the base model twice (AutoModel encoder + "
    "AutoModelForCausalLM decoder); the workbench holds one copy",
]


def texts_64() -> list[str]:
    """64 texts: NQ-open and GSM8K questions with the retrieval instruction, example documents."""
    from workbench.core.config import DOCUMENT_INSTRUCTION, QUERY_INSTRUCTION, with_instruction

    data = Path(os.environ.get("WORKBENCH_DATA", HERE.parent.parent / "shared" / "data"))

    def field(path: Path, name: str, k: int) -> list[str]:
        rows = [json.loads(line)[name] for line in path.read_text(encoding="utf-8").splitlines()[:k]]
        return [r.strip() for r in rows]

    docs = [
        line.strip()
        for line in (HERE.parent / "examples" / "documents.txt").read_text().splitlines()
        if line.strip()
    ]
    nq = field(data / "nq-open" / "NQ-open.dev.jsonl", "question", 64 - 24 - len(docs))
    gsm = field(data / "gsm8k" / "train.jsonl", "question", 24)
    return with_instruction(nq + gsm, QUERY_INSTRUCTION) + with_instruction(docs, DOCUMENT_INSTRUCTION)


def side_python(venv: Path, setup: bool) -> Path:
    """The side environment's python, created when missing and ``setup`` is set."""
    python = venv / "bin" / "python"
    ok = (
        python.is_file()
        and subprocess.run([python, "-c", "import llm2vec_gen, peft"], check=False).returncode == 0
    )
    if ok:
        return python
    if not setup:
        sys.exit(f"no official side environment at {venv}: run with --setup, or see this file's docstring")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for packages in SIDE_PACKAGES:
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *packages], check=True)
    return python


def prepare(work: Path) -> tuple[Path, int]:
    """The shipped checkpoint exported with a transformers-4.56-readable copy of the cached SmolLM2."""
    import workbench
    from workbench.core.registry import DEFAULT_BACKBONE
    from workbench.store.official import export_official

    gen = workbench.load(DEFAULT_BACKBONE)
    ckpt = export_official(gen, work / "official", copy_base=True, overwrite=True)
    return ckpt, gen.config.max_length


def workbench_worker(texts_file: str, out: str, batch_size: int, threads: int, repeats: int) -> None:
    """The workbench side, in its own process: load, encode batched and one by one, peak RSS."""
    import torch
    from common import peak_rss_mb
    from safetensors.torch import save_file

    torch.set_num_threads(threads)
    start = time.perf_counter()
    import workbench
    from workbench.core.registry import DEFAULT_BACKBONE

    gen = workbench.load(DEFAULT_BACKBONE)
    load_s = time.perf_counter() - start
    texts = json.loads(Path(texts_file).read_text())
    gen.embed(texts[:batch_size], batch_size=batch_size)
    times = []
    for _ in range(repeats):  # the machine may be shared: keep the best of a few passes
        start = time.perf_counter()
        batched = gen.embed(texts, batch_size=batch_size, show_progress=False)
        times.append(time.perf_counter() - start)
    batched_s = min(times)
    single = torch.cat([gen.embed([t]) for t in texts])
    rows = [gen.encoder_batch([t]).input_ids[0].tolist() for t in texts]
    save_file(
        {
            "batched": batched,
            "single": single,
            "ids": torch.tensor([i for r in rows for i in r]),
            "lengths": torch.tensor([len(r) for r in rows]),
        },
        out,
    )
    params = sum(p.numel() for p in gen.backbone.model.parameters()) + sum(
        p.numel() for p in gen.parameters()
    )
    report = {
        "load_s": load_s,
        "batched_s": batched_s,
        "batched_s_all": times,
        "texts_per_s": len(texts) / batched_s,
        "parameters_loaded": params,
        "peak_rss_mb": peak_rss_mb(),  # VmHWM: ru_maxrss would carry the parent's RSS over
        "special_ids": gen.special_ids,
    }
    print("REPORT " + json.dumps(report))


def run_worker(cmd: list[str], extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(extra_env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("REPORT ")), None)
    if proc.returncode != 0 or line is None:
        sys.exit(f"worker failed ({' '.join(cmd[:3])}):\n{proc.stderr[-3000:]}")
    return json.loads(line[len("REPORT ") :])


def compare(a: Any, b: Any) -> dict[str, float]:
    import torch

    cos = torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)
    return {"max_abs_diff": float((a - b).abs().max()), "min_cosine": float(cos.min())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--setup", action="store_true", help="create the side environment if missing")
    parser.add_argument(
        "--official-site",
        type=Path,
        default=None,
        help="instead of --venv: a pip --target folder with llm2vec-gen 0.1.3, transformers 4.56.2, peft "
        "0.18.0 (see cpu_bf16.py), run with this interpreter's torch",
    )
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per side (best kept)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--worker", nargs=2, metavar=("TEXTS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        workbench_worker(*args.worker, args.batch_size, args.threads, args.repeats)
        return 0
    from common import machine_info, print_table
    from safetensors.torch import load_file

    if args.official_site is not None:  # the packages in a pip --target folder, torch from this venv
        python, side_env = Path(sys.executable), {"PYTHONPATH": str(args.official_site)}
    else:
        python, side_env = side_python(args.venv, args.setup), {}
    work = args.work or Path(tempfile.mkdtemp(prefix="parity-official-"))
    work.mkdir(parents=True, exist_ok=True)
    ckpt, max_length = prepare(work)
    texts = texts_64()
    (work / "texts.json").write_text(json.dumps(texts))
    common = [
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
        "--repeats",
        str(args.repeats),
    ]
    ours = run_worker(
        [
            sys.executable,
            __file__,
            "--worker",
            str(work / "texts.json"),
            str(work / "ours.safetensors"),
            *common,
        ]
    )
    theirs = run_worker(
        [
            str(python),
            str(HERE / "official_worker.py"),
            str(ckpt),
            str(work / "texts.json"),
            str(work / "theirs.safetensors"),
            *common,
            "--max-length",
            str(max_length),
        ],
        side_env,
    )
    a, b = load_file(str(work / "ours.safetensors")), load_file(str(work / "theirs.safetensors"))
    same_ids = [
        x.tolist() == y.tolist()
        for x, y in zip(
            a["ids"].split(a["lengths"].tolist()), b["ids"].split(b["lengths"].tolist()), strict=True
        )
    ]
    batched, single = compare(a["batched"], b["batched"]), compare(a["single"], b["single"])
    result = {
        "texts": len(texts),
        "batch_size": args.batch_size,
        "max_length": max_length,
        "timing": f"best of {args.repeats} batched passes per side, each side in its own process",
        "dtype": "float32",
        "token_ids_identical": f"{sum(same_ids)}/{len(same_ids)}",
        "batched": batched,
        "one_at_a_time": single,
        "workbench": ours,
        "official": theirs,
        "speed_ratio_workbench_over_official": ours["texts_per_s"] / theirs["texts_per_s"],
        "differences": DIFFERENCES,
        "target_min_cosine": TARGET_COSINE,
        "machine": machine_info(),
        # its versions are under "official"; no machine path
        "side_environment": "pip --target folder" if args.official_site else args.venv.name,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    ok = min(batched["min_cosine"], single["min_cosine"]) >= TARGET_COSINE
    print_table(
        "Workbench vs official llm2vec-gen 0.1.3 (SmolLM2-135M, shipped checkpoint, fp32, 2 threads)",
        [
            ("token ids identical", result["token_ids_identical"], "all", sum(same_ids) == len(same_ids)),
            ("max |Δ|, batched", f"{batched['max_abs_diff']:.2e}", "", None),
            ("min cosine, batched", f"{batched['min_cosine']:.7f}", f"≥ {TARGET_COSINE}", ok),
            ("max |Δ|, one text at a time", f"{single['max_abs_diff']:.2e}", "", None),
            ("min cosine, one at a time", f"{single['min_cosine']:.7f}", f"≥ {TARGET_COSINE}", ok),
            ("texts/s workbench", f"{ours['texts_per_s']:.1f}", "", None),
            ("texts/s official", f"{theirs['texts_per_s']:.1f}", "", None),
            ("load s workbench / official", f"{ours['load_s']:.1f} / {theirs['load_s']:.1f}", "", None),
            ("peak RSS MB workbench", f"{ours['peak_rss_mb']:.0f}", "", None),
            ("peak RSS MB official", f"{theirs['peak_rss_mb']:.0f}", "", None),
            (
                "parameters loaded, workbench / official",
                f"{ours['parameters_loaded']:,} / {theirs['parameters_loaded']:,}",
                "",
                None,
            ),
        ],
    )
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
