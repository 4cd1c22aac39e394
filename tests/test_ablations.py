"""analyses/ablations.py on the tiny random Llama: outputs, one finite row per variant, reuse of runs."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
from conftest import QUESTIONS

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ["Where is Rome?", "What is a cloud?", "Who painted the Mona Lisa?", "How do birds fly?"]


def script():
    spec = importlib.util.spec_from_file_location("ablations", ROOT / "analyses" / "ablations.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def write_pairs(path: Path, prompts: list[str]) -> Path:
    path.write_text(
        "".join(
            json.dumps({"prompt": q, "response": f"Here is an answer to: {q.lower()}"}) + "\n"
            for q in prompts
        )
    )
    return path


def test_variant_names() -> None:
    ab = script()
    assert ab.parse_variant("align-only") == ab.Variant("T10-C10-align-only", 10, 10, "align only")
    assert ab.parse_variant("both") == ab.Variant("T10-C10", 10, 10, "both")
    assert ab.parse_variant("T0-C5").num_thought == 0
    with pytest.raises(SystemExit):
        ab.parse_variant("T1")


def html_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No kaleido in the test (its Chrome can hang on a loaded machine): the figure's HTML only."""
    import workbench.report.figures as figs

    def write(fig, stem, **_):
        path = figs.with_suffix(Path(stem), ".html")
        fig.write_html(str(path), include_plotlyjs="cdn")
        return [path]

    monkeypatch.setattr(figs, "write_figure", write)


def test_ablation_on_tiny_llama(tiny_dirs, tmp_path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    html_only(monkeypatch)
    ab = script()
    work, out = tmp_path / "work", tmp_path / "figures"
    argv = [
        "--model", str(tiny_dirs["llama"]),
        "--teacher", "self",
        "--responses", str(write_pairs(tmp_path / "responses.jsonl", QUESTIONS)),
        "--heldout", str(write_pairs(tmp_path / "heldout.jsonl", HELDOUT)),
        "--variants", "T1-C2,T0-C2-align-only",
        "--steps", "3",
        "--batch-size", "4",
        "--lr", "1e-2",
        "--warmup-steps", "1",
        "--save-every", "2",
        "--max-query-length", "32",
        "--max-response-length", "16",
        "--heldout-limit", "4",
        "--max-new-tokens", "4",
        "--work-dir", str(work),
        "--out-dir", str(out),
        "--quiet",
    ]  # fmt: skip
    payload = ab.main(argv)
    printed = capsys.readouterr().out
    assert ab.BANNER in printed

    for suffix in ("json", "md", "html"):
        assert (out / f"ablations.{suffix}").is_file()
    assert not list(out.glob(".*"))  # no temporary files left behind
    names = ["T1-C2", "T0-C2-align-only"]
    table = payload["table"]
    assert [r["variant"] for r in table] == names
    for row in table:
        numbers = [v for k, v in row.items() if k != "variant"]
        assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers), row
    md = (out / "ablations.md").read_text()
    for name in names:
        assert sum(line.startswith(f"| {name} |") for line in md.splitlines()) == 1
        cells = next(line for line in md.splitlines() if line.startswith(f"| {name} |")).split("|")[2:-1]
        assert len(cells) == 11 and all(math.isfinite(float(c)) for c in cells)

    saved = json.loads((out / "ablations.json").read_text())
    by_name = {r["name"]: r for r in saved["variants"]}
    assert by_name["T0-C2-align-only"]["config"]["recon_weight"] == 0
    assert by_name["T0-C2-align-only"]["config"]["align_weight"] > 0
    assert by_name["T1-C2"]["config"]["recon_weight"] == 1 and by_name["T1-C2"]["num_thought"] == 1
    assert saved["responses"]["file_sha256"] and saved["budget"]["steps"] == 3
    assert saved["heldout"]["overlap"]["overlap"] == 0 and saved["heldout"]["overlap"]["queries"] == 4
    # a held-out prompt that is a training prompt up to case and end punctuation is refused
    from workbench.core.errors import WorkbenchError

    leaky = write_pairs(tmp_path / "leaky.jsonl", [QUESTIONS[0].upper().rstrip("?"), *HELDOUT[1:]])
    with pytest.raises(WorkbenchError, match="1 held-out prompts also occur"):
        ab.main([*argv[:6], "--heldout", str(leaky), *argv[8:]])
    assert all(r["status"] == "trained" and r["training"]["steps_logged"] == 3 for r in saved["variants"])

    logs = {n: (work / n / "train_log.jsonl").read_text() for n in names}
    weights = {n: (work / n / "llm2vec_gen_weights.safetensors").stat().st_mtime_ns for n in names}
    again = ab.main(argv)
    assert [r["status"] for r in again["variants"]] == ["reused", "reused"]
    assert all(r["eval_cached"] for r in again["variants"])
    assert {n: (work / n / "train_log.jsonl").read_text() for n in names} == logs
    assert {n: (work / n / "llm2vec_gen_weights.safetensors").stat().st_mtime_ns for n in names} == weights
    assert again["table"] == table
