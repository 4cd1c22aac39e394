"""Corpus encoding into shards: equal to ``gen.embed``, resumable, refuses another corpus, and the same
under ``accelerate launch`` with two processes as with one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CORPUS, counting, tiny_gen
from safetensors.torch import load_file

from workbench.cli import main
from workbench.core.errors import WorkbenchError
from workbench.eval.corpus import encode_corpus, read_corpus_embeddings, shard_name

BIN = Path(sys.executable).parent
TEXTS = [f"{i}: {' '.join(CORPUS[i % len(CORPUS)].split())}" for i in range(40)]  # one line each
SHARD = 8  # 40 texts: 5 shards


def test_shards_read_back_equal_embed(tiny_dirs, tmp_path) -> None:
    gen = tiny_gen(tiny_dirs)
    index_path = encode_corpus(gen, TEXTS, tmp_path / "emb", shard_size=SHARD, batch_size=4)
    index = json.loads(index_path.read_text())
    assert index_path == tmp_path / "emb" / "index.json" and index["complete"]
    assert (index["rows"], index["dim"], index["shard_size"]) == (40, 16, SHARD)
    assert [(s["file"], s["start"], s["stop"]) for s in index["shards"]] == [
        (shard_name(i), i * SHARD, (i + 1) * SHARD) for i in range(5)
    ]
    assert all(len(s["sha256"]) == 64 for s in index["shards"])
    assert {"backbone", "backbone_id", "checkpoint", "dtype", "max_length", "instruction"} <= set(
        index["model"]
    )
    assert index["last_run"] == {"processes": 1, "computed": [0, 1, 2, 3, 4]}
    expected = gen.embed(TEXTS, batch_size=4)
    for i in range(5):  # each shard holds its own rows, in corpus order
        shard = load_file(str(tmp_path / "emb" / shard_name(i)))["embeddings"]
        assert shard.dtype == torch.float32
        assert torch.allclose(shard, expected[i * SHARD : (i + 1) * SHARD], atol=1e-5)
    assert torch.allclose(read_corpus_embeddings(tmp_path / "emb"), expected, atol=1e-5)


def test_resume_recomputes_only_missing_and_damaged_shards(tiny_dirs, tmp_path, monkeypatch) -> None:
    gen = tiny_gen(tiny_dirs)
    out = tmp_path / "emb"
    encode_corpus(gen, TEXTS, out, shard_size=SHARD, instruction="Summarize:")
    before = read_corpus_embeddings(out)
    (out / shard_name(1)).unlink()
    damaged = out / shard_name(3)
    raw = bytearray(damaged.read_bytes())
    raw[-16:] = bytes(b ^ 0xFF for b in raw[-16:])  # the last float rows: the file still parses
    damaged.write_bytes(bytes(raw))
    with pytest.raises(WorkbenchError, match=r"incomplete: 2 of 5 shards.*again to finish"):
        read_corpus_embeddings(out)
    untouched = {i: (out / shard_name(i)).stat().st_mtime_ns for i in (0, 2, 4)}
    (out / ".shard-00001.safetensors.killed.tmp").write_bytes(b"half a shard")  # a kill's leftover

    calls = counting(gen, monkeypatch)
    encode_corpus(gen, TEXTS, out, shard_size=SHARD, instruction="Summarize:")
    assert calls == [TEXTS[8:16], TEXTS[24:32]]  # shards 1 and 3, each once
    assert {i: (out / shard_name(i)).stat().st_mtime_ns for i in (0, 2, 4)} == untouched
    assert not list(out.glob(".*.tmp"))
    assert json.loads((out / "index.json").read_text())["last_run"]["computed"] == [1, 3]
    assert torch.allclose(read_corpus_embeddings(out), before, atol=1e-5)

    calls.clear()  # a finished folder: nothing to compute, from a file holding the same corpus too
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n".join(TEXTS) + "\n\n", encoding="utf-8")
    encode_corpus(gen, corpus, out, shard_size=SHARD, instruction="Summarize:")
    assert calls == []


def test_interrupted_run_keeps_its_shards(tiny_dirs, tmp_path, monkeypatch) -> None:
    gen = tiny_gen(tiny_dirs)
    out = tmp_path / "emb"
    embed, seen = gen.embed, []

    def interrupted(texts, **kwargs):
        seen.append(texts)
        if len(seen) == 3:
            raise KeyboardInterrupt  # Ctrl-C while the third shard is computed
        return embed(texts, **kwargs)

    monkeypatch.setattr(gen, "embed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(gen, TEXTS, out, shard_size=SHARD)
    assert sorted(p.name for p in out.iterdir()) == ["index.json", shard_name(0), shard_name(1)]
    with pytest.raises(WorkbenchError, match="the run that wrote it did not finish"):
        read_corpus_embeddings(out)
    monkeypatch.setattr(gen, "embed", embed)
    calls = counting(gen, monkeypatch)
    encode_corpus(gen, TEXTS, out, shard_size=SHARD)
    assert calls == [TEXTS[16:24], TEXTS[24:32], TEXTS[32:40]]
    assert torch.allclose(read_corpus_embeddings(out), embed(TEXTS), atol=1e-5)


def test_refuses_another_corpus_model_or_folder(tiny_dirs, tmp_path) -> None:
    gen = tiny_gen(tiny_dirs)
    out = tmp_path / "emb"
    rows = tmp_path / "docs.jsonl"
    rows.write_text("".join(json.dumps({"body": t}) + "\n" for t in TEXTS[:20]), encoding="utf-8")
    encode_corpus(gen, rows, out, shard_size=SHARD, field="body")
    assert torch.allclose(read_corpus_embeddings(out), gen.embed(TEXTS[:20]), atol=1e-5)
    with pytest.raises(WorkbenchError, match=r"another corpus.*Fix: choose a new folder"):
        encode_corpus(gen, [*TEXTS[:19], "something else"], out, shard_size=SHARD)
    with pytest.raises(WorkbenchError, match=r"another model or instruction \(differs: instruction\)"):
        encode_corpus(gen, TEXTS[:20], out, shard_size=SHARD, instruction="Find:")
    with pytest.raises(WorkbenchError, match=r"shard size 8, not 4.*--shard-size 8"):
        encode_corpus(gen, TEXTS[:20], out, shard_size=4)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(WorkbenchError, match=r"not empty and holds no index\.json"):
        encode_corpus(gen, TEXTS, other)
    with pytest.raises(WorkbenchError, match=r"holds no index\.json"):
        read_corpus_embeddings(other)
    (out / "index.json").write_text(  # an index left by a killed first run: no shard hashes yet
        json.dumps(json.loads((out / "index.json").read_text()) | {"complete": False})
    )
    with pytest.raises(
        WorkbenchError,
        match=r"incomplete: the run that wrote it did not finish.*--corpus \S+docs.jsonl --out",
    ):
        read_corpus_embeddings(out)


def test_cli_corpus_and_usage_errors(tiny_dirs, tmp_path, capsys) -> None:
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n".join(TEXTS[:12]) + "\n", encoding="utf-8")
    out = tmp_path / "emb"
    model = ["-m", str(tiny_dirs["llama"]), "--untrained"]
    argv = ["encode", "--corpus", str(corpus), "--out-dir", str(out), "--shard-size", "8", *model]
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {"index": str(out / "index.json"), "rows": 12, "dim": 384, "shards": 2,
                       "computed": 2, "processes": 1}  # fmt: skip
    assert main(argv) == 0
    assert "0 computed now" in capsys.readouterr().out and read_corpus_embeddings(out).shape == (12, 384)
    for bad in (["encode"], ["encode", "q", "--corpus", str(corpus), "--out", str(out)],
                ["encode", "--corpus", str(corpus)], ["encode", "q", "--out", str(out)]):  # fmt: skip
        assert main(bad) == 2
        capsys.readouterr()
    assert main(["encode", "--corpus", str(tmp_path / "none.txt"), "--out", str(out)]) == 1
    assert "does not exist" in capsys.readouterr().err


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_equal_one(tiny_dirs, tmp_path, monkeypatch, capsys) -> None:
    if shutil.which("accelerate", path=str(BIN)) is None:
        pytest.skip("accelerate's launcher is not installed")
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    args = ["--corpus", str(corpus), "--shard-size", str(SHARD), "-m", str(tiny_dirs["llama"]), "--untrained",
            "--device", "cpu", "--batch-size", "4"]  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["encode", *args, "--out", str(one)]) == 0
    assert f"index: {one / 'index.json'}" in capsys.readouterr().out
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["CUDA_VISIBLE_DEVICES"] = ""  # two CPU processes over gloo, also on a machine with one GPU

    def launch() -> subprocess.CompletedProcess:
        shutil.rmtree(two, ignore_errors=True)
        command = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(free_port()), "-m", "workbench", "encode", *args,
                   "--out", str(two), "--json"]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)

    proc = launch()
    if proc.returncode != 0 and any(m in proc.stderr.lower() for m in ("gloo", "sigabrt")):
        proc = launch()  # one retry: gloo on loopback can fail to connect or abort on a busy machine
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["processes"] == 2, proc.stdout  # printed once, by the main process
    a, b = (json.loads((d / "index.json").read_text()) for d in (one, two))
    assert b["last_run"] == {"processes": 2, "computed": [0, 1, 2, 3, 4]}
    assert [(s["file"], s["start"], s["stop"]) for s in a["shards"]] == [
        (s["file"], s["start"], s["stop"]) for s in b["shards"]
    ]
    assert (a["model"], a["corpus"]["sha256"]) == (b["model"], b["corpus"]["sha256"])
    first, second = read_corpus_embeddings(one), read_corpus_embeddings(two)
    assert torch.allclose(first, second, atol=1e-5)
    if torch.equal(first, second):  # equal shards are equal files (thread counts can move the last bit)
        assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    # one process finishes a two-process folder: nothing left to compute
    assert main(["encode", *args, "--out", str(two), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["computed"] == 0
