"""``--limit``: zero or negative is refused at once; more than the data holds is all of it, and said."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest

from workbench.cli import main
from workbench.core.errors import WorkbenchError
from workbench.train.config import TrainConfig

HUGE = "99999999999999999999"

LIMITED = {  # every command with a --limit option, with what else it needs to parse
    "eval safety": ["eval", "safety"],
    "eval reasoning": ["eval", "reasoning"],
    "eval mteb": ["eval", "mteb"],
    "map": ["map"],
    "respond": ["respond", "--prompts", "nq-open", "--out", "{tmp}/r.jsonl"],
    "train": ["train", "--responses", "{tmp}/r.jsonl", "--out", "{tmp}/run"],
    "quality": ["quality", "{tmp}/ck", "--heldout", "{tmp}/h", "--train-responses", "{tmp}/t"],
    "latent-lens build": ["latent-lens", "build", "--responses", "{tmp}/r.jsonl"],
}


def run(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("value", ["0", "-3"])
@pytest.mark.parametrize("name", sorted(LIMITED))
def test_zero_or_negative_limit_is_a_usage_error(name, value, tmp_path) -> None:
    argv = [a.format(tmp=tmp_path) for a in LIMITED[name]]
    code, _, err = run(*argv, "--limit", value)
    assert code == 2 and "Traceback" not in err and "--limit" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_train_config_refuses_a_limit_below_one() -> None:
    with pytest.raises(WorkbenchError, match="limit must be at least 1, got 0"):
        TrainConfig(limit=0).validate()


def test_huge_limit_on_safety_is_clamped_and_said(tiny_dirs, tmp_path) -> None:
    data = tmp_path / "data" / "advbench-ir"
    data.mkdir(parents=True)
    rows = [
        {"id_": i, "instruction": f"Do bad thing {i}", "title": f"T{i}", "response": ["x y z"]}
        for i in range(3)
    ]
    (data / "advbench-ir.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    benign = tmp_path / "benign.txt"
    benign.write_text("Bread is baked.\nParis is in France.\n")
    code, _, err = run(
        "eval", "safety", "--model", tiny_dirs["llama"], "--untrained", "--data-dir", tmp_path / "data",
        "--distractors", benign, "--no-refusals", "--encoders", "gen", "--limit", HUGE,
        "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache",
    )  # fmt: skip
    assert code == 0, err
    assert f"note: --limit {HUGE} is more than the 3 AdvBench-IR queries there are: all 3 were used" in err
    (report,) = (tmp_path / "out").glob("safety-*.json")
    assert json.loads(report.read_text())["data"]["queries"] == 3


def test_huge_limit_on_respond_and_latent_lens_is_said(tiny_dirs, tmp_path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Why is the sky blue?\nName a prime.\n")
    out = tmp_path / "r.jsonl"
    model = ["--model", tiny_dirs["llama"]]
    code, _, err = run("respond", "--prompts", prompts, "--out", out, *model, "--limit", HUGE,
                       "--max-new-tokens", "3", "--quiet")  # fmt: skip
    assert code == 0, err
    assert f"--limit {HUGE} is more than the 2 prompts there are: all 2 were used" in err
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(json.dumps({"prompt": f"Q{i}?", "response": f"Answer {i}."}) + "\n" for i in range(2))
    )
    code, _, err = run("latent-lens", "build", "--responses", pairs, *model, "--limit", HUGE,
                       "--out", tmp_path / "index", "--quiet")  # fmt: skip
    assert code == 0, err
    assert "is more than the 2 responses there are" in err
    code, _, err = run("respond", "--prompts", prompts, "--out", out, *model, "--limit", "2",
                       "--max-new-tokens", "3", "--quiet")  # fmt: skip
    assert code == 0 and "note: --limit" not in err  # a limit the data meets: nothing to say
    train = ["train", "--responses", pairs, *model, "--teacher", "self", "--limit", HUGE]
    code, _, err = run(*train, "--out", tmp_path / "run", "--max-steps", "1", "--batch-size", "2", "--quiet")
    assert code == 0, err
    assert f"--limit {HUGE} is more than the 2 pairs there are: all 2 were used" in err
