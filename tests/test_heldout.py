"""Held-out discipline: checkpoints record their training prompts, evaluations refuse overlap, training
refuses evaluation queries and other models' answers, and intervals say result or hint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import QUESTIONS, tiny_gen
from torch.nn import functional as F

import workbench
from workbench.core.errors import WorkbenchError
from workbench.core.fingerprint import PromptFingerprint, check_overlap, normalise, overlap_note
from workbench.core.losses import reconstruction_loss_sum, response_tokens
from workbench.eval.reasoning import RetrievalTask, held_out_task
from workbench.eval.stats import bootstrap_ci, paired_difference
from workbench.store.checkpoint import PROMPTS_FILE, read_checkpoint
from workbench.train.config import TrainConfig
from workbench.train.pairs import read_pairs
from workbench.train.prompts import load_prompts
from workbench.train.trainer import RUN_CONFIG, Trainer, train

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHIPPED = Path(workbench.__file__).parent / "checkpoints"


def test_normalisation_matches_case_space_and_end_punctuation() -> None:
    assert normalise("  Who wrote\tHamlet? ") == normalise("who wrote hamlet") == "who wrote hamlet"
    fp = PromptFingerprint.from_texts(["who wrote hamlet", "What is 2+2"])
    assert fp.overlap(["Who wrote Hamlet?", "what is 2 + 2", "WHAT IS 2+2."]) == [0, 2]
    assert "Who  wrote hamlet" in fp and len(fp) == 2


def test_fingerprint_survives_save_and_load(tiny_dirs, tmp_path) -> None:
    gen = tiny_gen(tiny_dirs)
    assert (
        gen.training_prompts is not None and len(gen.training_prompts) == 0
    )  # untrained: trained on nothing
    gen.training_prompts = PromptFingerprint.from_texts(QUESTIONS[:3], ["mine.jsonl"])
    gen.trained = True
    gen.save(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "llm2vec_gen_config.json").read_text())
    assert meta["training_prompts"]["count"] == 3 and meta["training_prompts"]["file"] == PROMPTS_FILE
    back = workbench.load(tmp_path / "ck")
    assert back.training_prompts == gen.training_prompts
    (tmp_path / "ck" / PROMPTS_FILE).unlink()
    with pytest.raises(WorkbenchError, match="fingerprint its config names\\) is missing"):
        read_checkpoint(tmp_path / "ck")


def test_overlap_is_refused_in_one_line_or_recorded() -> None:
    class Model:
        training_prompts = PromptFingerprint.from_texts(["Why is the sky blue?"])

    texts = ["why is the sky blue", "What is the capital of France?"]
    with pytest.raises(WorkbenchError) as err:
        check_overlap(Model(), texts, what="map queries")
    assert str(err.value).startswith("1 of 2 map queries are training prompts") and "--allow-overlap" in str(
        err.value
    )
    record = check_overlap(Model(), texts, allow_overlap=True)
    assert record["overlap"] == 1 and record["overlap_ids"] == [0] and record["checked"]
    assert overlap_note(record) == "1 of 2 queries are training prompts"
    Model.training_prompts = None  # unknown history: run, but say it was not checked
    assert check_overlap(Model(), texts)["checked"] is False


def test_gsm8k_task_leaves_out_training_prompts_before_the_limit() -> None:
    queries = {f"g{i}": f"question {i}" for i in range(6)}
    task = RetrievalTask(
        "gsm8k",
        queries,
        {f"s{i}": f"solution {i}" for i in range(6)},
        {f"g{i}": {f"s{i}": 1} for i in range(6)},
        "",
        notes={"corpus_follows_queries": True, "drop_training_prompts": True},
    )

    class Model:
        training_prompts = PromptFingerprint.from_texts(["Question 0", "question 2"])

    kept, record = held_out_task(Model(), task, 3, allow_overlap=False)
    assert list(kept.queries) == ["g1", "g3", "g4"] and list(kept.corpus) == ["s1", "s3", "s4"]
    assert kept.notes["left_out_training_prompts"] == 2 and record["overlap"] == 0


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")
def test_shipped_checkpoints_record_their_recipe_prompts() -> None:
    smol = read_checkpoint(SHIPPED / "smollm2-135m").fingerprint
    qwen = read_checkpoint(SHIPPED / "qwen2.5-coder-0.5b").fingerprint
    assert smol is not None and qwen is not None and smol.complete and qwen.complete
    nq = [p.text for p in load_prompts("nq-open", data=DATA, shuffle_seed=0, limit=4000, force=True)]
    assert len(smol.overlap(nq)) == len(nq) == 3610  # stage 3 trained on every NQ-open dev question
    gsm = [p.text for p in load_prompts("gsm8k", data=DATA, shuffle_seed=0, limit=480)]
    assert len(smol.overlap(gsm)) == 480  # its first 800 hold them
    assert len(qwen.overlap(gsm)) == 477  # stage 3 left out the 3 that are held-out quality prompts
    held = load_prompts(
        str(DATA / "nq-open" / "NQ-open.efficientqa.test.1.1.jsonl"), field="question", heldout=True
    )
    assert not smol.overlap([p.text for p in held]) and not qwen.overlap([p.text for p in held])


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")
def test_evaluation_queries_are_not_training_prompts(tmp_path) -> None:
    efficientqa = str(DATA / "nq-open" / "NQ-open.efficientqa.test.1.1.jsonl")
    with pytest.raises(WorkbenchError, match="holds evaluation queries"):
        load_prompts(efficientqa, field="question")
    assert load_prompts(efficientqa, field="question", heldout=True, limit=2)


def _responses(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _options(tiny_dirs, responses: Path, out: Path, **extra) -> TrainConfig:
    base = dict(
        model=str(tiny_dirs["llama"]),
        teacher="self",
        responses=str(responses),
        out=str(out),
        num_thought=1,
        num_compress=2,
        max_steps=2,
        schedule_steps=2,
        batch_size=2,
        save_every=2,
        warmup_steps=0,
        max_query_length=32,
        max_response_length=8,
        data_dir=str(DATA),
    )
    return TrainConfig(**(base | extra))


def test_training_refuses_foreign_and_heldout_rows_and_records_its_prompts(tiny_dirs, tmp_path) -> None:
    me = str(tiny_dirs["llama"])
    own = [{"prompt": q, "response": f"An answer to {q}", "model": me, "sha256": None} for q in QUESTIONS[:4]]
    foreign = [r | {"model": "someone-else-7b", "sha256": "ab" * 32} for r in own]
    with pytest.raises(WorkbenchError, match="4 of 4 responses were written by another model"):
        train(
            _options(tiny_dirs, _responses(tmp_path / "f.jsonl", foreign), tmp_path / "a"),
            show_progress=False,
        )
    assert not (tmp_path / "a" / "llm2vec_gen_weights.safetensors").exists()
    heldout = [r | {"role": "heldout"} for r in own]
    with pytest.raises(WorkbenchError, match="held-out references"):
        train(
            _options(tiny_dirs, _responses(tmp_path / "h.jsonl", heldout), tmp_path / "b"),
            show_progress=False,
        )
    if DATA.is_dir():
        query = json.loads((DATA / "advbench-ir" / "advbench-ir.jsonl").open().readline())["instruction"]
        leaked = [*own, {"prompt": query, "response": "no", "model": me}]
        with pytest.raises(WorkbenchError, match=r"1 of 5 training prompts are .*evaluation queries"):
            train(
                _options(tiny_dirs, _responses(tmp_path / "e.jsonl", leaked), tmp_path / "c"),
                show_progress=False,
            )
    # distillation is allowed when asked for, and recorded
    out = train(
        _options(
            tiny_dirs, _responses(tmp_path / "f.jsonl", foreign), tmp_path / "d", allow_foreign_responses=True
        ),
        show_progress=False,
    )
    run = json.loads((out / RUN_CONFIG).read_text())
    assert run["provenance"]["self_supervised"] is False and run["train"]["allow_foreign_responses"]
    card = read_checkpoint(out).meta["card"]
    assert card["provenance"]["foreign_responses"] == {f"someone-else-7b (sha256 {'ab' * 6})": 4}
    # the data mix is recorded in the run config and the card (these rows record no source)
    assert run["mix"] == card["mix"] and run["mix"]["pairs"] == 4
    assert run["mix"]["sources"]["unrecorded"]["pairs"] == 4
    # its own answers train; the checkpoint records exactly its prompts, and continued training adds
    first = train(
        _options(tiny_dirs, _responses(tmp_path / "o.jsonl", own), tmp_path / "o"), show_progress=False
    )
    assert workbench.load(first).training_prompts == PromptFingerprint.from_texts(QUESTIONS[:4], ["o.jsonl"])
    more = [r | {"prompt": q} for r, q in zip(own, QUESTIONS[4:8], strict=True)]
    second = train(
        _options(tiny_dirs, _responses(tmp_path / "m.jsonl", more), tmp_path / "m", init_from=str(first)),
        show_progress=False,
    )
    assert (
        workbench.load(second).training_prompts.hashes == PromptFingerprint.from_texts(QUESTIONS[:8]).hashes
    )


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_training_leaves_the_in_memory_backbone_unchanged(tiny_dirs, tmp_path, precision) -> None:
    rows = [{"prompt": q, "response": f"An answer to {q}"} for q in QUESTIONS[:4]]
    cfg = _options(
        tiny_dirs,
        _responses(tmp_path / "r.jsonl", rows),
        tmp_path / "run",
        mixed_precision=precision,
        lr=0.05,
    )
    trainer = Trainer(cfg, show_progress=False)
    trainer.run()
    fresh = workbench.load(str(tiny_dirs["llama"]), untrained=True).backbone.model.state_dict()
    trained = trainer.model.backbone.model
    assert not any(p.requires_grad for p in trained.parameters())
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    for name, value in trained.state_dict().items():
        assert torch.equal(value, fresh[name].to(dtype)), name
    untrained = tiny_gen(
        tiny_dirs, teacher_dim=trainer.model.config.teacher_dim, num_thought=1, num_compress=2
    )
    assert not torch.equal(trainer.model.special.float(), untrained.special.float())  # the rows did train


def test_reconstruction_loss_matches_an_independent_computation(tiny_dirs) -> None:
    """Per example, unpadded: the decoder sees the soft prompts then the response (no query), and the
    state before each response token predicts it; EOS ends complete answers only."""
    gen = tiny_gen(tiny_dirs, num_thought=1, num_compress=2)
    tok = gen.tokenizer
    answers = ["a short one", "a rather longer answer that the cap will cut off somewhere " * 3]
    cap = len(tok(answers[0], add_special_tokens=False)["input_ids"]) + 2
    rows = response_tokens(tok, answers, cap, tok.eos_token_id)
    assert rows[0][-1] == tok.eos_token_id and rows[1][-1] != tok.eos_token_id and len(rows[1]) == cap
    soft = torch.randn(2, 2, gen.backbone.info.hidden_size) * 0.1
    from workbench.core.losses import pad_right

    batched = reconstruction_loss_sum(gen.traced, soft, pad_right(rows, tok.pad_token_id))
    model, embed = gen.backbone.model, gen.backbone.model.get_input_embeddings()
    total = torch.tensor(0.0)
    for i, ids in enumerate(rows):
        target = torch.tensor(ids)
        inputs = torch.cat([soft[i], embed(target[:-1])])[None]  # the last token predicts nothing
        logits = model(inputs_embeds=inputs).logits[0, 1:]  # from the last soft position on
        total = total + F.cross_entropy(logits.float(), target, reduction="sum")
    assert batched.item() == pytest.approx(total.item(), rel=1e-4)


def test_bootstrap_intervals_call_results_and_hints() -> None:
    ones, zeros = [1.0] * 40, [0.0] * 40
    clear = paired_difference(zeros, ones, lower_is_better=True)
    assert clear["diff"] == -1 and clear["diff_ci"] == [-1.0, -1.0] and clear["verdict"] == "result"
    assert clear["improvement"] == pytest.approx(1.0)  # 100% less harm
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(60, generator=g) < 0.5).float().tolist()
    b = a[1:] + a[:1]  # same rate, other queries: no real difference
    noise = paired_difference(a, b)
    assert noise["diff_ci"][0] < 0 < noise["diff_ci"][1] and noise["verdict"] == "hint"
    lo, hi = bootstrap_ci(a)
    assert lo < sum(a) / len(a) < hi and hi - lo < 0.35
    assert bootstrap_ci(a) == [lo, hi]  # seeded


def test_read_pairs_keeps_what_respond_recorded(tmp_path) -> None:
    path = _responses(
        tmp_path / "r.jsonl",
        [
            {"prompt": "p", "response": "r", "model": "m", "sha256": "s", "role": "train"},
            {"prompt": "q", "response": "s"},
        ],
    )
    pairs, _ = read_pairs(path)
    assert (pairs[0].model, pairs[0].sha256, pairs[0].role) == ("m", "s", "train")
    assert (pairs[1].model, pairs[1].role) == (None, None)


def _overlap_records(path: Path) -> list[dict]:
    data = json.loads(path.read_text(encoding="utf-8"))
    record = data.get("overlap", data.get("meta", {}).get("overlap"))
    assert record is not None, f"{path.name} records no overlap check"
    return list(record.values()) if "checked" not in record else [record]


@pytest.mark.parametrize(
    "name",
    [
        *sorted(p.name for p in (Path(__file__).resolve().parents[1] / "figures" / "eval").glob("*.json")),
        "../figure1.json",
        "../figure1-qwen2.5-coder-0.5b.json",
        "../lens_table.json",
    ],
)
def test_committed_reports_ran_on_no_training_prompt(name: str) -> None:
    path = Path(__file__).resolve().parents[1] / "figures" / "eval" / name
    for record in _overlap_records(path):
        assert record["checked"] and record["overlap"] == 0, f"{name}: {record}"


MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:root|home|tmp|work|Users)/")


def test_committed_artefacts_name_no_machine_path() -> None:
    """Reports, figures, cards, benchmark results and notebooks record repository-relative or
    redacted paths, never a folder of the machine that made them."""
    root = Path(__file__).resolve().parents[1]
    folders = ("figures", "workbench/checkpoints", "benchmarks/results", "notebooks")
    suffixes = {".json", ".html", ".md", ".ipynb", ".jsonl", ".txt", ".yaml"}
    found = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*")):
            if path.suffix in suffixes and path.is_file() and path.name != "plotly.min.js":
                for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                    if MACHINE_PATH.search(line):
                        found.append(f"{path.relative_to(root)}:{n}")
    assert not found, f"machine paths in committed artefacts: {found[:10]}"
