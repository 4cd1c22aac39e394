"""``eval mteb`` writes mteb's own result files, and mteb's own loaders read them back.

The offline tasks run through ``mteb.evaluate`` on a tiny model; then ``mteb.ResultCache`` loads
the results with the model's name and revision, ``mteb.get_model_meta`` finds a complete
``ModelMeta``, and ``mteb.get_model`` loads the same encoder again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not (DATA / "gsm8k").is_dir(), reason="../shared/data is not here")
COMPLETE = (
    "name", "revision", "release_date", "n_parameters", "memory_usage_mb", "embed_dim", "max_tokens",
    "license", "similarity_fn_name", "use_instructions", "public_training_code", "loader",
)  # fmt: skip


def test_results_load_back_with_mteb(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    mteb = pytest.importorskip("mteb")
    from mteb.results import TaskResult

    import workbench
    from workbench.eval.mteb_tasks import run_mteb

    model = str(tiny_dirs["llama"])
    gen = workbench.load(model, untrained=True)
    report = run_mteb(
        gen, model_name=model, results_dir=tmp_path / "mteb", encoders="gen,llm-mean", limit=6,
        data_dir=DATA, offline="gsm8k", cache_dir=tmp_path / "cache", release_date="2026-11-30",
    )  # fmt: skip
    assert not report.payload["errors"]
    cache = mteb.ResultCache(tmp_path / "mteb")
    for encoder in ("gen", "llm-mean"):
        named = report.payload["mteb_models"][encoder]
        name, revision = named["name"], named["revision"]
        folder = tmp_path / "mteb" / "results" / name.replace("/", "__") / revision
        assert {"WorkbenchGSM8K.json", "model_meta.json"} <= {p.name for p in folder.iterdir()}
        assert TaskResult.from_disk(folder / "WorkbenchGSM8K.json").task_name == "WorkbenchGSM8K"

        loaded = cache.load_results(models=[name], include_remote=False)
        (result,) = loaded.model_results
        assert (result.model_name, result.model_revision) == (name, revision)
        (task,) = result.task_results
        assert task.get_score() == pytest.approx(report.metrics[encoder]["WorkbenchGSM8K"])
        dim = gen.config.teacher_dim if encoder == "gen" else gen.backbone.info.hidden_size
        assert result.model_meta is not None and result.model_meta.embed_dim == dim

        meta = mteb.get_model_meta(name, revision)
        wanted = COMPLETE if encoder == "gen" else COMPLETE[:-2]  # a frozen LLM's training code is unknown
        missing = [field for field in wanted if getattr(meta, field) in (None, "")]
        assert not missing, f"{encoder}: {missing}"
        assert meta.release_date == "2026-11-30" and meta.similarity_fn_name == "cosine"
    gen_meta = mteb.get_model_meta(report.payload["mteb_models"]["gen"]["name"])
    assert gen_meta.use_instructions and gen_meta.training_datasets == set()  # untrained rows

    again = mteb.get_model(gen_meta.name, gen_meta.revision)  # mteb loads the encoder itself
    assert again.mteb_model_meta.revision == gen_meta.revision and again.encoder == "gen"


def test_offline_tasks_hold_no_training_prompt(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    """GSM8K leaves out the checkpoint's training questions before the limit; TheoremQA refuses them."""
    import json

    pytest.importorskip("mteb")
    import workbench
    from workbench.core.errors import WorkbenchError
    from workbench.core.fingerprint import PromptFingerprint
    from workbench.eval.mteb_tasks import run_mteb

    gen = workbench.load(str(tiny_dirs["llama"]), untrained=True)
    lines = (DATA / "gsm8k" / "train.jsonl").read_text().splitlines()
    gen.training_prompts = PromptFingerprint.from_texts([json.loads(x)["question"] for x in lines[:3]])
    options = {"results_dir": tmp_path / "mteb", "encoders": "gen", "data_dir": DATA, "use_cache": False}
    report = run_mteb(gen, limit=4, offline="gsm8k", **options)
    (record,) = report.payload["overlap"].values()
    assert record["overlap"] == 0 and record["left_out_training_prompts"] == 3
    theorem = json.loads((DATA / "theoremqa" / "theoremqa_test.json").read_text())[0]["Question"]
    gen.training_prompts = PromptFingerprint.from_texts([theorem])
    with pytest.raises(WorkbenchError, match="1 of 2 theoremqa"):
        run_mteb(gen, limit=2, offline="theoremqa-theorems", **options)
    allowed = run_mteb(gen, limit=2, offline="theoremqa-theorems", allow_overlap=True, **options)
    assert next(iter(allowed.payload["overlap"].values()))["overlap"] == 1
