"""Output paths and disk errors: one line (``error: ... Fix: ...``), exit 1, nothing half-made left behind.

The read-only and full-disk cases run for real on tmpfs mounts where the tests run as root and may
mount; elsewhere they are simulated with the OSError the kernel would raise.
"""

from __future__ import annotations

import errno
import io
import os
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from conftest import tiny_gen

from workbench.cli import main
from workbench.core.errors import WorkbenchError, forget_outputs, from_os_error
from workbench.core.paths import check_output


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and " Fix: " in lines[0], err
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------------------- the translation
@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.EROFS, "read-only"),
        (errno.ENOSPC, "no space left"),
        (errno.EISDIR, "is a folder where a file is expected"),
        (errno.ENOTDIR, "a file where a folder is expected"),
        (errno.EEXIST, "already exists and is not a folder"),
        (errno.EACCES, "permission denied"),
        (errno.ENOENT, "cannot be created"),
        (errno.EDQUOT, "quota"),
        (errno.ENAMETOOLONG, "too long"),
        (errno.EXDEV, "Invalid cross-device link"),  # any other errno: its own words
    ],
)
def test_os_errors_become_one_line_with_a_fix(code, words) -> None:
    err = from_os_error(OSError(code, os.strerror(code), "/data/out.json"))
    assert isinstance(err, WorkbenchError) and words in str(err) and "/data/out.json" in str(err)
    assert err.fix and "\n" not in str(err)


def test_library_wrapped_disk_errors_are_recognised() -> None:
    rust = Exception("No space left on device (os error 28)")  # tokenizers' save
    assert "no space left" in str(from_os_error(rust))
    assert "read-only" in str(from_os_error(Exception("Read-only file system (os error 30)")))
    torch_full = RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")
    assert "disk is probably full" in str(from_os_error(torch_full))
    wrapped = RuntimeError("saving failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device", "/x")
    assert "no space left" in str(from_os_error(wrapped))
    assert from_os_error(ValueError("a bug")) is None
    assert from_os_error(OSError("no errno")) is None


def test_a_disk_error_without_a_path_names_the_checked_output(tmp_path) -> None:
    forget_outputs()
    rust = Exception("No space left on device (os error 28)")
    assert str(from_os_error(rust)).startswith("cannot write the output: no space left")
    check_output(tmp_path / "out.json", "--out")
    assert str(from_os_error(rust)).startswith(f"cannot write {tmp_path / 'out.json'}: no space left")
    forget_outputs()


def test_main_prints_one_line_for_an_os_error_and_keeps_tracebacks_of_bugs(monkeypatch) -> None:
    import workbench.store.convert as convert

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/mnt/small/out/config.json")

    monkeypatch.setattr(convert, "export_checkpoint", full)
    code, _, err = run("export", "src", "/tmp/anywhere")
    assert code == 1
    assert one_error_line(err).startswith("error: cannot write /mnt/small/out/config.json: no space left")

    def bug(*args, **kwargs):
        raise KeyError("a bug keeps its traceback")

    monkeypatch.setattr(convert, "export_checkpoint", bug)
    with pytest.raises(KeyError):
        run("export", "src", "/tmp/anywhere")


# ----------------------------------------------------------------------------- up-front checks
def test_check_output_refuses_wrong_kinds_and_unwritable_places(tmp_path, monkeypatch) -> None:
    folder, file = tmp_path / "folder", tmp_path / "file.txt"
    folder.mkdir()
    file.write_text("x")
    with pytest.raises(WorkbenchError, match="is a folder, not a file"):
        check_output(folder, "--out")
    with pytest.raises(WorkbenchError, match="is a file, not a folder"):
        check_output(file, "--out", folder=True)
    with pytest.raises(WorkbenchError, match=r"file.txt is a file, not a folder"):
        check_output(file / "sub" / "x.json", "--out")
    with pytest.raises(WorkbenchError, match="takes no new files"):
        check_output("/proc/workbench-test/out.json", "--out")
    with pytest.raises(WorkbenchError, match="too long"):
        check_output(tmp_path / ("n" * 300), "--out")
    assert (
        check_output(tmp_path / "new" / "deeper" / "x.json", "--out")
        == tmp_path / "new" / "deeper" / "x.json"
    )
    assert not (tmp_path / "new").exists() and sorted(os.listdir(tmp_path)) == ["file.txt", "folder"]

    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(WorkbenchError, match=r"cannot write .*x.json: the file system is read-only"):
        check_output(tmp_path / "x.json", "--out")


COMMANDS = {  # every command that writes, with its output at {out}; all fail before a model loads
    "export": ["export", "{src}", "{out}"],
    "train": ["train", "--responses", "{src}", "--out", "{out}"],
    "respond": ["respond", "--prompts", "{src}", "--out", "{out}"],
    "encode": ["encode", "q", "--save", "{out}"],
    "lens --out": ["lens", "q", "--out", "{out}"],
    "lens --html": ["lens", "q", "--html", "{out}"],
    "lens --png": ["lens", "q", "--png", "{out}"],
    "map": ["map", "--out", "{out}"],
    "eval safety": ["eval", "safety", "--out", "{out}"],
    "eval reasoning": ["eval", "reasoning", "--out", "{out}"],
    "eval mteb": ["eval", "mteb", "--out", "{out}"],
    "quality": ["quality", "{src}", "--heldout", "{src}", "--train-responses", "{src}", "--out", "{out}"],
    "latent-lens build": ["latent-lens", "build", "--responses", "{src}", "--out", "{out}"],
    "lens-index build": ["lens-index", "build", "--responses", "{src}", "--out", "{out}"],
}
FOLDER_OUTPUTS = {"export", "train", "eval safety", "eval reasoning", "eval mteb", "latent-lens build"}
FOLDER_OUTPUTS |= {"lens-index build"}


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails the test: the checks must come first."""
    import workbench.core.backbone as backbone

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the output path was checked")

    monkeypatch.setattr(backbone, "_from_folder", refuse)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_writing_command_checks_its_output_first(name, tmp_path, no_model) -> None:
    src = tmp_path / "src.jsonl"
    src.write_text('{"prompt": "p", "response": "r"}\n')
    parent_is_file = tmp_path / "a-file"
    parent_is_file.write_text("x")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    wrong_kind = parent_is_file if name in FOLDER_OUTPUTS else folder
    if name == "map":  # --out is a stem: STEM.json must not be a folder
        (tmp_path / "stem.json").mkdir()
        wrong_kind = tmp_path / "stem"
    for out, words in (
        (wrong_kind, "is a file, not a folder" if wrong_kind == parent_is_file else "is a folder"),
        (parent_is_file / "sub" / "out.x", "a-file is a file, not a folder"),
        ("/proc/workbench-test/out.x", "takes no new files"),
    ):
        before = sorted(os.listdir(tmp_path))
        argv = [a.format(src=src, out=out) for a in COMMANDS[name]]
        code, _, err = run(*argv)
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert code == 1 and len(lines) == 1 and words in lines[0], (argv, err)
        assert "Traceback" not in err
        assert sorted(os.listdir(tmp_path)) == before  # nothing made


# ----------------------------------------------------------------------------- nothing half-made
def test_failed_export_removes_the_folders_it_made_and_only_those(tiny_dirs, tmp_path, monkeypatch) -> None:
    import workbench.store.official.export as official

    source = tiny_gen(tiny_dirs, teacher="self", teacher_dim=64).save(tmp_path / "ck")
    real_save = official._save_head

    def full(file, *args):
        real_save(file, *args)
        raise OSError(errno.ENOSPC, "No space left on device", str(file))

    monkeypatch.setattr(official, "_save_head", full)
    target = tmp_path / "new" / "deeper" / "export"
    code, _, err = run("export", source, target)
    assert code == 1 and "no space left" in one_error_line(err)
    assert not (tmp_path / "new").exists()

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    code, _, err = run("export", source, kept / "export")
    assert code == 1 and sorted(os.listdir(kept)) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run("export", source, empty, "--format", "workbench")
    assert code == 0  # a workbench export into an existing empty folder: fine

    def read_only(path, write):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr("workbench.store.checkpoint.atomic_write", read_only)
    code, _, err = run("export", source, empty / "again", "--format", "workbench")
    assert code == 1 and "read-only" in one_error_line(err) and not (empty / "again").exists()


def test_failed_train_leaves_no_folder_it_made(tiny_dirs, tmp_path, monkeypatch) -> None:
    import workbench.train.trainer as trainer

    responses = tmp_path / "r.jsonl"
    responses.write_text('{"prompt": "Why?", "response": "Because."}\n' * 4)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "x"))

    monkeypatch.setattr(trainer, "write_teacher_cache", full)
    common = ["--responses", responses, "--model", tiny_dirs["llama"], "--teacher", "self", "--quiet"]
    code, _, err = run("train", *common, "--out", tmp_path / "run" / "deep")
    assert code == 1 and "no space left" in one_error_line(err)
    assert not (tmp_path / "run").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    code, _, err = run("train", *common, "--out", existing)
    assert code == 1 and existing.is_dir()  # it was there before: kept


# ----------------------------------------------------------------------------- real mounts
def _mount(path: Path, options: str) -> bool:
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return proc.returncode == 0


@pytest.fixture
def mounts(tmp_path):
    """A read-only tmpfs and an 8 KiB one (root only, where mount works); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    ro, small = tmp_path / "ro", tmp_path / "small"
    if not _mount(ro, "ro,size=64k"):
        pytest.skip("mount is not permitted here")
    try:
        if not _mount(small, "size=8k"):
            pytest.skip("mount is not permitted here")
        yield ro, small
    finally:
        for path in (ro, small):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(path)], capture_output=True)  # still busy


def test_read_only_and_full_tmpfs_for_real(tiny_dirs, tmp_path, mounts) -> None:
    ro, small = mounts
    source = tiny_gen(tiny_dirs, teacher="self", teacher_dim=64).save(tmp_path / "ck")
    code, _, err = run("export", source, ro / "out")
    assert code == 1 and "read-only" in one_error_line(err)
    code, _, err = run("encode", "q", "--save", ro / "e.safetensors", "-m", tiny_dirs["llama"])
    assert code == 1 and "read-only" in one_error_line(err)
    code, _, err = run("export", source, small / "out")
    assert code == 1 and "no space left" in one_error_line(err)
    assert os.listdir(small) == []  # no build folder, no output folder
    responses = tmp_path / "r.jsonl"
    responses.write_text('{"prompt": "Why?", "response": "Because."}\n' * 4)
    code, _, err = run(
        "train", "--responses", responses, "--model", tiny_dirs["llama"], "--teacher", "self",
        "--out", small / "run", "--max-steps", "1", "--batch-size", "2", "--quiet",
    )  # fmt: skip
    assert code == 1 and "no space left" in one_error_line(err)
    assert os.listdir(small) == []
