"""Step checkpoints carry a manifest; --resume skips damaged ones for the newest intact one, exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import QUESTIONS
from safetensors.torch import load_file

from workbench.core.errors import WorkbenchError
from workbench.train.config import TrainConfig
from workbench.train.run_dir import MANIFEST_FILE, OPTIMIZER_FILE, STATE_FILE, verify_step
from workbench.train.trainer import LOG_FILE, step_dirs, train

WEIGHTS = "llm2vec_gen_weights.safetensors"


@pytest.fixture
def responses(tmp_path) -> Path:
    path = tmp_path / "responses.jsonl"
    with open(path, "w") as fh:
        for q in QUESTIONS:
            fh.write(json.dumps({"prompt": q, "response": f"Here is an answer to: {q.lower()}"}) + "\n")
    return path


def options(tiny_dirs, responses, out, **extra) -> TrainConfig:
    base = dict(
        model=str(tiny_dirs["llama"]),
        teacher="self",
        responses=str(responses),
        out=str(out),
        num_thought=2,
        num_compress=3,
        max_steps=5,
        batch_size=4,
        save_every=1,
        keep_checkpoints=4,
        warmup_steps=2,
        max_query_length=32,
        max_response_length=16,
        lr=1e-2,
    )
    return TrainConfig(**(base | extra))


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_resume_skips_damaged_steps_and_matches_an_uninterrupted_run(
    tiny_dirs, responses, tmp_path, capsys
) -> None:
    whole = train(options(tiny_dirs, responses, tmp_path / "whole"), show_progress=False)
    run = tmp_path / "run"
    train(options(tiny_dirs, responses, run, max_steps=4), show_progress=False)  # "interrupted" at 4
    assert [p.name for p in step_dirs(run)] == [f"step-{s:06d}" for s in (1, 2, 3, 4)]
    assert all(verify_step(p) is None for p in step_dirs(run))
    steps = run / "checkpoints"
    flip_byte(steps / "step-000004" / WEIGHTS)  # a flipped byte
    with open(steps / "step-000003" / OPTIMIZER_FILE, "r+b") as fh:  # a truncated file
        fh.truncate(100)
    (steps / "step-000002" / MANIFEST_FILE).unlink()  # no manifest
    capsys.readouterr()

    train(options(tiny_dirs, responses, run), resume=True, show_progress=False)

    err = capsys.readouterr().err
    assert "skipped step checkpoint step-000004" in err and "sha256" in err
    assert "skipped step checkpoint step-000003" in err and "optimizer.safetensors has 100 bytes" in err
    assert "skipped step checkpoint step-000002" in err and "manifest.json is missing" in err
    assert "resuming from step-000001" in err
    a, b = load_file(str(whole / WEIGHTS)), load_file(str(run / WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    logged = [json.loads(line)["step"] for line in (run / LOG_FILE).read_text().splitlines()]
    assert logged == list(range(1, 6))
    # the damaged newer folders were replaced as training passed them; the newest four are intact
    assert [p.name for p in step_dirs(run)] == [f"step-{s:06d}" for s in (2, 3, 4, 5)]
    assert all(verify_step(p) is None for p in step_dirs(run))


def test_verify_step_names_what_is_wrong(tiny_dirs, responses, tmp_path) -> None:
    run = train(options(tiny_dirs, responses, tmp_path / "run", max_steps=1), show_progress=False)
    good = step_dirs(run)[-1]
    assert verify_step(good) is None
    cases = {
        "state-json": lambda d: (d / STATE_FILE).write_text("{not json"),
        "missing-file": lambda d: (d / WEIGHTS).unlink(),
        "bad-manifest": lambda d: (d / MANIFEST_FILE).write_text("[]"),
        "short-manifest": lambda d: (d / MANIFEST_FILE).write_text(json.dumps({"files": {}})),
    }
    said = {}
    for name, damage in cases.items():
        folder = tmp_path / name
        shutil.copytree(good, folder)
        damage(folder)
        said[name] = verify_step(folder)
    assert "trainer_state.json has" in said["state-json"]
    assert said["missing-file"] == f"{WEIGHTS} is missing"
    assert "unreadable" in said["bad-manifest"]
    assert "does not list" in said["short-manifest"]


def test_resume_with_no_intact_step_is_a_one_line_error(tiny_dirs, responses, tmp_path) -> None:
    run = train(options(tiny_dirs, responses, tmp_path / "run", max_steps=1), show_progress=False)
    flip_byte(step_dirs(run)[-1] / OPTIMIZER_FILE)
    with pytest.raises(WorkbenchError, match=r"no intact step checkpoint .*\(step-000001 damaged\)"):
        train(options(tiny_dirs, responses, run, max_steps=2), resume=True, show_progress=False)
    assert step_dirs(run)  # nothing of the run was removed


def test_runs_without_manifests_still_resume(tiny_dirs, responses, tmp_path, capsys) -> None:
    """Step folders written before manifests: read without the check, a broken one still skipped."""
    run = tmp_path / "run"
    train(options(tiny_dirs, responses, run, max_steps=2), show_progress=False)
    for folder in step_dirs(run):
        (folder / MANIFEST_FILE).unlink()
    (step_dirs(run)[-1] / STATE_FILE).write_text("{")  # a JSONDecodeError traceback before
    capsys.readouterr()
    train(options(tiny_dirs, responses, run, max_steps=3), resume=True, show_progress=False)
    err = capsys.readouterr().err
    assert "skipped step checkpoint step-000002: it does not read (JSONDecodeError" in err
    assert "resuming from step-000001" in err
    logged = [json.loads(line)["step"] for line in (run / LOG_FILE).read_text().splitlines()]
    assert logged == [1, 2, 3]
