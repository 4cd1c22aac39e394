"""MTEB 2.x: an adapter implementing mteb's encoder protocol, the paper's instructions, offline tasks.

``MtebEncoder`` wraps one of the workbench encoders (``gen``, ``teacher``, ``llm-mean``,
``llm-last``) as an mteb ``EncoderProtocol`` with a ``ModelMeta``. For ``gen`` queries get the
task's instruction from ``workbench/data/mteb_instructions.yaml`` (the paper's per-task table) and
documents get "Summarize the following passage:"; the baselines embed raw text. The instruction
used for each task is recorded in ``instructions_used``. ``offline_task`` turns a workbench
:class:`~workbench.eval.reasoning.RetrievalTask` into an mteb retrieval task with local data, so
``mteb.evaluate`` runs with no network. :func:`run_mteb` is ``workbench eval mteb``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import WorkbenchError
from ..core.registry import BACKBONES
from ..train.prompts import data_dir as resolve_data
from .encoders import (
    ENCODERS,
    Encoders,
    ModelSource,
    comma_list,
    open_encoders,
    parse_encoders,
    resolve_model,
    run_metadata,
    weights_hash,
)
from .precomputed import attach_corpus_embeddings, corpus_config
from .reasoning import OFFLINE_TASKS, RetrievalTask, gsm8k_task, held_out_task, theoremqa_task
from .results import BarChart, EvalReport, Table

LITE_TASKS = (
    "ArguAna",
    "ClimateFEVERHardNegatives",
    "AskUbuntuDupQuestions",
    "ArXivHierarchicalClusteringP2P",
    "MedrxivClusteringP2P.v2",
    "SprintDuplicateQuestions",
    "Banking77Classification",
    "ImdbClassification",
    "BIOSSES",  # the official script loses these two to a missing comma ("BIOSSES" "STS17")
    "STS17",
)
"""The paper's lite MTEB(eng, v2) subset."""
OFFLINE_NAMES = {"theoremqa-theorems": "WorkbenchTheoremQATheorems", "gsm8k": "WorkbenchGSM8K"}


@cache
def instruction_table() -> dict[str, Any]:
    """The packaged instruction table (``document``, ``default``, ``by_type``, ``tasks``)."""
    import yaml

    text = resources.files("workbench").joinpath("data/mteb_instructions.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def query_instruction(task_name: str, task_type: str | None = None) -> str:
    """The instruction for a task's queries: by name, else by mteb task type, else the default."""
    table = instruction_table()
    return table["tasks"].get(task_name) or table["by_type"].get(task_type or "") or table["default"]


OFFICIAL_CODE = "https://github.com/McGill-NLP/llm2vec-gen"
"""The method's public training code (the workbench's trainer reimplements it; parity is tested)."""
PAPER = "https://arxiv.org/abs/2603.10913"
ORG = "llm2vec-gen-workbench"
"""The organisation part of the names this adapter gives its models in mteb."""
BACKBONE_LICENSES = dict.fromkeys(BACKBONES, "apache-2.0")  # SmolLM2 and Qwen2.5-Coder: Apache 2.0
"""Licences of the registry backbones (the workbench's own rows and heads are MIT); other backbones
are "not specified" (mteb's word for unknown)."""
SHIPPED_TRAINING = {name: {"NQ"} for name in BACKBONES}  # every shipped recipe answers NQ-open
"""mteb tasks whose data the shipped checkpoints saw: NQ-open questions are Natural Questions'."""
TEACHER_FACTS = (
    "n_parameters",
    "max_tokens",
    "license",
    "public_training_code",
    "public_training_data",
    "training_datasets",
)
"""What the teacher's meta takes from mteb's own record of that model."""


def mteb_model_name(gen: Any, encoder: str) -> str:
    """``llm2vec-gen-workbench/<backbone>-<encoder>``: the "organisation/model" form mteb expects."""
    slug = str(gen.backbone.info.name).replace("/", "-").strip("-.")[-60:]
    return f"{ORG}/{slug}-{encoder}"


def mteb_model_meta(
    gen: Any,
    encoder: str = "gen",
    *,
    model_name: str | None = None,
    source: str | None = None,
    checkpoint: str | None = None,
    release_date: str | None = None,
) -> Any:
    """A complete mteb ``ModelMeta`` for one workbench encoder of ``gen``.

    Name and revision: :func:`mteb_model_name`, and for ``gen`` the first 12 hex digits of its
    trainable weights' sha256 (the frozen baselines take the backbone's). ``release_date``
    defaults to today (UTC): the day this revision was evaluated. ``source`` (the model as
    :func:`workbench.load` takes it) and ``checkpoint`` become the loader's arguments, so
    ``mteb.get_model(name)`` loads the same encoder again once :func:`register_model_meta` ran.
    """
    import datetime

    from mteb.models.model_meta import ModelMeta, ScoringFunction

    from ..core.registry import BACKBONES, TEACHERS
    from .encoders import backbone_id

    info = gen.backbone.info
    backbone_name = str(info.name)
    hub_id = BACKBONES[backbone_name].hub_id if backbone_name in BACKBONES else backbone_name
    backbone_params = sum(p.numel() for p in gen.backbone.model.parameters())
    element = next(gen.backbone.model.parameters()).element_size()
    licence = BACKBONE_LICENSES.get(backbone_name, "not specified")
    trained = bool(gen.trained)
    shipped = source == backbone_name and checkpoint is None and trained
    meta: dict[str, Any] = {
        "n_parameters": backbone_params,
        "max_tokens": gen.config.max_length,
        "embed_dim": info.hidden_size,
        "license": licence,
        "public_training_code": None,
        "public_training_data": None,
        "training_datasets": None,
        "use_instructions": False,
        "adapted_from": hub_id,
        "reference": f"https://huggingface.co/{hub_id}" if hub_id.count("/") == 1 else None,
    }
    if encoder == "gen":
        trainable = sum(p.numel() for p in gen.parameters())
        meta |= {
            "n_parameters": backbone_params + trainable,
            "embed_dim": gen.config.teacher_dim,
            "public_training_code": OFFICIAL_CODE,
            "public_training_data": True if shipped else None,
            "training_datasets": set(SHIPPED_TRAINING.get(backbone_name, ())) if shipped else None,
            "use_instructions": True,
            "reference": PAPER,
        }
        if not trained:  # untrained rows: nothing was trained on anything
            meta |= {"public_training_data": None, "training_datasets": set()}
        revision = weights_hash(gen)[:12]
    elif encoder == "teacher":
        teacher = gen.config.teacher
        spec = TEACHERS.get(teacher)
        known = _registered_meta(spec.hub_id) if spec else None
        meta |= {
            "embed_dim": gen.load_teacher().dim,
            "use_instructions": False,
            "adapted_from": spec.hub_id if spec else teacher,
            "reference": f"https://huggingface.co/{spec.hub_id}" if spec else None,
        }
        if known is not None:  # mteb knows the teacher itself: take its facts
            meta |= {key: getattr(known, key) for key in TEACHER_FACTS}
            element = 4
        revision = "frozen"
    else:
        revision = backbone_id(gen).removeprefix("probe-")[:12]
    n_params = int(meta["n_parameters"] or 0)
    return ModelMeta(
        loader=load_mteb_model,
        loader_kwargs={
            "model": source or backbone_name,
            "checkpoint": checkpoint,
            "untrained": not trained,
            "encoder": encoder,
        },
        name=model_name or mteb_model_name(gen, encoder),
        revision=revision,
        release_date=release_date or datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        languages=["eng-Latn"],
        memory_usage_mb=round(n_params * element / 2**20, 1) if n_params else None,
        open_weights=True,
        framework=["PyTorch", "Transformers"],
        similarity_fn_name=ScoringFunction.COSINE,
        modalities=["text"],
        **meta,
    )


def _registered_meta(name: str) -> Any:
    """mteb's own ``ModelMeta`` for a model it knows (offline: its registry ships with it), or None."""
    import mteb

    try:
        return mteb.get_model_meta(name)
    except (KeyError, ValueError):
        return None


def register_model_meta(meta: Any) -> None:
    """Put ``meta`` into mteb's model registry, so ``mteb.get_model_meta(meta.name)`` and
    ``mteb.get_model`` find it in this process (mteb 2 has no public call for this; its registry is
    a dict of name to ``ModelMeta``)."""
    from mteb.models.model_implementations import MODEL_REGISTRY

    MODEL_REGISTRY[meta.name] = meta


def load_mteb_model(
    model_name: str,
    revision: str | None = None,
    *,
    model: str,
    encoder: str = "gen",
    checkpoint: str | None = None,
    untrained: bool = False,
    batch_size: int = 16,
    device: str | None = None,
    **_: Any,
) -> MtebEncoder:
    """The loader of :func:`mteb_model_meta`: loads the workbench model and wraps one encoder."""
    from ..store.loading import load

    gen = load(model, checkpoint=checkpoint, untrained=untrained)
    if device is not None:
        gen.to(device)
    adapter = MtebEncoder(
        open_encoders(gen, batch_size=batch_size),
        encoder,
        model_name=model_name,
        source=model,
        checkpoint=checkpoint,
    )
    if revision is not None and revision != adapter.mteb_model_meta.revision:
        raise WorkbenchError(
            f"{model_name} loads as revision {adapter.mteb_model_meta.revision}, not {revision}",
            "load the checkpoint that revision was evaluated with",
        )
    return adapter


class MtebEncoder:
    """An mteb 2.x ``EncoderProtocol`` over one workbench encoder (embeddings cached on disk).

    Its ``mteb_model_meta`` (:func:`mteb_model_meta`) is registered with mteb, so the results mteb
    writes can be loaded with ``mteb.ResultCache(...).load_results`` and the model found with
    ``mteb.get_model_meta`` and ``mteb.get_model``.
    """

    def __init__(
        self,
        encoders: Encoders,
        encoder: str = "gen",
        *,
        model_name: str | None = None,
        source: str | None = None,
        checkpoint: str | None = None,
        release_date: str | None = None,
    ) -> None:
        self.encoders = encoders
        self.encoder = encoder
        self.instructions_used: dict[str, dict[str, str | None]] = {}
        self.mteb_model_meta = mteb_model_meta(
            encoders.gen,
            encoder,
            model_name=model_name,
            source=source,
            checkpoint=checkpoint,
            release_date=release_date,
        )
        register_model_meta(self.mteb_model_meta)

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embed every text of the mteb DataLoader, with the task's instruction for ``gen``."""
        texts = [str(t) for batch in inputs for t in batch["text"]]
        role = getattr(prompt_type, "value", prompt_type) or "query"
        instruction = None
        if self.encoder == "gen":
            instruction = (
                instruction_table()["document"]
                if role == "document"
                else query_instruction(task_metadata.name, task_metadata.type)
            )
        self.instructions_used.setdefault(task_metadata.name, {})[role] = instruction
        if not texts:
            return np.zeros((0, int(self.mteb_model_meta.embed_dim or 0)), dtype=np.float32)
        return self.encoders.embed(self.encoder, texts, instruction).numpy()

    @staticmethod
    def similarity(embeddings1: Any, embeddings2: Any) -> torch.Tensor:
        """Cosine similarity matrix."""
        a = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings1)).float(), dim=-1)
        b = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings2)).float(), dim=-1)
        return a @ b.T

    @staticmethod
    def similarity_pairwise(embeddings1: Any, embeddings2: Any) -> torch.Tensor:
        """Cosine similarity of matching rows."""
        a = torch.as_tensor(np.asarray(embeddings1)).float()
        b = torch.as_tensor(np.asarray(embeddings2)).float()
        return torch.nn.functional.cosine_similarity(a, b, dim=-1)


def offline_task(task: RetrievalTask) -> Any:
    """An mteb retrieval task (nDCG@10 main score) over a workbench task's local data."""
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata

    name = OFFLINE_NAMES.get(task.name, f"Workbench{task.name.title().replace('-', '').replace('_', '')}")
    metadata = TaskMetadata(
        name=name,
        description=f"workbench offline retrieval task {task.name} (local files; workbench.eval.reasoning)",
        reference="https://github.com/embeddings-benchmark/mteb",
        dataset={"path": f"local/{task.name}", "revision": "local"},
        type="Retrieval",
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score="ndcg_at_10",
        date=("2021-01-01", "2021-12-31"),
        domains=["Academic"],
        task_subtypes=[],
        license="mit",
        annotations_creators="derived",
        dialect=[],
        sample_creation="found",
        bibtex_citation="",
    )

    def load_data(self: Any, num_proc: int | None = None, **kwargs: Any) -> None:
        split = RetrievalSplitData(
            queries=Dataset.from_list([{"id": q, "text": t} for q, t in task.queries.items()]),
            corpus=Dataset.from_list([{"id": d, "text": t, "title": ""} for d, t in task.corpus.items()]),
            relevant_docs={q: dict(rel) for q, rel in task.qrels.items()},
            top_ranked=None,
        )
        self.dataset = {"default": {"test": split}}
        self.data_loaded = True

    cls = type(name, (AbsTaskRetrieval,), {"metadata": metadata, "load_data": load_data})
    return cls()


def resolve_tasks(tasks: list[str] | None, benchmark: str | None, lite: bool) -> list[Any]:
    """mteb task objects for names, a benchmark, or the lite set (task metadata ships with mteb)."""
    import mteb

    try:
        if benchmark:
            return list(mteb.get_benchmark(benchmark).tasks)
        if lite:  # the benchmark's own task objects (English subsets, as in MTEB(eng, v2))
            return [t for t in mteb.get_benchmark("MTEB(eng, v2)").tasks if t.metadata.name in LITE_TASKS]
        return list(mteb.get_tasks(tasks=list(tasks), languages=["eng"])) if tasks else []
    except (KeyError, ValueError) as err:
        raise WorkbenchError(f"mteb does not know {benchmark or tasks} ({err})", "check the names") from err


def score_of(result: Any) -> dict[str, float]:
    """Main score per task of an mteb ``ModelResult`` (first split and subset)."""
    out = {}
    for task_result in result.task_results:
        split = next(iter(task_result.scores.values()))
        out[task_result.task_name] = float(split[0]["main_score"])
    return out


def run_mteb(
    gen: ModelSource,
    *,
    model_name: str | None = None,
    checkpoint: Path | None = None,
    results_dir: Path = Path("results/mteb"),
    encoders: str | Sequence[str] = ENCODERS,
    limit: int | None = None,
    batch_size: int = 16,
    data_dir: str | Path | None = None,
    tasks: str | Sequence[str] | None = None,
    benchmark: str | None = None,
    lite: bool = False,
    offline: str | Sequence[str] = OFFLINE_TASKS,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    corpus_embeddings: Sequence[str | Path] = (),
    release_date: str | None = None,
    allow_overlap: bool = False,
) -> EvalReport:
    """``mteb.evaluate`` per encoder and task (main scores); mteb writes its own results to ``results_dir``.

    mteb's own files: ``results_dir/results/<organisation>__<model>/<revision>/<task>.json`` and
    ``model_meta.json`` beside them (:func:`mteb_model_meta`), which ``mteb.ResultCache(results_dir)
    .load_results(...)`` reads back; the payload's ``mteb_models`` names each encoder's model and
    revision.

    ``offline`` names workbench tasks run as custom mteb tasks (``limit`` applies to them);
    ``tasks``, ``benchmark`` and ``lite`` pick mteb's own tasks (their data comes from the hub).
    Tasks that fail are listed under the payload's ``errors``; ``gen`` is the model or a loader.
    Offline tasks hold no query the checkpoint trained on: GSM8K leaves them out before ``limit``,
    TheoremQA refuses them unless ``allow_overlap``; the payload's ``overlap`` records each.
    """
    import mteb

    start = time.perf_counter()
    root = resolve_data(data_dir)
    wanted_offline = comma_list(offline)
    bad = [t for t in wanted_offline if t not in OFFLINE_TASKS]
    if bad:
        raise WorkbenchError(f"unknown offline task(s) {', '.join(bad)}", f"use {', '.join(OFFLINE_TASKS)}")
    builders = {"theoremqa-theorems": theoremqa_task, "gsm8k": gsm8k_task}
    model = resolve_model(gen)
    task_objs, overlap = [], {}
    for name in wanted_offline:
        task = builders[name](root, None)
        if limit is not None and not task.notes.get("drop_training_prompts"):
            task = task.subset(list(task.queries)[:limit])
        task, record = held_out_task(model, task, limit, allow_overlap)
        left_out = task.notes.get("left_out_training_prompts")
        if left_out is not None:
            record = record | {"left_out_training_prompts": left_out}
        overlap[task.name] = record
        task_objs.append(offline_task(task))
    names_given = None
    if tasks:
        names_given = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks)]
    task_objs += resolve_tasks(names_given, benchmark, lite)
    if not task_objs:
        raise WorkbenchError("no task to run", "pass --tasks, --benchmark, --lite or --offline")
    names = parse_encoders(encoders)
    enc = open_encoders(model, batch_size=batch_size, cache_dir=cache_dir, use_cache=use_cache)
    attach_corpus_embeddings(enc, corpus_embeddings)
    enc.planned = tuple(names)
    scores: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    used: dict[str, Any] = {}
    models: dict[str, dict[str, str | None]] = {}
    for name in names:
        adapter = MtebEncoder(
            enc,
            name,
            source=model_name,
            checkpoint=str(checkpoint) if checkpoint is not None else None,
            release_date=release_date,
        )
        scores[name] = {}
        for task in task_objs:
            try:
                res = mteb.evaluate(
                    adapter,
                    task,
                    cache=mteb.ResultCache(results_dir),
                    overwrite_strategy="always",
                    encode_kwargs={"batch_size": batch_size},
                )
                scores[name] |= score_of(res)
            except Exception as err:  # mteb data loading fails in many ways offline
                errors[f"{name}/{task.metadata.name}"] = f"{type(err).__name__}: {str(err)[:200]}"
        used[name] = adapter.instructions_used
        models[name] = {"name": adapter.mteb_model_meta.name, "revision": adapter.mteb_model_meta.revision}
    if not any(scores.values()):
        first = next(iter(errors.values()), "")
        raise WorkbenchError(
            f"no mteb task ran ({first})", "be online for mteb's own tasks, or use --offline"
        )
    payload: dict[str, Any] = {
        "kind": "mteb",
        "config": run_metadata(
            model,
            model_name or str(model.backbone.info.name),
            checkpoint,
            enc,
            **corpus_config(enc),
            encoders=names,
            limit=limit,
            tasks=names_given,
            benchmark=benchmark,
            lite=lite,
            offline=wanted_offline,
            mteb_results=str(results_dir),
        ),
        "instructions": used,
        "mteb_models": models,
        "metrics": scores,
        "errors": errors,
        "overlap": overlap,
        "encode_seconds": enc.seconds,
    }
    payload["wall_time_s"] = time.perf_counter() - start
    payload["embedding_cache"] = enc.cache_summary()
    task_names = sorted({t for s in scores.values() for t in s})
    rows = [{"task": t, **{n: scores[n].get(t, float("nan")) for n in names}} for t in task_names]
    chart = BarChart("MTEB main score per task", {n: scores[n] for n in names}, "task", "main score")
    tables = {f"MTEB main scores (results in {results_dir})": Table(rows, ["task", *names])}
    return EvalReport("mteb", payload, tables, {"main-score": chart})
