"""Runs inside the side environment of the official ``llm2vec-gen`` 0.1.3 package (not the workbench's).

Loads an official checkpoint with ``LLM2VecGenModel.from_pretrained`` and encodes a JSON list of texts
exactly as its ``encode`` does, batched and one text at a time; writes the embeddings, the token ids
its tokenizer produced and its timings. Called by ``parity_official.py``; needs torch, transformers
4.56, peft 0.18 and llm2vec-gen 0.1.3 (installed with --no-deps).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from common import peak_rss_mb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("texts", help="JSON file with a list of strings")
    parser.add_argument("out", help="safetensors file to write")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--max-length", type=int, default=512, help="encode()'s max_length (its default: 512)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from llm2vec_gen import LLM2VecGenModel
    from safetensors.torch import save_file

    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)
    start = time.perf_counter()
    model = LLM2VecGenModel.from_pretrained(args.checkpoint)
    model.model.eval()
    load_s = time.perf_counter() - start
    params = sum(p.numel() for p in model.model.parameters())
    # warm-up, then the timed batched encode (official order: the texts as given)
    model.encode(texts[: args.batch_size])
    times = []
    for _ in range(args.repeats):  # the machine may be shared: keep the best of a few passes
        start = time.perf_counter()
        batched = torch.cat(
            [
                model.encode(texts[i : i + args.batch_size], max_length=args.max_length)
                for i in range(0, len(texts), args.batch_size)
            ]
        )
        times.append(time.perf_counter() - start)
    batched_s = min(times)
    single = torch.cat([model.encode([t], max_length=args.max_length) for t in texts])
    specials = model.tokenizer.additional_special_tokens
    ids = [
        model.tokenizer(t + "".join(specials), truncation=True, max_length=args.max_length)["input_ids"]
        for t in texts
    ]
    n = len(specials)
    ids = [
        row
        if row[-n:] == model.tokenizer.convert_tokens_to_ids(specials)
        else row[:-n] + model.tokenizer.convert_tokens_to_ids(specials)
        for row in ids
    ]
    flat = torch.tensor([i for row in ids for i in row], dtype=torch.long)
    lengths = torch.tensor([len(row) for row in ids], dtype=torch.long)
    save_file(
        {
            "batched": batched.float().contiguous(),
            "single": single.float().contiguous(),
            "ids": flat,
            "lengths": lengths,
        },
        args.out,
    )
    report = {
        "load_s": load_s,
        "batched_s": batched_s,
        "batched_s_all": times,
        "texts_per_s": len(texts) / batched_s,
        "parameters_loaded": params,
        "peak_rss_mb": peak_rss_mb(),  # VmHWM: ru_maxrss would carry the parent's RSS over
        "padding_side": model.tokenizer.padding_side,
        "special_tokens": specials,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "peft": __import__("peft").__version__,
    }
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main()
