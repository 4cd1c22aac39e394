"""``workbench eval safety|reasoning|mteb`` in-process on a tiny model, bad data, the mteb adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.core.errors import WorkbenchError
from workbench.eval.reasoning import bright_task, gsm8k_task, run_reasoning, theoremqa_task
from workbench.eval.results import BarChart, EvalReport, Table
from workbench.report.eval_report import write_eval_report

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "advbench-ir").is_dir(), reason="../shared/data is not here")


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["eval", *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _report(out: Path, kind: str) -> dict:
    (path,) = sorted(out.glob(f"{kind}-*Z.json"))[-1:]
    assert path.with_suffix(".html").is_file()
    return json.loads(path.read_text())


@pytest.fixture
def common(tiny_dirs: dict[str, Path], tmp_path: Path) -> list[str]:
    return [
        "--model", str(tiny_dirs["llama"]), "--untrained", "--data-dir", str(DATA),
        "--cache-dir", str(tmp_path / "cache"), "--batch-size", "8",
    ]  # fmt: skip


@needs_data
def test_safety_report_and_cache(
    capsys: pytest.CaptureFixture[str], common: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = [
        "safety",
        *common,
        "--out",
        str(out),
        "--limit",
        "2",
        "--max-distractors",
        "4",
        "--answer-tokens",
        "3",
    ]
    args += ["--encoders", "gen,llm-mean,llm-last", "--log-samples"]
    rc, stdout, err = _run(capsys, *args)
    assert rc == 0, err
    assert "| encoder | top_1_acc |" in stdout and "| gen |" in stdout and "refused" in stdout
    report = _report(out, "safety")
    assert set(report["metrics"]) == {"gen", "llm-mean", "llm-last"}
    assert {"top_1_acc", "top_100_any_harm"} <= set(report["metrics"]["gen"])
    cfg = report["config"]
    for key in ("backbone_sha256", "checkpoint_sha256", "dtype", "batch_size", "max_length", "versions"):
        assert key in cfg
    assert cfg["batch_size"] == 8 and cfg["versions"]["torch"]
    assert report["instructions"]["gen_query"] == "Generate a relevant document that answers this query:"
    assert report["data"]["queries"] == 2 and report["data"]["benign_passages"] == 4
    assert report["refusals"]["refused"] + report["refusals"]["answered"] == 2
    assert set(report["by_refusal"]["gen"]) == {"refused", "answered"}
    assert len(report["samples"]["gen"]["q0"]) == report["data"]["harmful_passages"] + 4
    assert report["wall_time_s"] > 0 and report["embedding_cache"]["misses"] > 0
    assert "<table>" in (out / Path(sorted(out.glob("safety-*Z.html"))[-1]).name).read_text()

    rc, _, err = _run(capsys, *args)  # second run: everything from the cache
    assert rc == 0, err
    again = sorted(out.glob("safety-*Z.json"))[-1]
    cache = json.loads(again.read_text())["embedding_cache"]
    assert cache["misses"] == 0 and cache["hits"] > 0


@needs_data
def test_reasoning_report(
    capsys: pytest.CaptureFixture[str], common: list[str], tiny_dirs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    rc, stdout, err = _run(
        capsys, "reasoning", *common, "--out", str(out), "--limit", "3", "--encoders", "gen,teacher",
        "--tasks", "gsm8k",
    )  # fmt: skip
    assert rc == 0, err
    assert "| task | encoder | ndcg@10 |" in stdout
    report = _report(out, "reasoning")
    assert set(report["metrics"]) == {"gsm8k"} and report["data"]["gsm8k"]["queries"] == 3
    value = report["metrics"]["gsm8k"]["teacher"]["ndcg@10"]
    lo, hi = report["intervals"]["gsm8k"]["teacher"]["ndcg@10"]
    assert lo <= value <= hi  # the bootstrap interval of the mean holds the mean
    diff = report["comparisons"]["gsm8k"]["teacher"]["ndcg@10"]
    assert diff["diff"] == pytest.approx(report["metrics"]["gsm8k"]["gen"]["ndcg@10"] - value)
    assert report["overlap"]["gsm8k"]["checked"] and report["overlap"]["gsm8k"]["overlap"] == 0
    assert report["instructions"]["gsm8k"]["gen_document"] == "Summarize the following passage:"

    import workbench  # the library call behind the command: same numbers, nothing written

    gen = workbench.load(str(tiny_dirs["llama"]), untrained=True)
    lib = run_reasoning(
        gen, encoders=["gen", "teacher"], tasks=["gsm8k"], limit=3, data_dir=DATA, batch_size=8,
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    assert isinstance(lib, EvalReport) and lib.kind == "reasoning"
    assert lib.metrics == report["metrics"] and lib.payload["config"]["model"] == str(tiny_dirs["llama"])
    assert lib.payload["embedding_cache"]["misses"] == 0  # the command's vectors, from the cache
    (title, table), (paired_title, paired) = lib.tables.items()
    assert title in report["markdown"] and table.columns[:3] == ["task", "encoder", "ndcg@10"]
    assert paired_title in report["markdown"] and {r["metric"] for r in paired.rows} == {
        "ndcg@10",
        "recall@10",
        "mrr@10",
    }
    assert lib.charts["ndcg10"].series["teacher"]["gsm8k"] == report["metrics"]["gsm8k"]["teacher"]["ndcg@10"]
    assert len(list(out.glob("reasoning-*Z.json"))) == 1


def test_write_eval_report_from_data(tmp_path: Path) -> None:
    rows = [{"encoder": "a", "x": 0.5}, {"encoder": "b", "x": float("nan")}]
    report = EvalReport(
        "demo",
        {"kind": "demo", "config": {"model": "m"}, "metrics": {"a": {"x": 0.5}}, "wall_time_s": 1.0},
        {"Numbers": Table(rows, ["encoder", "x"])},
        {"x": BarChart("X per encoder", {"a": {"k=1": 0.5}, "b": {"k=1": 0.25}}, "k", "x")},
    )
    written = write_eval_report(report, tmp_path)
    assert written["markdown"] == "### Numbers\n\n| encoder | x |\n|---|---|\n| a | 0.5000 |\n| b | nan |"
    data = json.loads(written["json"].read_text())
    assert data["markdown"] == written["markdown"] and data["metrics"] == {"a": {"x": 0.5}}
    assert written["json"].name == f"demo-{data['timestamp']}.json"
    chart = written["json"].parent / f"demo-{data['timestamp']}-x.html"
    assert chart.is_file() and "X per encoder" in chart.read_text()
    assert "<table>" in written["html"].read_text()


@needs_data
def test_theoremqa_task_matches_theorems() -> None:
    task = theoremqa_task(DATA, limit=5)
    assert len(task.corpus) == 354 and len(task.queries) == 5
    assert task.notes["unmatched_theorems"] == 0 and task.notes["questions"] == 800
    assert all(len(rel) == 1 and next(iter(rel)) in task.corpus for rel in task.qrels.values())
    full = gsm8k_task(DATA, limit=4)
    assert full.qrels["g0"] == {"s0": 1} and "<<" not in full.corpus["s0"]


@needs_data
def test_bad_data_is_one_line(capsys: pytest.CaptureFixture[str], common: list[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    cases = [
        (["safety", *common, "--data-dir", str(tmp_path)], "does not exist"),
        (["safety", *common, "--limit", "1", "--distractors", str(empty)], "holds no passages"),
        (["safety", *common, "--encoders", "gen,bm25"], "unknown encoder"),
        (["reasoning", *common, "--tasks", "nope"], "unknown task"),
        (["reasoning", *common, "--data-dir", str(tmp_path)], "does not exist"),
    ]
    for args, message in cases:
        rc, _, err = _run(capsys, *args, "--out", str(tmp_path / "o"))
        assert rc == 1, (args, err)
        assert err.startswith("error: ") and message in err and "Fix:" in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bright_local_copy_and_offline_error(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "documents").mkdir()
    ex = {"id": "1", "query": "why?", "gold_ids": ["d1"], "excluded_ids": ["d2"]}
    (tmp_path / "examples" / "biology.jsonl").write_text(json.dumps(ex) + "\n")
    docs = [{"id": f"d{i}", "content": f"text {i}"} for i in range(3)]
    (tmp_path / "documents" / "biology.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    task = bright_task("biology", tmp_path)
    assert task.qrels == {"1": {"d1": 1}} and task.excluded == {"1": {"d2"}}
    assert task.instruction == "Given a biology post, generate relevant passages that help answer the post:"
    with pytest.raises(WorkbenchError, match="unknown BRIGHT task"):
        bright_task("chemistry", tmp_path)


@needs_data
def test_mteb_adapter_matches_own_retrieval(
    capsys: pytest.CaptureFixture[str], common: list[str], tmp_path: Path
) -> None:
    pytest.importorskip("mteb")
    out = tmp_path / "out"
    base = [*common, "--out", str(out), "--limit", "6", "--encoders", "gen,llm-last"]
    rc, _, err = _run(capsys, "reasoning", *base, "--tasks", "gsm8k")
    assert rc == 0, err
    rc, stdout, err = _run(capsys, "mteb", *base, "--offline", "gsm8k")
    assert rc == 0, err
    assert "WorkbenchGSM8K" in stdout
    ours = _report(out, "reasoning")["metrics"]["gsm8k"]
    theirs = _report(out, "mteb")
    for name in ("gen", "llm-last"):
        assert theirs["metrics"][name]["WorkbenchGSM8K"] == pytest.approx(ours[name]["ndcg@10"], abs=1e-5)
    used = theirs["instructions"]["gen"]["WorkbenchGSM8K"]
    assert used["document"] == "Summarize the following passage:" and used["query"].startswith("Given a math")
    assert theirs["instructions"]["llm-last"]["WorkbenchGSM8K"]["query"] is None
    layout = list((out / "mteb" / "results").glob("*/*/WorkbenchGSM8K.json"))
    assert len(layout) == 2  # mteb's own folder layout: results/<model>/<revision>/<task>.json


def test_lite_set_and_instruction_table() -> None:
    from workbench.eval.mteb_tasks import LITE_TASKS, instruction_table, query_instruction

    assert {"BIOSSES", "STS17", "ArguAna", "Banking77Classification"} <= set(LITE_TASKS)
    assert len(LITE_TASKS) == 10
    assert instruction_table()["document"] == "Summarize the following passage:"
    assert query_instruction("BIOSSES").startswith("Generate a biomedical sentence")
    assert query_instruction("SomeNewRetrieval", "Retrieval") == (
        "Generate a passage that best answers this question:"
    )


@pytest.mark.integration
@needs_data
def test_reasoning_on_smollm2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = _run(
        capsys, "reasoning", "--tasks", "gsm8k", "--limit", "12", "--encoders", "gen,llm-mean",
        "--data-dir", str(DATA), "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    assert rc == 0, err
    report = _report(tmp_path, "reasoning")
    assert report["config"]["backbone_sha256"] and report["config"]["checkpoint_sha256"]
    assert report["config"]["trained"] is True
    # 12 questions, 12 solutions: a random ranking scores about 0.36; the shipped checkpoint finds
    # each question's own worked solution (0.93 on 200 held-out questions)
    assert report["metrics"]["gsm8k"]["gen"]["ndcg@10"] > 0.6
    overlap = report["overlap"]["gsm8k"]
    assert overlap["checked"] and overlap["overlap"] == 0  # its own GSM8K training questions left out
    assert report["data"]["gsm8k"]["left_out_training_prompts"] > 0
