"""GPU variant of ``official_worker.py``: the official ``llm2vec-gen`` 0.1.3 encode and generate speeds.

Runs in the official package's own environment (transformers 4.56.2, peft 0.18.0, llm2vec-gen 0.1.3 on
PYTHONPATH; never the workbench's). Loads each exported checkpoint with
``LLM2VecGenModel.from_pretrained`` (its dtype is the ``torch_dtype`` of the checkpoint's
``run_config.yml``: ``from_pretrained`` takes none), on ``--device`` (``LLM2VecGenModel`` picks cuda
by itself when there is one; the model is rebuilt on the asked device when it did not), then:

- encode: warm-up, then ``--repeats`` batched passes over the texts per checkpoint, the checkpoints
  alternating; texts/s from the median; the last pass's embeddings are written to ``--out``;
- generate: ``EncoderDecoderModel.generate`` (what ``LLM2VecGenModel.generate`` calls, for one text
  and on "cuda" only) from the soft prompts of the first texts, at each ``--gen-batches`` size;
  its EOS stop (batch 1 only) is disabled by giving the config an EOS id of -1, so it runs the full
  ``--new-tokens`` unless the model emits an id it adds itself (151643 for Qwen2); tokens/s from the
  tokens actually produced.

Prints one ``REPORT {json}`` line. Called by ``gpu.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", action="append", required=True, help="LABEL=PATH, repeatable")
    parser.add_argument("--texts", required=True, help="JSON file with a list of strings")
    parser.add_argument("--out", required=True, help="safetensors file for the embeddings")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=512, help="encode()'s max_length (its default)")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--gen-batches", default="8,1")
    parser.add_argument("--gen-repeats", type=int, default=1)
    args = parser.parse_args()
    from llm2vec_gen import LLM2VecGenModel
    from safetensors.torch import save_file

    with open(args.texts, encoding="utf-8") as fh:
        texts = json.load(fh)
    device, batch = args.device, args.batch_size
    models: dict[str, Any] = {}
    report: dict[str, Any] = {"load": {}}
    for item in args.checkpoint:
        label, path = item.split("=", 1)
        began = time.perf_counter()
        model = LLM2VecGenModel.from_pretrained(path)
        picked = str(model.device)
        if picked != device:
            model = LLM2VecGenModel(model.model, model.tokenizer, device=device)
        model.model.eval()
        sync(device)
        params = next(model.model.encoder_model.parameters())
        decoder = model.model.decoder_model
        report["load"][label] = {
            "load_s": round(time.perf_counter() - began, 2),
            "device_picked_by_llm2vec_gen": picked,
            "device": str(params.device),
            "dtype": str(params.dtype).replace("torch.", ""),
            "attn_implementation": getattr(decoder.config, "_attn_implementation", None),
            "parameters_loaded": sum(p.numel() for p in model.model.parameters()),
            "decoder_is_a_second_copy": decoder is not model.model.encoder_model,
        }
        models[label] = model

    def encode_all(model: Any) -> torch.Tensor:
        return torch.cat(
            [
                model.encode(texts[i : i + batch], max_length=args.max_length).float().cpu()
                for i in range(0, len(texts), batch)
            ]
        )

    for model in models.values():
        model.encode(texts[:batch], max_length=args.max_length)
    labels = list(models)
    times: dict[str, list[float]] = {label: [] for label in labels}
    embs: dict[str, torch.Tensor] = {}
    for r in range(args.repeats):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            sync(device)
            began = time.perf_counter()
            embs[label] = encode_all(models[label])
            sync(device)
            times[label].append(time.perf_counter() - began)
    save_file({k: v.contiguous() for k, v in embs.items()}, args.out)
    report["encode"] = {
        "texts": len(texts),
        "batch_size": batch,
        "max_length": args.max_length,
        "call": "LLM2VecGenModel.encode(texts[i:i+B], max_length=512)",
        "seconds": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "texts_per_s": {k: round(len(texts) / statistics.median(v), 1) for k, v in times.items()},
    }

    batches = [int(b) for b in args.gen_batches.split(",")]
    recon: dict[str, torch.Tensor] = {}
    for label, model in models.items():
        _, recon[label] = model.encode(texts[: max(batches)], get_recon_hidden_states=True)
        model.model.config.eos_token_id = -1  # no early stop: run the full length
    combos = [(label, b) for label in labels for b in batches]

    def generate(label: str, b: int, new: int) -> int:
        soft = recon[label][:b]
        dummy = torch.zeros(b, 1, dtype=torch.long, device=soft.device)
        ids = models[label].model.generate(
            input_ids=dummy, attention_mask=dummy, max_new_tokens=new, decoder_inputs_embeds=soft
        )
        return int(ids.numel())

    for label, b in combos:
        generate(label, b, min(8, args.new_tokens))
    gen_times: dict[tuple[str, int], list[float]] = {c: [] for c in combos}
    gen_tokens: dict[tuple[str, int], list[int]] = {c: [] for c in combos}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for r in range(args.gen_repeats):
        for label, b in combos[r % len(combos) :] + combos[: r % len(combos)]:
            sync(device)
            began = time.perf_counter()
            gen_tokens[(label, b)].append(generate(label, b, args.new_tokens))
            sync(device)
            gen_times[(label, b)].append(time.perf_counter() - began)
    report["generate"] = {}
    for label, b in combos:
        t = statistics.median(gen_times[(label, b)])
        n = statistics.median(gen_tokens[(label, b)])
        report["generate"][f"{label}_b{b}"] = {
            "median_s": round(t, 3),
            "new_tokens_total": int(n),
            "tokens_per_s": round(n / t, 1),
            "ms_per_step": round(1000 * t / max(1, n / b), 2),
        }
    report["generate_call"] = (
        "EncoderDecoderModel.generate(input_ids, attention_mask, max_new_tokens=N, "
        "decoder_inputs_embeds=soft prompts): greedy, no KV cache, full logits each step"
    )
    if device == "cuda":
        report["peak_gpu_mb_generate"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    report["versions"] = {
        m: __import__(m).__version__
        for m in ("torch", "transformers", "peft", "tokenizers", "huggingface_hub")
    }
    try:
        from importlib.metadata import version

        report["versions"]["llm2vec_gen"] = version("llm2vec-gen")
    except Exception:  # no dist-info on the path
        report["versions"]["llm2vec_gen"] = None
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main()
