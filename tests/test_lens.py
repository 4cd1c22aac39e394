"""The logit lens: residual reads checked against a plain transformers forward, tokens, CLI, errors."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import tiny_gen

from workbench.cli import main
from workbench.core.errors import WorkbenchError
from workbench.lens.logit import LensConfig, logit_lens, parse_layers, resolve_layers, union_tokens

TEXTS = ["How do I bake bread at home?", "Paris"]


def plain_hidden_states(gen, texts: list[str]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Every layer's hidden states from a plain transformers forward (no nnsight), special rows
    put in by building ``inputs_embeds`` by hand; and the attention mask."""
    batch = gen.encoder_batch(texts)
    n = gen.config.num_special
    ids = batch.input_ids.clone()
    ids[:, -n:] = gen.tokenizer.pad_token_id
    embeds = gen.backbone.model.get_input_embeddings()(ids).detach().clone()
    embeds[:, -n:] = gen.special.detach()
    with torch.no_grad():
        out = gen.backbone.model(
            inputs_embeds=embeds,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            output_hidden_states=True,
            use_cache=False,
        )
    return out.hidden_states, batch.attention_mask


def test_residual_stream_matches_plain_forward(tiny_dirs, family) -> None:
    gen = tiny_gen(tiny_dirs, family, num_thought=3, num_compress=2)
    keep = gen.config.num_special
    resid = gen.traced.residual_stream(gen.encoder_batch(TEXTS), gen.special, keep)
    hidden, _ = plain_hidden_states(gen, TEXTS)
    num_layers = gen.backbone.info.num_layers
    assert resid.shape == (num_layers + 1, len(TEXTS), keep, gen.backbone.info.hidden_size)
    for layer in range(num_layers):  # transformers' last entry is after the final norm
        torch.testing.assert_close(resid[layer], hidden[layer][:, -keep:], rtol=1e-5, atol=1e-5)
    norm = gen.backbone.submodule(gen.backbone.arch.final_norm)
    torch.testing.assert_close(norm(resid[-1]), hidden[-1][:, -keep:], rtol=1e-5, atol=1e-5)
    # the special rows are what the embedding output holds at the special positions
    torch.testing.assert_close(resid[0], gen.special.detach().expand(len(TEXTS), -1, -1))
    # reading layer L through the norm is exactly the compression states h
    h = gen.compression_states(TEXTS)
    torch.testing.assert_close(norm(resid[-1][:, -2:]), h, rtol=1e-5, atol=1e-5)


def test_final_layer_reading_is_the_papers_view(tiny_dirs, family) -> None:
    gen = tiny_gen(tiny_dirs, family, num_thought=2, num_compress=3)
    readings = logit_lens(gen, TEXTS, LensConfig(top_k=4))
    h = gen.compression_states(TEXTS)
    head = gen.backbone.submodule(gen.backbone.arch.lm_head)
    expected = head(h).softmax(-1).topk(4, dim=-1)
    for b, reading in enumerate(readings):
        assert reading.layers == list(range(gen.backbone.info.num_layers + 1))
        assert reading.positions == ["<compress_1>", "<compress_2>", "<compress_3>"]
        assert reading.ids[-1] == expected.indices[b].tolist()
        torch.testing.assert_close(torch.tensor(reading.probs[-1]), expected.values[b], atol=1e-5, rtol=0)
        tokens = [[gen.tokenizer.decode([i]) for i in pos] for pos in expected.indices[b].tolist()]
        assert reading.tokens[-1] == tokens
        assert set(reading.union) == {t.strip() for row in tokens for t in row if t.strip()}
        assert reading.input_text == reading.query == TEXTS[b]


def test_every_layer_reads_through_the_final_norm(tiny_dirs) -> None:
    gen = tiny_gen(tiny_dirs, "qwen2", num_thought=1, num_compress=2)
    reading = logit_lens(gen, TEXTS[:1], LensConfig(top_k=3, layers=[0, 1], thought=True))[0]
    hidden, _ = plain_hidden_states(gen, TEXTS[:1])
    norm = gen.backbone.submodule(gen.backbone.arch.final_norm)
    head = gen.backbone.submodule(gen.backbone.arch.lm_head)
    assert reading.positions == ["<think_1>", "<compress_1>", "<compress_2>"]
    for i, layer in enumerate((0, 1)):
        want = head(norm(hidden[layer][0, -3:])).topk(3, dim=-1).indices.tolist()
        assert reading.ids[i] == want


def test_batch_invariance_and_instruction(tiny_dirs) -> None:
    gen = tiny_gen(tiny_dirs, "llama")
    together = logit_lens(gen, TEXTS, LensConfig(top_k=5, instruction="Answer:"))
    alone = logit_lens(gen, TEXTS[1:], LensConfig(top_k=5, instruction="Answer:"))
    assert together[1].ids == alone[0].ids
    torch.testing.assert_close(
        torch.tensor(together[1].probs), torch.tensor(alone[0].probs), atol=1e-5, rtol=0
    )
    assert together[0].input_text == "Answer: " + TEXTS[0]


def test_generate_and_compare_fill_answers(tiny_dirs) -> None:
    gen = tiny_gen(tiny_dirs, "llama")
    reading = logit_lens(
        gen, TEXTS[:1], LensConfig(layers=[-1]), generate=True, compare=True, max_new_tokens=4
    )[0]
    assert reading.decoded == gen.generate(TEXTS[:1], max_new_tokens=4)[0]
    assert reading.answer == gen.answer(TEXTS[:1], max_new_tokens=4)[0]
    assert json.loads(json.dumps(reading.to_dict()))["decoded"] == reading.decoded


def test_lens_method_mirrors_function(tiny_dirs) -> None:
    gen = tiny_gen(tiny_dirs, "llama")
    assert (
        gen.lens("Paris", top_k=2, layers=[-1])[0].ids
        == logit_lens(gen, "Paris", LensConfig(top_k=2, layers=[-1]))[0].ids
    )


def test_layer_parsing_and_resolution() -> None:
    assert parse_layers("all") is None and parse_layers("") is None
    assert parse_layers("0, 2:4,-1") == [0, 2, 3, 4, -1]
    assert resolve_layers([0, -1, 30, -1], 30) == [0, 30]
    assert resolve_layers(None, 2) == [0, 1, 2]
    with pytest.raises(WorkbenchError, match=r"layer 31 does not exist.*0 \(embeddings\) to 30"):
        resolve_layers([31], 30)
    with pytest.raises(WorkbenchError, match="layer -32 does not exist"):
        resolve_layers([-32], 30)
    with pytest.raises(WorkbenchError, match="cannot read the layer list"):
        parse_layers("ten")


def test_union_orders_by_positions_then_probability() -> None:
    tokens = [[" ice", " bear", "\n"], [" bear", " sea", " ice"], [" Arctic", " bear", "."]]
    probs = [[0.5, 0.3, 0.1], [0.4, 0.3, 0.2], [0.9, 0.05, 0.01]]
    assert union_tokens(tokens, probs) == ["bear", "ice", "Arctic", "sea", "."]


def test_top_k_out_of_range(tiny_dirs) -> None:
    gen = tiny_gen(tiny_dirs, "llama")
    for k in (0, 101):
        with pytest.raises(WorkbenchError, match="top-k must be between 1 and 100"):
            logit_lens(gen, "Paris", LensConfig(top_k=k))


# ----------------------------------------------------------------- command line


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_json(capsys, tiny_dirs) -> None:
    code, out, err = run(
        capsys,
        "lens",
        "How do I bake bread?",
        "--model",
        str(tiny_dirs["llama"]),
        "--layers",
        "0,-1",
        "--top-k",
        "3",
        "--thought",
        "--max-new-tokens",
        "3",
        "--json",
    )
    assert code == 0, err
    (reading,) = json.loads(out)
    assert reading["layers"] == [0, 2] and len(reading["positions"]) == 20
    assert all(len(pos) == 3 for layer in reading["tokens"] for pos in layer)
    assert isinstance(reading["decoded"], str) and reading["answer"] is None


def test_cli_tables_and_heatmap(capsys, tiny_dirs, tmp_path) -> None:
    html = tmp_path / "lens.html"
    code, out, err = run(
        capsys,
        "lens",
        "Where is Paris?",
        "--model",
        str(tiny_dirs["qwen3"]),
        "--compare",
        "--max-new-tokens",
        "3",
        "--html",
        str(html),
    )
    assert code == 0, err
    for text in (
        "top-5 tokens at layer 2 (final)",
        "top-1 token per layer",
        "union",
        "decoded",
        "own answer",
    ):
        assert text in out
    page = html.read_text()
    assert "Where is Paris?" in page and "plotly" in page.lower()


def test_cli_batch_file_to_csv_and_jsonl(capsys, tiny_dirs, tmp_path) -> None:
    queries = tmp_path / "queries.txt"
    queries.write_text("How do I bake bread?\nWhere is Paris?\n\nWhat is light?\n")
    for suffix in (".csv", ".jsonl"):
        out_file = tmp_path / f"rows{suffix}"
        code, out, err = run(
            capsys,
            "lens",
            "--file",
            str(queries),
            "--model",
            str(tiny_dirs["llama"]),
            "--no-generate",
            "--out",
            str(out_file),
        )
        assert code == 0, err
        assert "union of final-layer tokens per query" in out
        if suffix == ".csv":
            rows = list(csv.DictReader(out_file.open()))
            assert [r["query"] for r in rows] == ["How do I bake bread?", "Where is Paris?", "What is light?"]
            assert len(json.loads(rows[0]["final_tokens"])) == 10
        else:
            rows = [json.loads(line) for line in out_file.read_text().splitlines()]
            assert len(rows) == 3 and rows[2]["query"] == "What is light?"
            assert rows[0]["union"] and rows[0]["decoded"] is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lens", ""], "text 0 is empty"),
        (["lens"], "no queries given"),
        (["lens", "q", "--layers", "99"], "layer 99 does not exist"),
        (["lens", "q", "--top-k", "0"], "top-k must be between 1 and 100"),
        (["lens", "q", "--top-k", "500"], "top-k must be between 1 and 100"),
        (["lens", "q", "--backend", "tl"], "unknown lens backend 'tl'"),
        (["lens", "q", "--no-generate", "--out", "rows.xlsx"], "use a .jsonl or .csv file"),
    ],
)
def test_cli_bad_input_is_one_line(capsys, tiny_dirs, tmp_path, monkeypatch, argv, message) -> None:
    monkeypatch.chdir(tmp_path)
    code, _out, err = run(capsys, *argv, "--model", str(tiny_dirs["llama"]))
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0] and "Fix:" in errors[0], err
    assert not (tmp_path / "rows.xlsx").exists()


def test_cli_checkpoint_for_another_backbone(capsys, tiny_dirs, tmp_path) -> None:
    ckpt = tiny_gen(tiny_dirs, "llama").save(tmp_path / "ckpt")
    code, _, err = run(capsys, "lens", "q", "--model", str(tiny_dirs["qwen2"]), "--checkpoint", str(ckpt))
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 1 and len(errors) == 1, err  # progress bars from loading may precede it
    assert "backbone" in errors[0] and "Fix:" in errors[0]


# ----------------------------------------------------------------- the real default backbone


@pytest.mark.integration
def test_shipped_checkpoint_lens_is_the_papers_view() -> None:
    import workbench

    gen = workbench.load("smollm2-135m")
    query = "where do polar bears live and what's their habitat"
    reading = gen.lens(query, layers=[-1], generate=True, max_new_tokens=12)[0]
    head = gen.backbone.submodule(gen.backbone.arch.lm_head)
    h = gen.compression_states([query])
    assert reading.ids[0] == head(h[0]).topk(5, dim=-1).indices.tolist()
    assert reading.decoded == gen.generate([query], max_new_tokens=12)[0]
    assert reading.num_layers == 30 and len(reading.union) >= 5


def test_lens_path_never_imports_heavy_optional_modules(tiny_dirs) -> None:
    """``workbench lens`` must stay quick: umap, mteb, pyarrow and TransformerLens are not imported."""
    import subprocess
    import sys

    code = (
        "import sys; from workbench.cli import main; "
        f"rc = main(['lens', 'Paris', '--model', {str(tiny_dirs['llama'])!r}, '--max-new-tokens', '2']); "
        "heavy = [m for m in ('umap', 'mteb', 'pyarrow', 'transformer_lens', 'pandas') if m in sys.modules]; "
        "print('HEAVY', heavy, rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY [] 0" in out, out


def test_cli_latent_lens_reads_an_index(capsys, tiny_dirs, tmp_path) -> None:
    from workbench.lens.latent import build_latent_index

    gen = tiny_gen(tiny_dirs, "llama")
    index_dir = build_latent_index(gen, ["Bread is baked from flour.", "Paris is in France."]).save(
        tmp_path / "index"
    )
    argv = ["lens", "Where is Paris?", "--model", str(tiny_dirs["llama"]), "--layers", "-1", "--top-k", "2"]
    code, out, err = run(capsys, *argv, "--no-generate", "--latent", "--index", str(index_dir), "--json")
    assert code == 0, err
    (reading,) = json.loads(out)
    assert len(reading["latent"]) == 10 and all(len(hits) == 2 for hits in reading["latent"])
    hit = reading["latent"][0][0]
    assert {"token", "score", "context", "text_id", "position"} <= set(hit) and -1.0 <= hit["score"] <= 1.0
    code, out, _ = run(capsys, *argv, "--no-generate", "--latent", "--index", str(index_dir))
    assert code == 0 and "latent lens: nearest response tokens" in out
    code, out, err = run(capsys, *argv, "--latent", "--index", str(tmp_path / "missing"))
    assert code == 1 and "latent-lens build" in err
    assert out == "", "a missing index is refused before the lens reads anything"


def test_read_lens_is_the_command_as_one_library_call(tiny_dirs, tmp_path) -> None:
    """Queries and a query file, the latent lens and both answers, on the model the loader gives."""
    from workbench.lens.latent import build_latent_index, load_latent_index
    from workbench.lens.request import LensRequest, read_lens

    gen = tiny_gen(tiny_dirs, "llama")
    index_dir = build_latent_index(gen, ["Bread is baked from flour.", "Paris is in France."]).save(
        tmp_path / "index"
    )
    file = tmp_path / "queries.txt"
    file.write_text("Where is Paris?\n")
    texts = ["How do I bake bread?", "Where is Paris?"]
    config = LensConfig(top_k=2, layers=[-1])
    loaded = []

    def load(model, checkpoint, untrained, **options):
        loaded.append((model, checkpoint, untrained, options))
        return gen

    request = LensRequest(
        queries=texts[:1], file=file, model="tiny", config=config, latent=True, index=index_dir, compare=True
    )
    readings = read_lens(request, load)
    assert loaded == [("tiny", None, False, {})]  # default dtype and device: a 3-argument loader works
    assert [r.query for r in readings] == texts
    assert [r.ids for r in readings] == [r.ids for r in logit_lens(gen, texts, config)]
    assert [r.decoded for r in readings] == gen.generate(texts, max_new_tokens=48)
    assert [r.answer for r in readings] == gen.answer(texts, max_new_tokens=48)
    index = load_latent_index(gen, index_dir)
    for reading, h in zip(readings, gen.compression_states(texts), strict=True):
        assert reading.latent == index.nearest(h, 2, distinct=True)
    plain = read_lens(LensRequest(queries="Paris", config=config, generate=False), lambda *_: gen)
    assert plain[0].decoded is None and plain[0].latent is None and plain[0].query == "Paris"


def test_cli_heatmap_png(capsys, tiny_dirs, tmp_path) -> None:
    """The static PNG needs a Chrome for kaleido (CI installs Debian's chromium)."""
    import shutil

    if not (shutil.which("chromium") or shutil.which("google-chrome")):
        pytest.skip("no Chrome or Chromium for kaleido on this machine")
    png = tmp_path / "lens.png"
    argv = ["lens", "Paris", "--model", str(tiny_dirs["llama"]), "--no-generate", "--png", str(png)]
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_token_labels_make_whitespace_and_control_characters_visible() -> None:
    from workbench.report.lens_plot import show_token

    assert [show_token(t) for t in (" bear", " ", "\n", "\x1f", "a\x1cb", "")] == [
        "bear",
        "␣",
        "\\n",
        "\\x1f",
        "a\\x1cb",
        "∅",
    ]


def test_remote_lens_dry_run_equals_the_local_lens(tiny_dirs, tmp_path) -> None:
    """nnsight's remote path run locally (``mode="local"``) gives the local readings."""
    from nnsight.modeling.transformers import TransformersModel

    import workbench
    from workbench.core.backbone import find_architecture
    from workbench.lens.logit import remote_logit_lens
    from workbench.lens.remote import RemoteBackbone
    from workbench.store.official import export_official

    out = export_official(tiny_gen(tiny_dirs, "llama", num_thought=2, num_compress=3), tmp_path / "official")
    lm = TransformersModel(str(tiny_dirs["llama"]), task="text-generation", dispatch=True)
    backbone = RemoteBackbone("tiny", lm, find_architecture(lm._module), 2)
    config = LensConfig(top_k=3, layers=[0, 1], thought=True)
    remote = remote_logit_lens(str(out), TEXTS, config, backbone=backbone, mode="local")
    local = logit_lens(workbench.load(out), TEXTS, config)
    for r, want in zip(remote, local, strict=True):
        assert r.ids == want.ids and r.union == want.union and r.positions == want.positions
        assert r.layers == [0, 1] and r.num_layers == 2
        torch.testing.assert_close(torch.tensor(r.probs), torch.tensor(want.probs), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--compare"], "--compare needs the backbone on this machine"),
        (["--generate"], "--generate needs the backbone"),
        (["--no-generate"], "is not a checkpoint: remote execution reads"),
    ],
)
def test_cli_remote_errors(capsys, monkeypatch, extra, message) -> None:
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    code, _, err = run(capsys, "lens", "q", "--remote", "--model", "some/checkpoint", *extra)
    assert code == 1 and err.startswith("error: ") and message in err, err
