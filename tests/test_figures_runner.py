"""``workbench figures`` on a temporary registry of small real scripts, the real registry, table1.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from workbench.cli import main
from workbench.report.figures_runner import load_registry

ROOT = Path(__file__).resolve().parents[1]

# Appends its arguments to logs/<name>.log (one line per run) and writes out/<name>.txt.
MAKE = """
import argparse, pathlib
p = argparse.ArgumentParser()
p.add_argument("name")
p.add_argument("value")
p.add_argument("--data-dir", default=None)
a = p.parse_args()
pathlib.Path("logs").mkdir(exist_ok=True)
with open(f"logs/{a.name}.log", "a") as f:
    f.write(f"{a.value} {a.data_dir}\\n")
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path(f"out/{a.name}.txt").write_text(a.value)
print(f"made {a.name}")
"""
FAIL = 'import sys\nprint("working")\nsys.exit("boom: no such data")\n'


def _entries() -> list[dict]:
    return [
        {"name": "a", "script": "scripts/make.py", "args": ["a", "1"], "inputs": ["inputs/a.txt"],
         "outputs": ["out/a.txt"]},
        {"name": "b", "script": "scripts/make.py", "args": ["b", "1"], "inputs": ["$DATA/b.jsonl"],
         "outputs": ["out/b.txt"]},
        {"name": "heavy", "script": "scripts/make.py", "args": ["heavy", "1"], "expensive": True,
         "outputs": ["out/heavy.txt"]},
        {"name": "gone", "script": "scripts/missing.py", "outputs": ["out/gone.txt"]},
    ]  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for rel, text in {
        "scripts/make.py": MAKE,
        "scripts/fail.py": FAIL,
        "inputs/a.txt": "a0",
        "lib/mod.py": "X = 1\n",
        "data/b.jsonl": '{"x": 1}\n',
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    write_registry(root, _entries())
    return root


def write_registry(root: Path, entries: list[dict]) -> None:
    reg = {"common_inputs": ["lib/*.py"], "figures": entries}
    (root / "figures.yaml").write_text(yaml.safe_dump(reg))


def figures(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str, str]:
    rc = main(["figures", "--registry", str(root / "figures.yaml"), "--root", str(root), *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def runs(root: Path) -> dict[str, int]:
    logs = root / "logs"
    return {p.stem: len(p.read_text().splitlines()) for p in logs.glob("*.log")} if logs.is_dir() else {}


def stamps(root: Path) -> dict:
    return json.loads((root / "figures" / ".stamps.json").read_text())


def test_first_run_then_skip(capsys, repo: Path) -> None:
    rc, out, _ = figures(capsys, repo)
    assert rc == 0
    assert runs(repo) == {"a": 1, "b": 1}  # heavy is expensive, gone has no script
    assert "made a" in out and "skip heavy: expensive" in out and "not available" in out
    assert set(stamps(repo)) == {"a", "b"}
    rc, out, _ = figures(capsys, repo)
    assert rc == 0 and runs(repo) == {"a": 1, "b": 1}
    assert "up to date a" in out and "0 ran, 2 up to date" in out


def test_changes_rerun_only_their_entry(capsys, repo: Path) -> None:
    figures(capsys, repo)
    (repo / "inputs" / "a.txt").write_text("a1")
    figures(capsys, repo)
    assert runs(repo) == {"a": 2, "b": 1}
    (repo / "data" / "b.jsonl").write_text('{"x": 2}\n')  # $DATA/ input, default data folder
    assert figures(capsys, repo, "--data-dir", str(repo / "data"))[0] == 0
    assert runs(repo) == {"a": 2, "b": 2}
    entries = _entries()
    entries[1]["args"] = ["b", "2"]
    write_registry(repo, entries)
    figures(capsys, repo, "--data-dir", str(repo / "data"))
    assert runs(repo) == {"a": 2, "b": 3}
    assert (repo / "out" / "b.txt").read_text() == "2"
    (repo / "lib" / "mod.py").write_text("X = 2\n")  # a common input: every entry
    figures(capsys, repo, "--data-dir", str(repo / "data"))
    assert runs(repo) == {"a": 3, "b": 4}


def test_data_dir_is_passed_to_scripts_that_take_it(capsys, repo: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-data"
    other.mkdir()
    (other / "b.jsonl").write_text('{"x": 9}\n')
    figures(capsys, repo, "--data-dir", str(other))
    assert (repo / "logs" / "b.log").read_text().split()[-1] == str(other.resolve())
    figures(capsys, repo, "--data-dir", str(other))
    assert runs(repo)["b"] == 1  # same data content: up to date
    figures(capsys, repo, "--data-dir", str(repo / "data"))
    assert runs(repo)["b"] == 2  # other content under $DATA/b.jsonl


def test_deleted_output_and_force(capsys, repo: Path) -> None:
    figures(capsys, repo)
    (repo / "out" / "a.txt").unlink()
    figures(capsys, repo)
    assert runs(repo) == {"a": 2, "b": 1}
    figures(capsys, repo, "--force")
    assert runs(repo) == {"a": 3, "b": 2}


def test_failing_script(capsys, repo: Path) -> None:
    figures(capsys, repo)
    before = stamps(repo)
    entries = _entries()
    entries[0]["inputs"] = ["inputs/a.txt", "inputs/new.txt"]  # a goes stale too
    entries.insert(1, {"name": "bad", "script": "scripts/fail.py", "outputs": ["out/bad.txt"]})
    write_registry(repo, entries)
    rc, out, err = figures(capsys, repo)
    assert rc == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["error: figure 'bad' failed: scripts/fail.py exited with status 1: boom: no such data"]
    assert runs(repo) == {"a": 2, "b": 1}  # the entries after the failure still ran
    after = stamps(repo)
    assert "bad" not in after and after["b"] == before["b"] and after["a"]["stamp"] != before["a"]["stamp"]
    assert "1 failed" in out


def test_list_dry_run_and_only(capsys, repo: Path) -> None:
    rc, out, _ = figures(capsys, repo, "--list")
    assert rc == 0 and runs(repo) == {}
    assert "stale" in out and "not available" in out
    figures(capsys, repo)
    (repo / "inputs" / "a.txt").write_text("changed")
    (repo / "out" / "b.txt").unlink()
    _, out, _ = figures(capsys, repo, "--list")
    cells = [line.split("│") for line in out.splitlines() if "│" in line]
    states = {c[1].strip(): c[2].strip() for c in cells}
    assert states["a"] == "stale" and states["b"] == "missing outputs"
    assert states["gone"] == "not available" and states["heavy"] == "stale"
    (repo / "out" / "b.txt").write_text("1")
    _, out, _ = figures(capsys, repo, "--list")
    assert "up to date" in out
    rc, out, _ = figures(capsys, repo, "--dry-run")
    assert rc == 0 and runs(repo) == {"a": 1, "b": 1}
    assert "would run a (stale): python scripts/make.py a 1" in out
    figures(capsys, repo, "--only", "heavy")  # named: runs although expensive
    assert runs(repo) == {"a": 1, "b": 1, "heavy": 1}
    figures(capsys, repo, "--include-expensive", "--force", "--only", "b")
    assert runs(repo) == {"a": 1, "b": 2, "heavy": 1}
    rc, _, err = figures(capsys, repo, "--only", "nope")
    assert rc == 1 and "unknown figure(s) nope" in err
    rc, _, err = figures(capsys, repo, "--only", "gone")
    assert rc == 1 and "scripts/missing.py is not available" in err


def test_bad_registry(capsys, repo: Path) -> None:
    (repo / "figures.yaml").write_text("figures:\n  - name: x\n")
    rc, _, err = figures(capsys, repo)
    assert rc == 1 and "needs a name and a script" in err


def test_repository_registry() -> None:
    common, entries = load_registry(ROOT / "analyses" / "figures.yaml")
    assert common and {"figure1", "lens_table", "table1", "ablations"} <= {e.name for e in entries}
    for entry in entries:
        assert entry.outputs and all(o.startswith("figures/") for o in entry.outputs)
        if not entry.expensive:
            assert (ROOT / entry.script).is_file(), entry.script
    assert next(e for e in entries if e.name == "ablations").expensive


def _table1():
    spec = importlib.util.spec_from_file_location("table1", ROOT / "analyses" / "table1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _html_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Chrome for kaleido in tests: write the figure's HTML only."""
    import workbench.report.figures as figs

    def write(fig, stem, **_):
        path = figs.with_suffix(Path(stem), ".html")
        fig.write_html(str(path), include_plotlyjs="cdn")
        return [path]

    monkeypatch.setattr(figs, "write_figure", write)


def test_table1_from_committed_reports(capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _html_only(monkeypatch)
    table1 = _table1()
    assert table1.main(["--out", str(tmp_path / "table1")]) == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "table1.json").read_text())
    assert (tmp_path / "table1.md").read_text().strip() == data["markdown"]
    assert (tmp_path / "table1.html").is_file()
    eval_dir = ROOT / "figures" / "eval"
    for backbone in table1.BACKBONES:
        reports = [k for k in ("safety", "reasoning") if (eval_dir / f"{k}-{backbone}.json").is_file()]
        rows = [r for r in data["rows"] if r["backbone"] == backbone]
        if not reports:
            assert not rows
            continue
        assert {r["encoder"] for r in rows} == set(table1.ENCODERS)
        for kind in reports:
            assert all(f"{kind}_limit" in r and f"{kind}_trained" in r for r in rows)
        for kind in {"safety", "reasoning"} - set(reports):
            assert f"missing {kind} report for {backbone}" in out and "--run" in out
        assert table1.BACKBONES[backbone] in data["markdown"]
    assert "43.2%" in out


def test_table1_relative_and_publish(tmp_path: Path) -> None:
    table1 = _table1()
    values = {"gen": {"x": 0.2}, "teacher": {"x": 0.5}, "llm-mean": {"x": 0.4}}
    assert table1.relative(values, "x", lower_is_better=True) == pytest.approx(0.5)
    assert table1.relative(values, "x", lower_is_better=False) == pytest.approx(0.2 / 0.5 - 1)
    scratch, eval_dir = tmp_path / "scratch", tmp_path / "eval"
    scratch.mkdir()
    eval_dir.mkdir()
    stem = "safety-20260101T000000Z"
    report = {"kind": "safety", "config": {"checkpoint": None, "limit": 3}, "answers": {}, "metrics": {}}
    (scratch / f"{stem}.json").write_text(json.dumps(report))
    (scratch / f"{stem}.html").write_text(f'<a href="{stem}-acc.html"><code>{stem}.json</code>')
    (scratch / f"{stem}-acc.png").write_bytes(b"png")
    path = table1.publish(scratch, "safety", "tiny", eval_dir, 3)
    assert path == eval_dir / "safety-tiny.json"
    filed = json.loads(path.read_text())
    assert "answers" not in filed and "first 3 queries" in filed["note"]
    assert (eval_dir / "safety-tiny-acc.png").read_bytes() == b"png"
    assert "safety-tiny-acc.html" in (eval_dir / "safety-tiny.html").read_text()


def test_table1_relative_cell_marks_an_undefined_relative_interval() -> None:
    """A baseline that resamples to 0 has no relative interval; the cell still carries the verdict."""
    table1 = _table1()
    nan = float("nan")
    info = {
        "relative": {"acc": -31.5, "harm": -0.069},
        "versus_best": {
            "acc": {"improvement_ci": [nan, nan], "verdict": "result"},
            "harm": {"improvement_ci": [-0.139, -0.0001], "verdict": "hint"},
        },
    }
    assert table1.relative_cell(info, "acc") == "-3150.0% [n/a] result"
    assert table1.relative_cell(info, "harm") == "-6.9% [-13.9, -0.0] hint"
    assert table1.relative_cell({"relative": {"x": 0.1}}, "x") == "+10.0%"
