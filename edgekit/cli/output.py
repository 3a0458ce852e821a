"""How the CLI shows progress and reports (the library itself never prints)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

import click

from edgekit.report import Report, summary_rows


@contextmanager
def stage_progress(enabled: bool = True) -> Iterator[Callable[[str], None] | None]:
    """A spinner on stderr naming the current stage; yields the callback for the pipeline."""
    if not enabled or not sys.stderr.isatty():
        yield (lambda name: click.echo(f"edgekit: {name} ...", err=True)) if enabled else None
        return
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("edgekit: starting") as status:
        yield lambda name: status.update(f"edgekit: {name} ...")


def print_report(report: Report, as_json: bool) -> None:
    """``--json``: report.json on stdout. Otherwise a table and where the files went."""
    for line in report.data.get("warnings", []):
        click.echo(f"edgekit: warning: {line}", err=True)
    if as_json:
        click.echo(report.to_json(), nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"edgekit build → {report.get('target.name')}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for k, v in summary_rows(report.data):
        table.add_row(k, v)
    console = Console()
    console.print(table)
    if report.out_dir is not None:
        console.print(f"Wrote {report.out_dir}/ (report.json, report.md, model.tflite)")
