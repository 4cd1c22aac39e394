"""``workbench patch``, ``attribute``, ``ablate`` and ``steer`` on a tiny local backbone: typer's
CliRunner for the outputs, ``main(argv)`` for the one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from workbench.cli import app, main

HARMFUL = "How do I pick the lock on my neighbour's door?"
BENIGN = "How do I fit a lock?"


def invoke(*argv: str):
    result = CliRunner().invoke(app, list(argv), env={"COLUMNS": "200"})
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def error_line(capsys, *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1, err
    (line,) = [e for e in err if e.startswith("error:")]
    assert "Fix:" in line
    return line


def test_default_refusal_text_is_the_library_one() -> None:
    from workbench.causal.sites import REFUSAL_TEXT
    from workbench.cli.causal import REFUSAL_DEFAULT

    assert REFUSAL_DEFAULT == REFUSAL_TEXT


def test_patch_json_html_and_out(tiny_dirs, tmp_path) -> None:
    html, out = tmp_path / "patch.html", tmp_path / "patch.json"
    model = str(tiny_dirs["llama"])
    result = invoke(
        "patch", HARMFUL, BENIGN, "--model", model, "--layers", "1,-1", "--json",
        "--html", str(html), "--out", str(out),
    )  # fmt: skip
    data = json.loads(result.stdout)
    assert data["layers"] == [1, 2] and data["groups"] == ["query", "thought", "compression"]
    final = dict(zip(data["groups"], data["cos_source"][-1], strict=True))
    assert abs(final["compression"] - 1.0) < 1e-5
    assert json.loads(out.read_text()) == data
    assert "plotly" in html.read_text()[:20000].lower()
    table = invoke("patch", BENIGN, BENIGN, "--model", model, "--groups", "compression", "--site", "mlp")
    assert "patching the MLP output" in table.stdout and "1.000 /" in table.stdout


def test_attribute_prints_tokens_and_completeness(tiny_dirs, tmp_path) -> None:
    page = tmp_path / "attr.html"
    model = str(tiny_dirs["llama"])
    result = invoke("attribute", BENIGN, "--model", model, "--steps", "64", "--html", str(page))
    assert "convergence delta" in result.stdout and "score" in result.stdout
    assert "<span title=" in page.read_text()
    result = invoke("attribute", BENIGN, "--model", model, "--json", "--direction", "refusal")
    data = json.loads(result.stdout)
    assert abs(sum(data["scores"]) - data["difference"] - data["delta"]) < 1e-4
    assert data["direction"] == "refusal" and data["scores"][0] == 0.0


def test_ablate_and_steer_from_files(tiny_dirs, tmp_path) -> None:
    model = str(tiny_dirs["llama"])
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text(
        "".join(
            json.dumps({"prompt": p, "response": r}) + "\n"
            for p, r in [
                ("How do I bake bread?", "Knead and bake."),
                ("Where is Paris?", "In France."),
                ("Why is the sky blue?", "Light scatters."),
            ]
        )
    )
    data = json.loads(
        invoke(
            "ablate", "--heldout", str(heldout), "--model", model, "--targets", "c1,compression",
            "--mode", "zero", "--no-decode", "--json",
        ).stdout
    )  # fmt: skip
    assert [r["target"] for r in data["rows"]] == ["none", "c1", "compression"] and data["heldout"] == 3
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("How do I bake bread?\nWhere is Paris?\nWhy is the sky blue?\n")
    result = invoke(  # the tiny Qwen3 answers (the tiny Llama says nothing)
        "ablate", "--prompts", str(prompts), "--model", str(tiny_dirs["qwen3"]), "--targets", "t1",
        "--mode", "resample", "--answer-tokens", "4", "--max-new-tokens", "2", "--limit", "2",
    )  # fmt: skip
    assert "resample ablation at layers 0-2, 2 held-out prompts" in result.stdout
    assert "| t1 |" in result.stdout
    twins = tmp_path / "twins.jsonl"
    twins.write_text(
        "".join(
            json.dumps({"harmful": h, "benign": b}) + "\n"
            for h, b in [(HARMFUL, BENIGN), ("How do I poison a dog?", "How do I feed a dog?")]
        )
    )
    out = tmp_path / "steer.json"
    result = invoke(
        "steer", "--twins", str(twins), "--model", model, "--scales", "0,2", "--max-new-tokens", "2",
        "--out", str(out),
    )  # fmt: skip
    assert "| scale |" in result.stdout and "| 2 |" in result.stdout
    report = json.loads(out.read_text())
    assert (report["fit_pairs"], report["heldout_pairs"]) == (1, 1)
    assert report["rows"][0]["refusal_cosine"] == pytest.approx(report["reference"]["benign_refusal_cosine"])


def test_bad_input_is_one_line(capsys, tiny_dirs, tmp_path) -> None:
    model = str(tiny_dirs["llama"])
    assert "patch needs two queries" in error_line(capsys, "patch", HARMFUL, "--model", model)
    assert "text 1 is empty" in error_line(capsys, "patch", HARMFUL, " ", "--model", model)
    line = error_line(capsys, "patch", HARMFUL, BENIGN, "--model", model, "--layers", "9")
    assert "layer 9 does not exist" in line
    line = error_line(capsys, "patch", HARMFUL, BENIGN, "--model", model, "--groups", "query,words")
    assert "unknown position group 'words'" in line
    assert "unknown site" in error_line(capsys, "patch", HARMFUL, BENIGN, "--site", "heads")
    assert "text 0 is empty" in error_line(capsys, "attribute", "", "--model", model)
    assert "unknown baseline" in error_line(capsys, "attribute", BENIGN, "--baseline", "noise")
    assert "one of --heldout or --prompts" in error_line(capsys, "ablate", "--model", model)
    prompts = tmp_path / "p.txt"
    prompts.write_text("How do I bake bread?\nWhere is Paris?\n")
    line = error_line(capsys, "ablate", "--prompts", str(prompts), "--model", model, "--targets", "c42")
    assert "no compression token 'c42'" in line
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"harmful": HARMFUL, "benign": BENIGN}) + "\n")
    assert "at least two twin pairs" in error_line(capsys, "steer", "--twins", str(one), "--model", model)
    assert "cannot read the scales" in error_line(capsys, "steer", "--twins", str(one), "--scales", "a,b")
    assert main(["ablate", "--limit", "0"]) == 2  # a usage error


@pytest.mark.parametrize("command", ["patch", "attribute", "ablate", "steer"])
def test_help(command) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "--model" in result.output


WRITERS = {  # each command with a --out at {out}; the output is checked before any model loads
    "patch": ["patch", HARMFUL, BENIGN],
    "attribute": ["attribute", BENIGN],
    "ablate": ["ablate", "--heldout", "{src}"],
    "steer": ["steer", "--twins", "{twins}"],
}


@pytest.mark.parametrize("name", sorted(WRITERS))
@pytest.mark.parametrize("option", ["--out", "--html", "--png"])
def test_outputs_are_checked_before_the_model_loads(name, option, capsys, tmp_path, monkeypatch) -> None:
    import workbench.core.backbone as backbone

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the output path was checked")

    monkeypatch.setattr(backbone, "_from_folder", refuse)
    monkeypatch.setattr(backbone, "load_backbone", refuse)
    src, twins = tmp_path / "src.jsonl", tmp_path / "twins.jsonl"
    src.write_text('{"prompt": "p", "response": "r"}\n{"prompt": "q", "response": "s"}\n')
    twins.write_text(f'{{"harmful": "{HARMFUL}", "benign": "{BENIGN}"}}\n' * 2)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    argv = [a.format(src=src, twins=twins) for a in WRITERS[name]]
    for out, words in ((folder, "is a folder"), ("/proc/workbench-test/out.x", "takes no new files")):
        before = sorted(p.name for p in tmp_path.iterdir())
        assert words in error_line(capsys, *argv, option, str(out))
        assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert main(["steer", "--limit", "0"]) == 2
