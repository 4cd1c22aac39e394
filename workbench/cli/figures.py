"""``workbench figures``: regenerate the registered analyses, skipping those whose inputs are unchanged."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..report.figures_runner import (
    Plan,
    command,
    make_plan,
    missing_outputs,
    read_stamps,
    run_script,
    select,
    state,
    write_stamps,
)
from .common import console


def _console(stderr: bool = False) -> Any:
    return console(stderr=stderr, soft_wrap=True)


def _shown(argv: list[str]) -> str:
    return " ".join(["python", *argv[1:]])


def list_figures(plan: Plan, include_expensive: bool) -> None:
    """A table of every entry: its state, script and outputs."""
    from rich.table import Table

    stamps = read_stamps(plan.stamps)
    table = Table(title=f"figures ({plan.registry})", title_justify="left")
    for col in ("name", "state", "script", "outputs"):
        table.add_column(col, no_wrap=True)
    table.add_column("note", overflow="fold")
    for entry, skip in select(plan, include_expensive=include_expensive):
        st, _ = state(plan, entry, stamps)
        colour = {"up to date": "green", "stale": "yellow", "missing outputs": "yellow"}.get(st, "red")
        never = "never run here" if st == "stale" and entry.name not in stamps else ""
        note = "; ".join(filter(None, [skip, never, entry.description]))
        table.add_row(entry.name, f"[{colour}]{st}[/]", entry.script, str(len(entry.outputs)), note)
    _console().print(table)
    typer.echo(f"stamps: {plan.stamps}; data: {plan.data}")


def run_figures(
    plan: Plan,
    only: list[str] | None = None,
    force: bool = False,
    include_expensive: bool = False,
    dry_run: bool = False,
) -> int:
    """Run the stale entries in registry order; 1 when any failed (their stamps are dropped)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    console, errors = _console(), _console(stderr=True)
    stamps = read_stamps(plan.stamps)
    todo, failed, fresh, skipped = [], [], 0, 0
    for entry, skip in select(plan, only or (), include_expensive):
        if skip:
            console.print(f"[dim]skip {entry.name}: {skip}[/]")
            skipped += 1
            continue
        st, current = state(plan, entry, stamps)
        if st == "not available":
            if only:
                errors.print(f"error: figure {entry.name!r}: {entry.script} is not available")
                failed.append(entry.name)
            else:
                console.print(f"[dim]skip {entry.name}: {entry.script} not available[/]")
                skipped += 1
        elif st == "up to date" and not force:
            console.print(f"[green]up to date[/] {entry.name}")
            fresh += 1
        else:
            todo.append((entry, current, "forced" if st == "up to date" else st))
    if dry_run:
        for entry, _, why in todo:
            console.print(f"would run {entry.name} ({why}): {_shown(command(plan, entry))}", markup=False)
        console.print(f"{len(todo)} to run, {fresh} up to date, {skipped} skipped (dry run)")
        return 1 if failed else 0
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("figures", total=len(todo))
        for i, (entry, current, why) in enumerate(todo, 1):
            progress.update(task, description=f"{entry.name} ({i}/{len(todo)})")
            argv = command(plan, entry)
            progress.console.print(f"[bold]run[/] {entry.name} ({why}): {_shown(argv)}")

            def echo(line: str) -> None:
                progress.console.print(f"  │ {line}", markup=False, highlight=False)

            status, last, seconds = run_script(plan, entry, echo)
            if status == 0:
                stamps[entry.name] = {
                    "stamp": current,
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "seconds": round(seconds, 1),
                }
                progress.console.print(f"[green]done[/] {entry.name} in {seconds:.1f} s")
                for out in missing_outputs(plan, entry):
                    errors.print(f"warning: {entry.name} finished but did not write {out}")
            else:
                stamps.pop(entry.name, None)
                failed.append(entry.name)
                tail = f": {last}" if last else ""
                errors.print(
                    f"error: figure {entry.name!r} failed: {entry.script} exited with status {status}{tail}",
                    markup=False,
                )
            write_stamps(plan.stamps, stamps)
            progress.advance(task)
    ran = len(todo) - len([e for e, _, _ in todo if e.name in failed])
    console.print(f"figures: {ran} ran, {fresh} up to date, {skipped} skipped, {len(failed)} failed")
    return 1 if failed else 0


def figures_command(
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Run only this entry (repeatable; runs it even if expensive)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rerun even when the stamp matches.")] = False,
    list_only: Annotated[bool, typer.Option("--list", help="Show each entry's state and exit.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would run, run nothing.")] = False,
    include_expensive: Annotated[
        bool, typer.Option("--include-expensive", help="Also run entries marked expensive (trainings).")
    ] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Public data folder, passed to the scripts that take it."),
    ] = None,
    registry: Annotated[
        Path | None, typer.Option(help="Registry YAML (default analyses/figures.yaml in the checkout).")
    ] = None,
    root: Annotated[
        Path | None, typer.Option(help="Repository root the paths are relative to (default this checkout).")
    ] = None,
) -> None:
    """Regenerate every analysis in analyses/figures.yaml whose inputs changed (stamps in figures/)."""
    plan = make_plan(registry, root, data_dir)
    if list_only:
        list_figures(plan, include_expensive)
        return
    code = run_figures(plan, only, force, include_expensive, dry_run)
    sys.stdout.flush()
    if code:
        raise typer.Exit(code)
