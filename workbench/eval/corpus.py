"""A large corpus encoded into a folder of shards: resumable, and data parallel under ``accelerate launch``.

``encode_corpus(gen, "docs.txt", "emb/")`` writes ``emb/shard-00000.safetensors``, ... (each holds
``embeddings``, ``[n, D]`` float32, for rows ``[i * shard_size, (i + 1) * shard_size)``) and
``emb/index.json``: rows, dim, shard size, each shard's row range and sha256, the model's identity
(backbone, checkpoint weights, dtype, max length, instruction) and the corpus's sha256.

- Resumable: each shard is written under a temporary name and renamed, so a kill loses only the
  shard being computed. A rerun skips every shard that is present and intact (its sha256 is the one
  the index records, or its own recorded content hash and keys check out), so a finished folder
  costs nothing to run again. A folder written for another corpus, model or instruction is refused.
- Data parallel: process ``k`` of ``N`` (``accelerate.PartialState``; one process without a
  launcher) computes shards ``k, k + N, ...``; only the main process writes ``index.json``, after
  everyone is done. The shards do not depend on the number of processes.

:func:`read_corpus_embeddings` checks the index (every shard present, hashes, row count) and returns
the ``[N, D]`` tensor.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..core.errors import WorkbenchError
from ..core.hashing import sha256_file
from ..core.inputs import check_texts
from ..core.model import LLM2VecGen
from ..core.processes import gather_lists, process_device, process_state
from ..store.atomic import atomic_write
from ..store.textio import read_texts
from .encoders import model_identity, package_versions

log = logging.getLogger("workbench")

FORMAT = "workbench-corpus-1"
INDEX = "index.json"
TENSOR = "embeddings"


def shard_name(i: int) -> str:
    """``shard-00007.safetensors``: the file of shard ``i``."""
    return f"shard-{i:05d}.safetensors"


def corpus_sha256(texts: Sequence[str]) -> str:
    """sha256 of the texts in order (each as its UTF-8 byte length, 8 bytes little-endian, then the bytes)."""
    digest = hashlib.sha256()
    for text in texts:
        raw = text.encode("utf-8")
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)
    return digest.hexdigest()


def corpus_identity(gen: LLM2VecGen, instruction: str | None) -> dict[str, Any]:
    """What must match for stored embeddings to be reused: backbone, checkpoint weights, dtype,
    max length, special tokens and instruction (not the device or batch size)."""
    precision = getattr(gen, "precision", None) or {"dtype": gen.config.dtype}
    return {
        **model_identity(gen),
        "dtype": str(precision.get("dtype", gen.config.dtype)),
        "max_length": gen.config.max_length,
        "num_thought": gen.config.num_thought,
        "num_compress": gen.config.num_compress,
        "instruction": instruction or "",
    }


def encode_corpus(
    gen: LLM2VecGen,
    texts_or_file: str | Path | Sequence[str],
    out_dir: str | Path,
    *,
    instruction: str | None = None,
    shard_size: int = 1024,
    batch_size: int = 16,
    show_progress: bool | None = None,
    field: str = "text",
) -> Path:
    """Encode a corpus into ``out_dir`` as shards plus ``index.json``; returns the index's path.

    ``texts_or_file``: a sequence of texts, or a path (``str`` or ``Path``) to a ``.txt`` file (one
    text per non-empty line) or a ``.jsonl`` file (``field`` of each row). ``instruction`` is joined
    before each text as in :meth:`~workbench.core.model.LLM2VecGen.embed` (None: no instruction).
    Call it in every process of an ``accelerate launch``; each computes its own shards. Progress
    (``show_progress``; None: when there is more than one shard) shows on the main process only.
    """
    if shard_size < 1:
        raise WorkbenchError(f"shard_size must be at least 1, got {shard_size}", "use 1 or more")
    source = None
    if isinstance(texts_or_file, str | Path):
        source = Path(texts_or_file).expanduser()
        texts = read_texts(source, field)
    else:
        texts = check_texts(list(texts_or_file))
    out = Path(out_dir).expanduser()
    state = process_state()
    _place_on_process_device(gen, state)

    identity = corpus_identity(gen, instruction)
    digest = corpus_sha256(texts)
    starts = list(range(0, len(texts), shard_size))
    dim = int(gen.config.teacher_dim)
    old = _read_index(out)
    _check_folder(out, old, digest, identity, shard_size)  # every process: all refuse together
    key = _shard_key(digest, identity)
    known = {s["file"]: s.get("sha256") for s in (old or {}).get("shards", [])}
    fresh = {
        "format": FORMAT,
        "complete": False,
        "rows": len(texts),
        "dim": dim,
        "shard_size": shard_size,
        "corpus": {
            "sha256": digest,
            "source": str(source) if source is not None else None,
            "field": field if source is not None and source.suffix == ".jsonl" else None,
        },
        "model": identity,
        "precision": dict(getattr(gen, "precision", {}) or {}),
        "shards": [
            {"file": shard_name(i), "start": a, "stop": min(a + shard_size, len(texts)), "sha256": None}
            for i, a in enumerate(starts)
        ],
    }
    state.wait_for_everyone()
    if state.is_main_process:
        _remove_stale_temporaries(out)
        if old is None:  # the corpus and model are recorded before any shard, so a kill keeps them
            _write_index(out, fresh)
    state.wait_for_everyone()

    mine = list(range(state.process_index, len(starts), state.num_processes))
    todo = [i for i in mine if not _shard_ok(out, fresh["shards"][i], dim, key, known)]
    show = state.is_main_process and (len(starts) > 1 if show_progress is None else show_progress)
    if state.is_main_process and len(todo) < len(mine):
        log.info("%d of %d shards of this process are already done", len(mine) - len(todo), len(mine))
    from tqdm.auto import tqdm

    for i in tqdm(todo, desc="encoding shards", unit="shard", disable=not show):
        record = fresh["shards"][i]
        emb = gen.embed(
            texts[record["start"] : record["stop"]],
            instruction=instruction,
            batch_size=batch_size,
            show_progress=False,
        )
        _write_shard(out / record["file"], emb, key, record["start"], record["stop"])

    computed = _gather(todo, state)
    state.wait_for_everyone()
    if state.is_main_process:
        for i, record in enumerate(fresh["shards"]):
            path = out / record["file"]  # checked again: what another process wrote, what was kept
            if not _shard_ok(out, record, dim, key, {} if i in computed else known):
                raise WorkbenchError(
                    f"shard {path} is missing or damaged after encoding",
                    f"run the same command again to recompute it into {out}",
                )
            record["sha256"] = sha256_file(path)
        fresh |= {
            "complete": True,
            "last_run": {"processes": state.num_processes, "computed": sorted(computed)},
            "versions": package_versions(),
        }
        _write_index(out, fresh)
    state.wait_for_everyone()
    return out / INDEX


def read_corpus_embeddings(out_dir: str | Path) -> torch.Tensor:
    """The ``[N, D]`` float32 embeddings of a folder :func:`encode_corpus` finished, in corpus order.

    Refused with a one-line error when the index is missing or unfinished, a shard is missing or its
    sha256 differs from the index's, or the rows do not add up.
    """
    from safetensors.torch import load_file

    out = Path(out_dir).expanduser()
    index = _read_index(out)
    if index is None:
        raise WorkbenchError(
            f"{out} holds no {INDEX}",
            f"encode the corpus first: `workbench encode --corpus FILE --out {out}`",
        )
    source = (index.get("corpus") or {}).get("source") or "FILE"
    again = f"run `workbench encode --corpus {source} --out {out}` again to finish"
    shards = index.get("shards", [])
    if not index.get("complete"):
        done = sum((out / s["file"]).is_file() for s in shards)
        raise WorkbenchError(
            f"{out} is incomplete: the run that wrote it did not finish ({done} of {len(shards)} shards "
            "on disk)",
            again,
        )
    bad = [
        s["file"]
        for s in shards
        if not (out / s["file"]).is_file() or sha256_file(out / s["file"]) != s["sha256"]
    ]
    if bad:
        raise WorkbenchError(
            f"{out} is incomplete: {len(bad)} of {len(shards)} shards missing or changed (first: {bad[0]})",
            again,
        )
    parts = [load_file(str(out / s["file"]))[TENSOR] for s in shards]
    emb = torch.cat(parts) if parts else torch.empty(0, int(index["dim"]))
    if tuple(emb.shape) != (int(index["rows"]), int(index["dim"])):
        raise WorkbenchError(
            f"{out} holds {list(emb.shape)} embeddings, its index says [{index['rows']}, {index['dim']}]",
            again,
        )
    return emb


# ----------------------------------------------------------------------------- helpers


def _place_on_process_device(gen: LLM2VecGen, state: Any) -> None:
    """Under a multi-GPU launch, move a model loaded on the first GPU to this process's own GPU."""
    device = process_device(gen, state)
    if device is None:
        return
    gen.backbone.model.to(device)
    gen.to(device)
    if isinstance(getattr(gen, "precision", None), dict):
        gen.precision["device"] = str(device)


def _read_index(out: Path) -> dict[str, Any] | None:
    path = out / INDEX
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        if index.get("format") != FORMAT:
            raise ValueError("format")
    except (OSError, ValueError, AttributeError) as err:
        raise WorkbenchError(
            f"{path} is not a corpus index written by `workbench encode --corpus`",
            f"choose a new folder for --out, or delete {out}",
        ) from err
    return index


def _check_folder(
    out: Path, old: dict[str, Any] | None, digest: str, identity: dict[str, Any], shard_size: int
) -> None:
    """Refuse a folder that holds another corpus, another model's embeddings, or unrelated files."""
    if old is None:
        if out.is_dir() and any(not _is_temporary(name) for name in os.listdir(out)):
            raise WorkbenchError(
                f"{out} is not empty and holds no {INDEX}", "choose a new or empty folder for --out"
            )
        return
    fix = f"choose a new folder for --out, or delete {out} to encode again from scratch"
    if (old.get("corpus") or {}).get("sha256") != digest:
        raise WorkbenchError(f"{out} holds the embeddings of another corpus (its sha256 differs)", fix)
    recorded = old.get("model") or {}
    differs = sorted(k for k in set(recorded) | set(identity) if recorded.get(k) != identity.get(k))
    if differs:
        raise WorkbenchError(
            f"{out} holds embeddings made by another model or instruction (differs: {', '.join(differs)})",
            fix,
        )
    if old.get("shard_size") != shard_size:
        raise WorkbenchError(
            f"{out} was written with shard size {old.get('shard_size')}, not {shard_size}",
            f"pass --shard-size {old.get('shard_size')} to continue it, or {fix}",
        )


def _is_temporary(name: str) -> bool:
    """A file atomic_write left behind when killed (``.shard-00003.safetensors.abc123.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def _remove_stale_temporaries(out: Path) -> None:
    if out.is_dir():
        for name in os.listdir(out):
            if _is_temporary(name) and (name.startswith(".shard-") or name.startswith(f".{INDEX}.")):
                (out / name).unlink(missing_ok=True)


def _shard_key(digest: str, identity: dict[str, Any]) -> str:
    """Recorded inside each shard: which corpus and model it belongs to."""
    blob = json.dumps({"corpus": digest, "model": identity}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _tensor_sha256(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def _write_shard(path: Path, emb: torch.Tensor, key: str, start: int, stop: int) -> None:
    from safetensors.torch import save_file

    emb = emb.detach().float().cpu().contiguous()
    facts = {
        "format": FORMAT,
        "key": key,
        "start": start,
        "stop": stop,
        "embeddings_sha256": _tensor_sha256(emb),
    }
    # one metadata entry: safetensors writes several in a random order, and equal shards should be
    # equal files (same sha256 whichever process or run wrote them)
    meta = {"workbench": json.dumps(facts, sort_keys=True)}
    atomic_write(path, lambda tmp: save_file({TENSOR: emb}, str(tmp), metadata=meta))


def _shard_ok(out: Path, record: dict[str, Any], dim: int, key: str, known: dict[str, str | None]) -> bool:
    """The shard is on disk and intact: its sha256 is the one the index records, or (a shard written
    since the index) its own metadata names this corpus, model and rows and its content hash holds."""
    path = out / record["file"]
    if not path.is_file():
        return False
    if known.get(record["file"]) and sha256_file(path) == known[record["file"]]:
        return True
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("workbench", "{}"))
            emb = f.get_tensor(TENSOR)
    except Exception:  # a damaged file is recomputed, never trusted
        log.warning("recomputing unreadable shard %s", path)
        return False
    rows = record["stop"] - record["start"]
    ok = (
        isinstance(meta, dict)
        and meta.get("format") == FORMAT
        and meta.get("key") == key
        and meta.get("start") == record["start"]
        and meta.get("stop") == record["stop"]
        and emb.dtype == torch.float32
        and tuple(emb.shape) == (rows, dim)
        and meta.get("embeddings_sha256") == _tensor_sha256(emb)
    )
    if not ok:
        log.warning("recomputing shard %s: it does not match the index or its own hash", path)
    return ok


def _write_index(out: Path, index: dict[str, Any]) -> None:
    blob = json.dumps(index, ensure_ascii=False, indent=1, default=str) + "\n"
    atomic_write(out / INDEX, lambda tmp: tmp.write_text(blob, encoding="utf-8"))


def _gather(items: list[int], state: Any) -> list[int]:
    """Every process's list, joined (one process: its own)."""
    return [int(i) for i in gather_lists(items, state)]
