"""`workbench respond`: prompt sources, the evaluation guard, and a cache that survives kills."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.core.backbone import load_backbone
from workbench.core.errors import WorkbenchError
from workbench.train.prompts import load_prompts
from workbench.train.responding import respond

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BIN = Path(sys.executable).parent
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the repository")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_file_sources(tmp_path) -> None:
    (tmp_path / "p.txt").write_text("first\n\nsecond\nfirst\n")
    assert [p.text for p in load_prompts(str(tmp_path / "p.txt"), data=tmp_path)] == ["first", "second"]
    (tmp_path / "p.csv").write_text("id,question\n1,Why?\n2,How?\n")
    assert [p.text for p in load_prompts(str(tmp_path / "p.csv"), field="question", data=tmp_path)] == [
        "Why?",
        "How?",
    ]
    (tmp_path / "p.jsonl").write_text('{"q": "a"}\n{"q": "b"}\n')
    prompts = load_prompts(str(tmp_path / "p.jsonl"), field="q", data=tmp_path, limit=1)
    assert len(prompts) == 1 and len(prompts[0].id) == 16
    with pytest.raises(WorkbenchError, match="no text field 'prompt'"):
        load_prompts(str(tmp_path / "p.jsonl"), data=tmp_path)
    with pytest.raises(WorkbenchError, match="does not exist"):
        load_prompts(str(tmp_path / "missing.jsonl"), data=tmp_path)


@needs_data
def test_public_sets_by_name() -> None:
    nq = load_prompts("nq-open", data=DATA)
    assert len(nq) > 3000 and nq[0].source == "nq-open"
    assert len(load_prompts("gsm8k", data=DATA, limit=5, shuffle_seed=0)) == 5
    instructions = load_prompts("self-instruct", data=DATA)
    assert len(instructions) > 400
    assert any("\n\n" in p.text for p in instructions)  # instance inputs are appended


@needs_data
def test_evaluation_queries_are_refused(tmp_path) -> None:
    with pytest.raises(WorkbenchError, match="evaluation queries"):
        load_prompts(str(DATA / "advbench-ir" / "advbench-ir.jsonl"), field="instruction", data=DATA)
    with pytest.raises(WorkbenchError, match="evaluation queries"):
        load_prompts(str(DATA / "theoremqa" / "theoremqa_test.json"), field="Question", data=DATA)
    # the same queries under another name are caught by content
    lines = (DATA / "advbench-ir" / "advbench-ir.jsonl").read_text().splitlines()[:2]
    disguised = tmp_path / "my_prompts.jsonl"
    disguised.write_text("\n".join(lines) + "\n")
    with pytest.raises(WorkbenchError, match=r"2 prompts .* evaluation queries"):
        load_prompts(str(disguised), field="instruction", data=DATA)
    assert len(load_prompts(str(disguised), field="instruction", data=DATA, force=True)) == 2


def test_resume_after_a_cut_line(tiny_dirs, tmp_path) -> None:
    backbone = load_backbone(str(tiny_dirs["qwen2"]))
    (tmp_path / "p.txt").write_text("\n".join(f"prompt number {i}" for i in range(6)))
    prompts = load_prompts(str(tmp_path / "p.txt"), data=tmp_path)
    whole, cut = tmp_path / "whole.jsonl", tmp_path / "cut.jsonl"
    respond(backbone, prompts, whole, batch_size=2, max_new_tokens=6, show_progress=False)
    lines = whole.read_text().splitlines(keepends=True)
    cut.write_text("".join(lines[:3]) + lines[3][:20])  # killed while writing row 4
    stats = respond(backbone, prompts, cut, batch_size=2, max_new_tokens=6, show_progress=False)
    assert (stats.done_before, stats.answered) == (3, 3)
    assert sorted(rows(cut), key=lambda r: r["id"]) == sorted(rows(whole), key=lambda r: r["id"])
    with pytest.raises(WorkbenchError, match="other settings"):
        respond(backbone, prompts, cut, max_new_tokens=7, show_progress=False)


def test_killed_command_resumes_without_loss_or_duplicates(tiny_dirs, tmp_path) -> None:
    (tmp_path / "p.txt").write_text("\n".join(f"prompt {i} about something" for i in range(60)))

    def command(out: Path) -> list[str]:
        return [
            str(BIN / "workbench"),
            "respond",
            "--model",
            str(tiny_dirs["llama"]),
            "--prompts",
            str(tmp_path / "p.txt"),
            "--data-dir",
            str(tmp_path),
            "--out",
            str(out),
            "--batch-size",
            "1",
            "--max-new-tokens",
            "8",
            "--quiet",
        ]

    out = tmp_path / "r.jsonl"
    proc = subprocess.Popen(command(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while (not out.exists() or out.read_text().count("\n") < 5) and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "finished before the kill"
    done = subprocess.run(command(out), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ids = [r["id"] for r in rows(out)]
    assert len(ids) == 60 and len(set(ids)) == 60
    reference = tmp_path / "ref.jsonl"
    subprocess.run(command(reference), check=True, capture_output=True, timeout=300)
    assert {r["id"]: r["response"] for r in rows(out)} == {r["id"]: r["response"] for r in rows(reference)}


def test_cli_errors(capsys, tmp_path) -> None:
    assert main(["respond", "--prompts", str(tmp_path / "none.txt"), "--out", str(tmp_path / "o.jsonl")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


def test_same_file_by_another_path_is_not_answered_twice(tiny_dirs, tmp_path, monkeypatch) -> None:
    backbone = load_backbone(str(tiny_dirs["qwen2"]))
    (tmp_path / "p.txt").write_text("alpha\nbeta\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r.jsonl"
    for spelling in ("p.txt", "./p.txt", str(tmp_path / "p.txt")):
        prompts = load_prompts(spelling, data=tmp_path)
        respond(backbone, prompts, out, max_new_tokens=4, show_progress=False)
    assert sorted(r["prompt"] for r in rows(out)) == ["alpha", "beta"]


def test_bad_inputs_are_one_line_errors(tiny_dirs, tmp_path) -> None:
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(WorkbenchError, match="is not JSON"):
        load_prompts(str(tmp_path / "bad.json"), data=tmp_path)
    (tmp_path / "null.jsonl").write_text('{"prompt": "x", "instances": null}\n')
    assert [p.text for p in load_prompts(str(tmp_path / "null.jsonl"), data=tmp_path)] == ["x"]
    (tmp_path / "TheoremQA").mkdir()
    (tmp_path / "TheoremQA" / "q.txt").write_text("q\n")
    with pytest.raises(WorkbenchError, match="--force"):
        load_prompts(str(tmp_path / "TheoremQA" / "q.txt"), data=tmp_path)
    with pytest.raises(WorkbenchError, match=r"datasets|could not load the dataset"):  # offline
        load_prompts("hf:nq_open:validation", data=tmp_path)
    backbone = load_backbone(str(tiny_dirs["qwen2"]))
    prompts = load_prompts(str(null := tmp_path / "null.jsonl"), data=tmp_path)
    with pytest.raises(WorkbenchError, match="temperature > 0"):
        respond(backbone, prompts, tmp_path / "s.jsonl", do_sample=True, temperature=0.0, show_progress=False)
    with pytest.raises(WorkbenchError, match="not a `workbench respond` cache"):
        respond(backbone, prompts, null, show_progress=False)


@needs_data
def test_cli_refuses_evaluation_file(capsys, tmp_path) -> None:
    source = str(DATA / "advbench-ir" / "advbench-ir.jsonl")
    argv = ["respond", "--prompts", source, "--field", "instruction", "--out", str(tmp_path / "o.jsonl")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--force" in err[0]


@needs_data
@pytest.mark.integration
def test_smollm2_answers_nq_open(tmp_path) -> None:
    backbone = load_backbone("smollm2-135m")
    prompts = load_prompts("nq-open", data=DATA, limit=2)
    stats = respond(
        backbone, prompts, tmp_path / "r.jsonl", batch_size=2, max_new_tokens=12, show_progress=False
    )
    out = rows(tmp_path / "r.jsonl")
    assert stats.answered == 2 and sorted(r["prompt"] for r in out) == sorted(p.text for p in prompts)
    assert all(r["response"].strip() and r["model"] == "smollm2-135m" and r["sha256"] for r in out)


def test_batches_hold_prompts_of_similar_length_longest_first(tiny_dirs, tmp_path) -> None:
    """A long prompt is not padded into a batch of short ones: batches follow token length."""
    from workbench.core.generation import chat_ids

    backbone = load_backbone(str(tiny_dirs["qwen2"]))
    texts = ["short", "a much longer prompt " * 8, "mid length prompt here", "x y", "another long one " * 6]
    (tmp_path / "p.txt").write_text("\n".join(texts))
    out = tmp_path / "r.jsonl"
    respond(backbone, load_prompts(str(tmp_path / "p.txt"), data=tmp_path), out, batch_size=2,
            max_new_tokens=2, show_progress=False)  # fmt: skip
    written = [r["prompt"] for r in rows(out)]
    lengths = [len(ids) for ids in chat_ids(backbone.tokenizer, written)]
    assert sorted(written) == sorted(texts) and lengths == sorted(lengths, reverse=True)


def test_exclude_leaves_out_a_held_out_set(tiny_dirs, tmp_path, capsys) -> None:
    (tmp_path / "p.txt").write_text("alpha\nBeta  question\ngamma\n")
    held = tmp_path / "heldout.jsonl"
    backbone = load_backbone(str(tiny_dirs["qwen2"]))
    respond(
        backbone,
        load_prompts(str(tmp_path / "p.txt"), data=tmp_path, limit=2),
        held,
        max_new_tokens=2,
        show_progress=False,
    )  # held-out: "alpha", "Beta  question"
    (tmp_path / "q.txt").write_text("ALPHA\nbeta question\ngamma\ndelta\n")
    out = tmp_path / "train.jsonl"
    argv = [
        "respond",
        "--model",
        str(tiny_dirs["qwen2"]),
        "--prompts",
        str(tmp_path / "q.txt"),
        "--out",
        str(out),
        "--max-new-tokens",
        "2",
        "--exclude",
        str(held),
    ]
    assert main(argv) == 0
    assert sorted(r["prompt"] for r in rows(out)) == ["delta", "gamma"]  # case and spacing hide no repeat
    assert "left out 2 prompts" in capsys.readouterr().err
    assert main([*argv[:-1], str(tmp_path / "missing.jsonl")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--exclude file" in err[0] and "does not exist" in err[0]


def test_respond_to_source_loads_leaves_out_and_answers(tiny_dirs, tmp_path) -> None:
    from workbench.train.responding import respond_to_source

    (tmp_path / "held.jsonl").write_text(json.dumps({"prompt": "Alpha", "response": "x"}) + "\n")
    (tmp_path / "p.txt").write_text("alpha\nbeta\ngamma\n")
    notes: list[str] = []
    stats = respond_to_source(
        str(tmp_path / "p.txt"),
        tmp_path / "out.jsonl",
        model=str(tiny_dirs["qwen2"]),
        data_dir=tmp_path,
        exclude=[tmp_path / "held.jsonl"],
        note=notes.append,
        max_new_tokens=2,
        show_progress=False,
    )
    assert (stats.answered, stats.total) == (2, 2)
    assert sorted(r["prompt"] for r in rows(tmp_path / "out.jsonl")) == ["beta", "gamma"]
    assert notes == [f"left out 1 prompts found in {tmp_path / 'held.jsonl'}"]


def test_part_files_of_a_killed_launch_are_merged_once(tiny_dirs, tmp_path) -> None:
    """What a multi-process launch left in `OUT.part-K` (a cut line too) counts as done and is moved
    into OUT by the next run, each id once, whatever the number of processes then."""
    backbone = load_backbone(str(tiny_dirs["qwen2"]))
    (tmp_path / "p.txt").write_text("\n".join(f"prompt number {i}" for i in range(8)))
    prompts = load_prompts(str(tmp_path / "p.txt"), data=tmp_path)
    whole, out = tmp_path / "whole.jsonl", tmp_path / "out.jsonl"
    respond(backbone, prompts, whole, batch_size=1, max_new_tokens=5, show_progress=False)
    lines = whole.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2]))
    (tmp_path / "out.jsonl.part-0").write_text("".join(lines[1:4]))  # row 1 is in OUT already
    (tmp_path / "out.jsonl.part-1").write_text("".join(lines[4:6]) + lines[6][:15])  # killed mid-row
    stats = respond(backbone, prompts, out, batch_size=1, max_new_tokens=5, show_progress=False)
    assert (stats.done_before, stats.answered) == (6, 2)
    assert not list(tmp_path.glob("out.jsonl.part-*"))
    got = rows(out)
    assert len(got) == 8 and len({r["id"] for r in got}) == 8
    assert sorted(got, key=lambda r: r["id"]) == sorted(rows(whole), key=lambda r: r["id"])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_answer_as_one(tiny_dirs, tmp_path) -> None:
    """`accelerate launch --num_processes 2 -m workbench respond` splits the prompts between the
    processes and merges their rows: the same rows as one process, none twice, no part file left."""
    import os
    import shutil

    if shutil.which("accelerate", path=str(BIN)) is None:
        pytest.skip("accelerate's launcher is not installed")
    (tmp_path / "p.txt").write_text("\n".join(f"question {i}: why is the sky blue?" for i in range(12)))
    args = ["respond", "--model", str(tiny_dirs["llama"]), "--prompts", str(tmp_path / "p.txt"),
            "--data-dir", str(tmp_path), "--batch-size", "1", "--max-new-tokens", "6", "--quiet"]  # fmt: skip
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert main([*args, "--out", str(one)]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["CUDA_VISIBLE_DEVICES"] = ""  # two CPU processes over gloo, also on a machine with a GPU

    def launch() -> subprocess.CompletedProcess:
        two.unlink(missing_ok=True)
        command = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(_free_port()), "-m", "workbench", *args,
                   "--out", str(two)]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)

    proc = launch()
    if proc.returncode != 0 and any(m in proc.stderr.lower() for m in ("gloo", "sigabrt")):
        proc = launch()  # one retry: gloo on loopback can fail to connect or abort on a busy machine
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("12 answered now, 0 already there, 12 prompts") == 1, proc.stdout
    assert not list(tmp_path.glob("two.jsonl.part-*"))
    a, b = rows(one), rows(two)
    assert len(b) == 12 and len({r["id"] for r in b}) == 12
    assert {r["id"]: r["response"] for r in a} == {r["id"]: r["response"] for r in b}
    # a second run finds nothing to do
    assert main([*args, "--out", str(two)]) == 0
    assert len(rows(two)) == 12
