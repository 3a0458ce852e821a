"""``edgekit targets``: list the board profiles, or show one."""

from __future__ import annotations

import json

import click

from edgekit.targets import all_targets, get_target


def _fmt_bytes(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} B"


@click.group(name="targets", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def command(ctx: click.Context, as_json: bool) -> None:
    """List the bundled board profiles (RAM, flash, CPU, runtime, emulator).

    Any command's --target also takes the path of your own profile file;
    see targets/README.md for the schema.
    """
    if ctx.invoked_subcommand is not None:
        return
    profiles = all_targets()
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in profiles], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="edgekit targets")
    for col in ("name", "runtime", "cpu", "flash", "RAM", "emulator"):
        table.add_column(col)
    for p in profiles:
        emu = p.emulator
        emu_s = "" if emu is None else (f"{emu.machine}:{emu.cpu}" if emu.cpu else emu.machine)
        table.add_row(p.name, p.runtime, p.cpu, _fmt_bytes(p.flash_bytes), _fmt_bytes(p.ram_bytes), emu_s)
    Console().print(table)


@command.command(name="show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def show(name: str, as_json: bool) -> None:
    """Show one profile in full: NAME is a bundled name or a .toml path."""
    p = get_target(name)
    d = p.to_dict()
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"{p.name}: {p.description}")
    click.echo(f"  runtime      {p.runtime}")
    click.echo(f"  cpu          {p.cpu} ({p.arch})")
    click.echo(f"  flash budget {p.flash_bytes} B ({_fmt_bytes(p.flash_bytes)})")
    click.echo(f"  RAM budget   {p.ram_bytes} B ({_fmt_bytes(p.ram_bytes)})")
    if p.toolchain:
        t = p.toolchain
        click.echo(f"  compiler     -mcpu={t.mcpu} -mfpu={t.mfpu} -mfloat-abi={t.mfloat_abi}")
    if p.emulator:
        e = p.emulator
        click.echo(f"  emulator     {e.kind} {e.machine}" + (f" (emulated CPU {e.cpu})" if e.cpu else ""))
    if p.note:
        click.echo(f"  note         {p.note}")
