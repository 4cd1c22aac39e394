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

Prints one ``REPORT {json}`` line (with the process's peak RSS). Called by ``gpu.py``; an empty
``--gen-batches`` leaves generation out (``cpu_bf16.py``'s peak-RSS runs). ``--serve`` instead loads
the checkpoints and answers timing commands on stdin (:func:`serve`), so that ``cpu_bf16.py`` can
alternate its passes with the workbench's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import torch
from common import peak_rss_mb  # this file's folder is on sys.path when run as a script


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def load_models(checkpoints: list[str], device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each ``LABEL=PATH`` checkpoint loaded on ``device``; the models and their load facts."""
    from llm2vec_gen import LLM2VecGenModel

    models: dict[str, Any] = {}
    facts: dict[str, Any] = {}
    for item in checkpoints:
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
        facts[label] = {
            "load_s": round(time.perf_counter() - began, 2),
            "device_picked_by_llm2vec_gen": picked,
            "device": str(params.device),
            "dtype": str(params.dtype).replace("torch.", ""),
            "attn_implementation": getattr(decoder.config, "_attn_implementation", None),
            "parameters_loaded": sum(p.numel() for p in model.model.parameters()),
            "decoder_is_a_second_copy": decoder is not model.model.encoder_model,
        }
        models[label] = model
    return models, facts


def encode_all(model: Any, texts: list[str], batch: int, max_length: int) -> torch.Tensor:
    """The official ``encode`` over ``texts`` in batches of ``batch``, in the given order."""
    return torch.cat(
        [
            model.encode(texts[i : i + batch], max_length=max_length).float().cpu()
            for i in range(0, len(texts), batch)
        ]
    )


def soft_prompts(model: Any, texts: list[str]) -> torch.Tensor:
    """The decoder's input embeddings of ``texts``; the config's EOS id is then set to -1 (no early stop)."""
    _, recon = model.encode(texts, get_recon_hidden_states=True)
    model.model.config.eos_token_id = -1  # no early stop: run the full length
    return recon


def generate(model: Any, soft: torch.Tensor, new: int) -> int:
    """``EncoderDecoderModel.generate`` from ``soft`` for ``new`` tokens; the ids it produced."""
    dummy = torch.zeros(soft.shape[0], 1, dtype=torch.long, device=soft.device)
    ids = model.model.generate(
        input_ids=dummy, attention_mask=dummy, max_new_tokens=new, decoder_inputs_embeds=soft
    )
    return int(ids.numel())


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {
        m: __import__(m).__version__
        for m in ("torch", "transformers", "peft", "tokenizers", "huggingface_hub")
    }
    try:
        from importlib.metadata import version

        out["llm2vec_gen"] = version("llm2vec-gen")
    except Exception:  # no dist-info on the path
        out["llm2vec_gen"] = None
    return out


def serve(models: dict[str, Any], texts: list[str], args: argparse.Namespace, load: dict[str, Any]) -> None:
    """Answer one JSON command a line on stdin with one ``REPLY {json}`` line, until ``finish`` or EOF.

    ``{"op": "encode", "label": L}``: one timed pass over the texts (seconds);
    ``{"op": "generate", "label": L, "batch": B, "new": N}``: one timed generation from the soft
    prompts of the first B texts, after a short warm-up at the first call of (L, B) (seconds, tokens);
    ``{"op": "finish"}``: writes the last embeddings of each label to ``--out``; versions, peak RSS.
    """
    from safetensors.torch import save_file

    device, batch = args.device, args.batch_size
    for model in models.values():  # warm-up
        model.encode(texts[:batch], max_length=args.max_length)
    print("READY " + json.dumps({"load": load, "peak_rss_mb_after_load": peak_rss_mb()}), flush=True)
    embs: dict[str, torch.Tensor] = {}
    recon: dict[str, torch.Tensor] = {}
    warmed: set[tuple[str, int]] = set()
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            reply: dict[str, Any]
            if cmd["op"] == "encode":
                sync(device)
                began = time.perf_counter()
                embs[cmd["label"]] = encode_all(models[cmd["label"]], texts, batch, args.max_length)
                sync(device)
                reply = {"seconds": time.perf_counter() - began}
            elif cmd["op"] == "generate":
                label, b, new = cmd["label"], int(cmd["batch"]), int(cmd["new"])
                model = models[label]
                if label not in recon:
                    recon[label] = soft_prompts(model, texts[: int(cmd.get("states", b))])
                if (label, b) not in warmed:
                    generate(model, recon[label][:b], min(8, new))
                    warmed.add((label, b))
                sync(device)
                began = time.perf_counter()
                tokens = generate(model, recon[label][:b], new)
                sync(device)
                reply = {"seconds": time.perf_counter() - began, "tokens": tokens}
            elif cmd["op"] == "finish":
                if embs:
                    save_file({k: v.contiguous() for k, v in embs.items()}, args.out)
                print(
                    "REPLY " + json.dumps({"versions": versions(), "peak_rss_mb": peak_rss_mb()}), flush=True
                )
                return
            else:
                reply = {"error": f"unknown op {cmd['op']!r}"}
        except Exception as err:
            reply = {"error": f"{type(err).__name__}: {err}"[:2000]}
        print("REPLY " + json.dumps(reply), flush=True)


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
    parser.add_argument("--gen-batches", default="8,1", help="comma list; empty: no generation")
    parser.add_argument("--gen-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--serve", action="store_true", help="answer commands on stdin (see serve())")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from safetensors.torch import save_file

    with open(args.texts, encoding="utf-8") as fh:
        texts = json.load(fh)
    device, batch = args.device, args.batch_size
    models, load = load_models(args.checkpoint, device)
    if args.serve:
        serve(models, texts, args, load)
        return
    report: dict[str, Any] = {"load": load}
    for model in models.values():
        model.encode(texts[:batch], max_length=args.max_length)
    labels = list(models)
    times: dict[str, list[float]] = {label: [] for label in labels}
    embs: dict[str, torch.Tensor] = {}
    for r in range(args.repeats):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            sync(device)
            began = time.perf_counter()
            embs[label] = encode_all(models[label], texts, batch, args.max_length)
            sync(device)
            times[label].append(time.perf_counter() - began)
    save_file({k: v.contiguous() for k, v in embs.items()}, args.out)
    report["encode"] = {
        "texts": len(texts),
        "batch_size": batch,
        "max_length": args.max_length,
        "call": f"LLM2VecGenModel.encode(texts[i:i+B], max_length={args.max_length})",
        "seconds": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "texts_per_s": {k: round(len(texts) / statistics.median(v), 1) for k, v in times.items()},
    }
    report["peak_rss_mb_encode"] = peak_rss_mb()

    batches = [int(b) for b in args.gen_batches.split(",") if b.strip()]
    if batches:
        recon = {label: soft_prompts(model, texts[: max(batches)]) for label, model in models.items()}
        combos = [(label, b) for label in labels for b in batches]
        for label, b in combos:
            generate(models[label], recon[label][:b], min(8, args.new_tokens))
        gen_times: dict[tuple[str, int], list[float]] = {c: [] for c in combos}
        gen_tokens: dict[tuple[str, int], list[int]] = {c: [] for c in combos}
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for r in range(args.gen_repeats):
            for label, b in combos[r % len(combos) :] + combos[: r % len(combos)]:
                sync(device)
                began = time.perf_counter()
                gen_tokens[(label, b)].append(generate(models[label], recon[label][:b], args.new_tokens))
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
    report["peak_rss_mb"] = peak_rss_mb()
    report["versions"] = versions()
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main()
