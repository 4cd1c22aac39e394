"""``workbench figures``: regenerate the registered analyses, skipping those whose inputs are unchanged."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..report.figures_runner import Plan, choose, command, entry_states, make_plan, run_job, shown
from .common import console

STATE_COLOURS = {"up to date": "green", "stale": "yellow", "missing outputs": "yellow"}


def _console(stderr: bool = False) -> Any:
    return console(stderr=stderr, soft_wrap=True)


def list_figures(plan: Plan, include_expensive: bool) -> None:
    """A table of every entry: its state, script and outputs."""
    from rich.table import Table

    table = Table(title=f"figures ({plan.registry})", title_justify="left")
    for col in ("name", "state", "script", "outputs"):
        table.add_column(col, no_wrap=True)
    table.add_column("note", overflow="fold")
    for row in entry_states(plan, include_expensive):
        colour = STATE_COLOURS.get(row["state"], "red")
        table.add_row(row["name"], f"[{colour}]{row['state']}[/]", row["script"], row["outputs"], row["note"])
    _console().print(table)
    typer.echo(f"stamps: {plan.stamps}; data: {plan.data}")


def run_figures(
    plan: Plan,
    only: list[str] | None = None,
    force: bool = False,
    include_expensive: bool = False,
    dry_run: bool = False,
) -> int:
    """Run the stale entries in registry order with a progress bar; 1 when any failed."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    out, errors = _console(), _console(stderr=True)
    chosen = choose(plan, only or (), force, include_expensive)
    for kind, text in chosen.notes:
        if kind == "error":
            errors.print(text)
        elif kind == "fresh":
            out.print(f"[green]up to date[/] {text}")
        else:
            out.print(f"[dim]{text}[/]")
    failed = list(chosen.failed)
    if dry_run:
        for job in chosen.jobs:
            out.print(
                f"would run {job.entry.name} ({job.why}): {shown(command(plan, job.entry))}", markup=False
            )
        out.print(f"{len(chosen.jobs)} to run, {chosen.fresh} up to date, {chosen.skipped} skipped (dry run)")
        return 1 if failed else 0
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=out, transient=True) as progress:
        task = progress.add_task("figures", total=len(chosen.jobs))
        for i, job in enumerate(chosen.jobs, 1):
            name = job.entry.name
            progress.update(task, description=f"{name} ({i}/{len(chosen.jobs)})")
            progress.console.print(f"[bold]run[/] {name} ({job.why}): {shown(command(plan, job.entry))}")

            def echo(line: str) -> None:
                progress.console.print(f"  │ {line}", markup=False, highlight=False)

            result = run_job(plan, job, echo)
            if result.status == 0:
                progress.console.print(f"[green]done[/] {name} in {result.seconds:.1f} s")
                for missing in result.missing:
                    errors.print(f"warning: {name} finished but did not write {missing}")
            else:
                failed.append(name)
                tail = f": {result.last}" if result.last else ""
                status = f"{job.entry.script} exited with status {result.status}{tail}"
                errors.print(
                    f"error: figure {name!r} failed: {status}",
                    markup=False,
                )
            progress.advance(task)
    ran = len([j for j in chosen.jobs if j.entry.name not in failed])
    out.print(
        f"figures: {ran} ran, {chosen.fresh} up to date, {chosen.skipped} skipped, {len(failed)} failed"
    )
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
