"""The layered package: extension points, old flat module paths, a cheap ``import workbench``."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys

import pytest

import workbench
from workbench._moved import MOVED
from workbench.core.errors import WorkbenchError
from workbench.core.extensions import extension


def test_extension_points_name_the_higher_layer_functions() -> None:
    from workbench.lens.logit import lens_with_options
    from workbench.store.checkpoint import save_checkpoint

    assert extension("save_checkpoint") is save_checkpoint
    assert extension("lens") is lens_with_options


def test_unknown_extension_point_is_one_clear_error() -> None:
    with pytest.raises(WorkbenchError, match="no provider for 'nope'"):
        extension("nope")


def test_every_old_module_path_has_a_new_home() -> None:
    for old, new in MOVED.items():
        assert importlib.util.find_spec(f"workbench.{old}") is not None, old
        assert importlib.util.find_spec(f"workbench.{new}") is not None, f"{old} -> {new}"


@pytest.mark.parametrize(("old", "name"), [("model", "LLM2VecGen"), ("eval_safety", "evaluate_safety")])
def test_old_module_path_warns_and_gives_the_same_objects(old: str, name: str) -> None:
    sys.modules.pop(f"workbench.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"workbench.{old} moved to workbench.{MOVED[old]}"):
        module = importlib.import_module(f"workbench.{old}")
    new = importlib.import_module(f"workbench.{MOVED[old]}")
    assert getattr(module, name) is getattr(new, name)


def test_packages_that_replaced_modules_keep_their_names() -> None:
    import workbench.cli
    import workbench.lens

    assert callable(workbench.cli.main)
    assert workbench.lens.logit_lens is workbench.logit_lens
    assert workbench.lens.LensConfig is workbench.LensConfig


def test_import_workbench_does_not_load_torch() -> None:
    code = "import sys, workbench; print('torch' in sys.modules, workbench.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", workbench.__version__]
