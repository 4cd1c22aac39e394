"""A latent-lens index from the LLM's own responses: a responses file, or prompts it answers first.

What ``workbench latent-lens build`` does. ``--responses`` reads a ``workbench respond`` file (or a
.txt file); ``--prompts`` first lets the frozen LLM answer a prompt source through a resumable cache
beside the default index (evaluation queries refused unless ``force``), as ``workbench respond``
does. The index itself is :func:`workbench.lens.latent.build_latent_index`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import WorkbenchError
from ..lens.latent_build import build_latent_index
from ..lens.latent_index import LatentIndex, default_index_path, folder_name

if TYPE_CHECKING:
    from ..core.model import LLM2VecGen

DEFAULT_PROMPTS = 200


@dataclass
class LatentLensSource:
    """Where the indexed responses come from and how the index is built."""

    model: str
    responses: Path | None = None
    """A responses file written by ``workbench respond`` (.jsonl) or a .txt file."""
    field: str = "response"
    prompts: str | None = None
    """Or: a prompt source (``nq-open``, a file, ``hf:id``) the LLM answers first."""
    prompt_field: str | None = None
    limit: int | None = None
    """Prompts to answer (default :data:`DEFAULT_PROMPTS`) or responses to use (default all)."""
    data_dir: Path | None = None
    max_new_tokens: int = 64
    out: Path | None = None
    """Index folder (default: :func:`workbench.lens.latent.default_index_path`)."""
    max_tokens_per_text: int = 64
    layer: int | None = None
    batch_size: int = 16
    force: bool = False
    quiet: bool = False


@dataclass
class BuiltIndex:
    """An index as written: where, how large on disk, how long the build took."""

    index: LatentIndex
    path: Path
    bytes: int
    seconds: float


def check_source(source: LatentLensSource) -> None:
    """Exactly one of ``responses`` and ``prompts``."""
    if (source.responses is None) == (source.prompts is None):
        raise WorkbenchError(
            "name exactly one source of responses",
            "pass --responses FILE (from `workbench respond`) or --prompts SOURCE --limit N",
        )


def answer_prompts(gen: LLM2VecGen, source: LatentLensSource) -> tuple[list[str], Path]:
    """The LLM's non-empty answers to the first ``limit`` prompts of ``source.prompts``, through a
    resumable cache beside the default index; returns them and the cache file."""
    from .prompts import load_prompts
    from .responding import read_done, respond

    assert source.prompts is not None
    prompts = load_prompts(
        source.prompts,
        field=source.prompt_field,
        data=source.data_dir,
        limit=source.limit or DEFAULT_PROMPTS,
        force=source.force,
    )
    base = default_index_path(gen)
    name = f"{base.name}-{folder_name(source.prompts, 'prompts', always_hash=True)}"
    cache = base.parent / "responses" / f"{name}-{source.max_new_tokens}tok.jsonl"
    respond(
        gen.backbone,
        prompts,
        cache,
        batch_size=source.batch_size,
        max_new_tokens=source.max_new_tokens,
        show_progress=not source.quiet,
    )
    done, _ = read_done(cache)
    by_text = {row["prompt"]: row for row in done.values()}
    rows = [done.get(p.id) or by_text.get(p.text) for p in prompts]
    answers = [
        r["response"] for r in rows if r and isinstance(r.get("response"), str) and r["response"].strip()
    ]
    if not answers:
        raise WorkbenchError(
            f"{gen.backbone.info.name} gave only empty answers to {source.prompts} (cached in {cache})",
            "use another backbone or more --max-new-tokens (delete the cache to answer again)",
        )
    return answers, cache


def build_latent_lens_index(source: LatentLensSource) -> BuiltIndex:
    """Load ``source.model``, gather its responses, index them and write the index folder."""
    from ..store.loading import load
    from ..store.textio import read_texts

    check_source(source)
    gen = load(source.model)
    if source.responses is not None:
        texts = read_texts(source.responses, source.field)[: source.limit]  # None: all
        origin = str(source.responses)
    else:
        texts, cache = answer_prompts(gen, source)
        origin = f"{source.prompts} (answers cached in {cache})"
    target = source.out.expanduser() if source.out is not None else default_index_path(gen)
    started = time.perf_counter()
    index = build_latent_index(
        gen,
        texts,
        batch_size=source.batch_size,
        max_tokens_per_text=source.max_tokens_per_text,
        layer=source.layer,
        show_progress=not source.quiet,
    )
    seconds = time.perf_counter() - started
    index.meta |= {"source": origin, "build_seconds": round(seconds, 2)}
    index.save(target)
    size = sum(f.stat().st_size for f in target.iterdir() if f.is_file())
    return BuiltIndex(index, target, size, seconds)
