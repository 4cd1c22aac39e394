"""``workbench figures``: rerun the registered analyses whose inputs changed since their last run.

The registry (``analyses/figures.yaml``) lists each analysis with its script, arguments, inputs
(repository-relative files or globs; ``$DATA/`` names a file of the public data folder) and
outputs. A stamp is the sha256 over the script path, the arguments and every input file's name
and content; stamps live in ``figures/.stamps.json``. An entry whose stamp matches and whose
outputs all exist is skipped; any other runs as ``python <script> <args>`` from the repository
root, and only a successful run records its new stamp.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import WorkbenchError
from ..core.hashing import sha256_file
from ..store.atomic import atomic_write

DATA_PREFIX = "$DATA/"
STATES = ("up to date", "stale", "missing outputs", "not available")
_KEYS = {"name", "script", "args", "inputs", "outputs", "expensive", "data_dir", "description"}


@dataclass(frozen=True)
class Entry:
    """One registered analysis."""

    name: str
    script: str
    args: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    expensive: bool = False
    data_dir: bool | None = None  # pass --data-dir; None: when the script mentions the option
    description: str = ""

    def takes_data_dir(self, root: Path) -> bool:
        if self.data_dir is not None:
            return self.data_dir
        script = root / self.script
        return script.is_file() and '"--data-dir"' in script.read_text(encoding="utf-8")


@dataclass
class Plan:
    """Where a run works: repository root, registry, stamps file and data folder."""

    root: Path
    registry: Path
    stamps: Path
    data: Path
    data_arg: Path | None = None  # passed on to the scripts only when the user gave it
    common_inputs: tuple[str, ...] = ()
    entries: list[Entry] = field(default_factory=list)


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise WorkbenchError(f"{what} must be a list of strings", "fix the figures registry")
    return tuple(str(v) for v in value)


def load_registry(path: Path) -> tuple[tuple[str, ...], list[Entry]]:
    """The registry's common inputs and entries; a malformed file raises a one-line error."""
    import yaml

    if not path.is_file():
        raise WorkbenchError(f"no figures registry at {path}", "run from a source checkout of the workbench")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise WorkbenchError(f"{path} is not valid YAML ({err})", "fix the figures registry") from err
    if not isinstance(raw, dict) or not isinstance(raw.get("figures"), list):
        raise WorkbenchError(f"{path} has no 'figures' list", "see analyses/README.md")
    entries: list[Entry] = []
    for i, item in enumerate(raw["figures"]):
        if not isinstance(item, dict) or not item.get("name") or not item.get("script"):
            raise WorkbenchError(f"{path}: entry {i + 1} needs a name and a script", "fix the registry")
        name = str(item["name"])
        unknown = set(item) - _KEYS
        if unknown:
            raise WorkbenchError(f"{path}: {name} has unknown key(s) {', '.join(sorted(unknown))}", "")
        entries.append(
            Entry(
                name=name,
                script=str(item["script"]),
                args=_strings(item.get("args"), f"{name}.args"),
                inputs=_strings(item.get("inputs"), f"{name}.inputs"),
                outputs=_strings(item.get("outputs"), f"{name}.outputs"),
                expensive=bool(item.get("expensive", False)),
                data_dir=item.get("data_dir"),
                description=str(item.get("description", "")),
            )
        )
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise WorkbenchError(f"{path}: duplicate figure name(s) {', '.join(dupes)}", "fix the registry")
    return _strings(raw.get("common_inputs"), "common_inputs"), entries


def make_plan(
    registry: Path | None = None,
    root: Path | None = None,
    data_dir: Path | None = None,
    stamps: Path | None = None,
) -> Plan:
    """Resolve the paths of a run (defaults: this checkout, its analyses/ and figures/)."""
    root = Path(root or Path(__file__).resolve().parents[2]).resolve()
    registry = Path(registry or root / "analyses" / "figures.yaml")
    if data_dir is not None:
        data = Path(data_dir).expanduser().resolve()
    else:
        data = Path(os.environ.get("WORKBENCH_DATA") or "../shared/data").expanduser()
        data = data if data.is_absolute() else (root / data).resolve()
    common, entries = load_registry(registry)
    return Plan(
        root=root,
        registry=registry,
        stamps=Path(stamps or root / "figures" / ".stamps.json"),
        data=data,
        data_arg=data if data_dir is not None else None,
        common_inputs=common,
        entries=entries,
    )


def input_files(plan: Plan, entry: Entry) -> list[tuple[str, Path | None]]:
    """``(label, path)`` per input file, sorted; a pattern that matches nothing gives ``(pattern, None)``."""
    found: dict[str, Path | None] = {entry.script: plan.root / entry.script}
    for pattern in (*plan.common_inputs, *entry.inputs):
        base, rel, prefix = (
            (plan.data, pattern[len(DATA_PREFIX) :], DATA_PREFIX)
            if pattern.startswith(DATA_PREFIX)
            else (plan.root, pattern, "")
        )
        matches = [p for p in sorted(base.glob(rel)) if p.is_file()] if rel else []
        for path in matches:
            found[prefix + path.relative_to(base).as_posix()] = path
        if not matches:
            found.setdefault(pattern, None)
    return sorted(found.items())


def stamp(plan: Plan, entry: Entry) -> str:
    """sha256 over the script path, the arguments and the name and content of every input file."""
    digest = hashlib.sha256(json.dumps([entry.script, list(entry.args)]).encode())
    for label, path in input_files(plan, entry):
        content = sha256_file(path) if path is not None and path.is_file() else "<none>"
        digest.update(f"\n{label}\0{content}".encode())
    return digest.hexdigest()


def read_stamps(path: Path) -> dict[str, dict[str, Any]]:
    """The recorded stamps (an unreadable file counts as none recorded)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_stamps(path: Path, stamps: dict[str, dict[str, Any]]) -> None:
    text = json.dumps(dict(sorted(stamps.items())), indent=1) + "\n"

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)  # mkstemp's 0600 is for secrets; this file may be committed

    atomic_write(path, write)


def missing_outputs(plan: Plan, entry: Entry) -> list[str]:
    return [o for o in entry.outputs if not (plan.root / o).is_file()]


def state(plan: Plan, entry: Entry, stamps: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """One of STATES and the entry's current stamp ('' when its script is missing)."""
    if not (plan.root / entry.script).is_file():
        return "not available", ""
    current = stamp(plan, entry)
    if stamps.get(entry.name, {}).get("stamp") != current:
        return "stale", current
    if missing_outputs(plan, entry):
        return "missing outputs", current
    return "up to date", current


def command(plan: Plan, entry: Entry) -> list[str]:
    extra = ["--data-dir", str(plan.data_arg)] if plan.data_arg and entry.takes_data_dir(plan.root) else []
    return [sys.executable, entry.script, *entry.args, *extra]


def run_script(
    plan: Plan, entry: Entry, on_line: Callable[[str], None] = lambda line: None
) -> tuple[int, str, float]:
    """Run one script from the repository root, streaming its output; (exit status, last line, seconds)."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    last = ""
    with subprocess.Popen(
        command(plan, entry),
        cwd=plan.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.strip():
                last = line.strip()
            on_line(line)
        status = proc.wait()
    return status, last, time.perf_counter() - start


def select(plan: Plan, only: Sequence[str] = (), include_expensive: bool = False) -> list[tuple[Entry, str]]:
    """The entries to consider with a reason to skip each ('' = consider it)."""
    known = {e.name for e in plan.entries}
    unknown = [n for n in only if n not in known]
    if unknown:
        raise WorkbenchError(
            f"unknown figure(s) {', '.join(unknown)}", f"use one of {', '.join(sorted(known))}"
        )
    skip = "expensive (add --include-expensive)"
    return [
        (e, skip if e.expensive and not include_expensive and not only else "")
        for e in plan.entries
        if not only or e.name in only
    ]


@dataclass
class Job:
    """An entry to run, its current stamp and why it runs (stale, missing outputs, forced)."""

    entry: Entry
    stamp: str
    why: str


@dataclass
class Selection:
    """What a run will do: the jobs, and one note per entry it passes over, in registry order."""

    jobs: list[Job] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (kind, text); kind: skip, fresh, error
    fresh: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)


def choose(
    plan: Plan, only: Sequence[str] = (), force: bool = False, include_expensive: bool = False
) -> Selection:
    """Sort the registered entries into jobs to run, up-to-date ones and skipped ones."""
    stamps = read_stamps(plan.stamps)
    out = Selection()
    for entry, skip in select(plan, only, include_expensive):
        if skip:
            out.notes.append(("skip", f"skip {entry.name}: {skip}"))
            out.skipped += 1
            continue
        st, current = state(plan, entry, stamps)
        if st == "not available":
            if only:
                out.notes.append(("error", f"error: figure {entry.name!r}: {entry.script} is not available"))
                out.failed.append(entry.name)
            else:
                out.notes.append(("skip", f"skip {entry.name}: {entry.script} not available"))
                out.skipped += 1
        elif st == "up to date" and not force:
            out.notes.append(("fresh", entry.name))
            out.fresh += 1
        else:
            out.jobs.append(Job(entry, current, "forced" if st == "up to date" else st))
    return out


@dataclass
class JobResult:
    """How one script ended: exit status, its last output line, seconds, outputs it did not write."""

    status: int
    last: str
    seconds: float
    missing: list[str]


def run_job(plan: Plan, job: Job, on_line: Callable[[str], None] = lambda line: None) -> JobResult:
    """Run one job; record its stamp on success, drop it on failure (the stamps file is rewritten)."""
    status, last, seconds = run_script(plan, job.entry, on_line)
    stamps = read_stamps(plan.stamps)
    if status == 0:
        stamps[job.entry.name] = {
            "stamp": job.stamp,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(seconds, 1),
        }
    else:
        stamps.pop(job.entry.name, None)
    write_stamps(plan.stamps, stamps)
    return JobResult(status, last, seconds, missing_outputs(plan, job.entry) if status == 0 else [])


def entry_states(plan: Plan, include_expensive: bool = False) -> list[dict[str, str]]:
    """Every entry's state, script, output count and note (``workbench figures --list``)."""
    stamps = read_stamps(plan.stamps)
    rows = []
    for entry, skip in select(plan, include_expensive=include_expensive):
        st, _ = state(plan, entry, stamps)
        never = "never run here" if st == "stale" and entry.name not in stamps else ""
        rows.append(
            {
                "name": entry.name,
                "state": st,
                "script": entry.script,
                "outputs": str(len(entry.outputs)),
                "note": "; ".join(filter(None, [skip, never, entry.description])),
            }
        )
    return rows


def shown(argv: Sequence[str]) -> str:
    """A command line as printed: ``python <script> <args>``."""
    return " ".join(["python", *argv[1:]])
