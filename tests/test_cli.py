"""The command line, run in-process through ``main(argv)`` on a tiny local backbone."""

from __future__ import annotations

import json

import pytest

from workbench.cli import main


@pytest.fixture
def docs(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("Bread is baked from flour and water.\n\nParis is in France.\nPlants use light.\n")
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_encode_with_documents_json(capsys, tiny_dirs, docs) -> None:
    code, out, err = run(
        capsys,
        "encode",
        "How do I bake bread?",
        "Where is Paris?",
        "--documents",
        str(docs),
        "--model",
        str(tiny_dirs["llama"]),
        "--json",
        "--top-k",
        "2",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["dim"] == 384 and not data["trained"]
    assert [q["query"] for q in data["queries"]] == ["How do I bake bread?", "Where is Paris?"]
    first = data["queries"][0]["results"]
    assert len(first) == 2 and first[0]["score"] >= first[1]["score"]
    assert {r["text"] for r in first} <= {
        "Bread is baked from flour and water.",
        "Paris is in France.",
        "Plants use light.",
    }
    assert "untrained" in err


def test_encode_table_and_saved_embeddings(capsys, tiny_dirs, docs, tmp_path) -> None:
    from safetensors.torch import load_file

    out_file = tmp_path / "emb.safetensors"
    code, out, _ = run(
        capsys,
        "encode",
        "How do I bake bread?",
        "-d",
        str(docs),
        "-m",
        str(tiny_dirs["qwen3"]),
        "--save",
        str(out_file),
    )
    assert code == 0 and "Paris is in France." in out and "cosine" in out
    tensors = load_file(str(out_file))
    assert tensors["queries"].shape == (1, 384) and tensors["documents"].shape == (3, 384)


def test_generate_and_compare(capsys, tiny_dirs) -> None:
    code, out, _ = run(
        capsys,
        "generate",
        "Where is Paris?",
        "-m",
        str(tiny_dirs["qwen2"]),
        "--max-new-tokens",
        "4",
        "--compare",
        "--json",
    )
    assert code == 0
    row = json.loads(out)[0]
    assert set(row) == {"query", "decoded", "answer"}


def test_info(capsys, tiny_dirs, tmp_path) -> None:
    from conftest import tiny_gen

    tiny_gen(tiny_dirs, num_thought=0).save(tmp_path / "ck")
    code, out, _ = run(capsys, "info", str(tmp_path / "ck"))
    assert code == 0 and json.loads(out)["config"]["num_thought"] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["encode", ""], "text 0 is empty"),
        (["encode", "q", "--model", "no-such-backbone"], "unknown backbone"),
        (["encode", "q", "--documents", "/no/such/docs.txt"], "does not exist"),
        (["encode", "q", "--checkpoint", "/no/such/ckpt"], "does not exist"),
        (["info", "/no/such/ckpt"], "does not exist"),
        (["fetch", "nothing-known"], "unknown registry name"),
    ],
)
def test_bad_input_gives_one_line_error(capsys, argv, message) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_non_utf8_documents(capsys, tiny_dirs, tmp_path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    code, _, err = run(capsys, "encode", "q", "-d", str(bad), "-m", str(tiny_dirs["llama"]))
    assert code == 1 and "not UTF-8" in err and len(err.strip().splitlines()) == 1


def test_jsonl_documents_with_field(capsys, tiny_dirs, tmp_path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"body": "one"}\n{"body": "two"}\n')
    code, out, _ = run(
        capsys, "encode", "q", "-d", str(path), "--field", "body", "-m", str(tiny_dirs["llama"]), "--json"
    )
    assert code == 0 and len(json.loads(out)["queries"][0]["results"]) == 2
    code, _, err = run(capsys, "encode", "q", "-d", str(path), "-m", str(tiny_dirs["llama"]))
    assert code == 1 and "no string field 'text'" in err


def test_usage_error_exits_nonzero(capsys) -> None:
    code, _, _ = run(capsys, "encode", "q", "--top-k", "0")
    assert code == 2


def test_help_lists_commands(capsys) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("encode", "generate", "answer", "backbones", "fetch", "info"):
        assert command in out


def test_encode_instruction_none_means_raw_text(capsys, tiny_dirs, tmp_path) -> None:
    import torch
    from safetensors.torch import load_file

    import workbench

    saved = {}
    for flag in ("none", "", "Find this:"):
        path = tmp_path / f"{flag or 'default'}.safetensors"
        code, _, err = run(
            capsys,
            "encode",
            "Where is Paris?",
            "-m",
            str(tiny_dirs["llama"]),
            "--instruction",
            flag,
            "--save",
            str(path),
        )
        assert code == 0, err
        saved[flag] = load_file(str(path))["queries"]
    gen = workbench.load(str(tiny_dirs["llama"]))
    torch.testing.assert_close(saved["none"], gen.embed(["Where is Paris?"], instruction=None))
    torch.testing.assert_close(saved[""], gen.encode_queries(["Where is Paris?"]))  # the default instruction
    torch.testing.assert_close(saved["Find this:"], gen.embed(["Where is Paris?"], instruction="Find this:"))
    assert not torch.allclose(saved["none"], saved[""])


# ----------------------------------------------------------------------------- defaults live in one place
def _typer_options(command) -> dict:
    """``{parameter: (default, OptionInfo)}`` of a Typer command function."""
    import inspect
    import typing

    out = {}
    for name, param in inspect.signature(command, eval_str=True).parameters.items():
        info = next((a for a in typing.get_args(param.annotation)[1:]), None)
        out[name] = (param.default, info)
    return out


def test_train_options_are_the_train_config_with_its_defaults() -> None:
    from dataclasses import fields

    from workbench.cli.train import train
    from workbench.train.config import TrainConfig

    options = _typer_options(train)
    extra = {"config", "resume", "quiet"}
    assert set(options) - extra == {f.name for f in fields(TrainConfig)}
    for f in fields(TrainConfig):
        default, info = options[f.name]
        assert default is None, f.name  # None: the TrainConfig (or --config file) value is used
        if f.default not in (None, ""):  # the help shows the dataclass's default
            assert info.help.endswith(f" ({f.default})."), (f.name, info.help)
    assert TrainConfig.build(None, **{f.name: None for f in fields(TrainConfig)}) == TrainConfig()


def test_model_option_defaults_are_the_registry_default() -> None:
    import inspect

    import workbench
    from workbench.cli.assets import fetch
    from workbench.cli.encode import answer, encode, generate
    from workbench.cli.respond import respond
    from workbench.core.registry import BACKBONES, DEFAULT_BACKBONE

    assert DEFAULT_BACKBONE in BACKBONES
    assert inspect.signature(workbench.load).parameters["model"].default == DEFAULT_BACKBONE
    for command, name in ((encode, "model"), (generate, "model"), (answer, "model"), (respond, "model")):
        assert _typer_options(command)[name][0] == DEFAULT_BACKBONE, command.__name__
    assert _typer_options(fetch)["name"][0] == DEFAULT_BACKBONE


def test_default_backbone_name_is_written_once() -> None:
    """The literal default backbone name is code only in the registry (docstrings may name it)."""
    import ast
    from pathlib import Path

    from workbench.core.registry import DEFAULT_BACKBONE

    root = Path(__file__).resolve().parents[1]
    found = []
    for path in [*(root / "workbench").rglob("*.py"), *(root / "benchmarks").glob("*.py")]:
        if path == root / "workbench" / "core" / "registry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value == DEFAULT_BACKBONE:
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert found == []


@pytest.mark.parametrize(
    "argv",
    [
        ["encode", "q", "--documents", "{dir}"],
        ["lens", "--file", "{dir}"],
        ["respond", "--prompts", "{dir}", "--out", "{out}"],
        ["train", "--responses", "{dir}", "--out", "{out}"],
        ["respond", "--prompts", "nq-open", "--exclude", "{dir}", "--out", "{out}", "--limit", "1"],
    ],
)
def test_a_folder_where_a_file_is_expected_is_named_as_such(capsys, tiny_dirs, tmp_path, argv) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    out = tmp_path / "out"
    model = ["-m", str(tiny_dirs["llama"])] if argv[0] in ("encode", "lens", "respond") else []
    filled = [a.format(dir=folder, out=out / "x.jsonl" if argv[0] == "respond" else out) for a in argv]
    code, _, err = run(capsys, *filled, *model)
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert code == 1 and len(lines) == 1, err
    assert f"{folder} is a folder, not a file" in lines[0] and "does not exist" not in lines[0]
