"""``edgekit codegen FILE.tflite --out DIR``: plain C99 for a full-int8 model, no interpreter."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command(name="codegen")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="Folder for the generated C.")
@click.option("--prefix", default="edgekit", show_default=True, help="Prefix of the generated function, macros and file names.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def command(model: Path, out: Path, prefix: str, as_json: bool) -> None:
    """Generate C for MODEL (a full-int8 .tflite): const weights, one static arena, <prefix>_invoke().

    Prints the planned arena, its lower bound (the most bytes alive at once) and
    the constant data size. Compile everything in --out with any C99 compiler.
    """
    from edgekit.aot.codegen import generate

    res = generate(model, out, prefix=prefix)
    if as_json:
        d = res.to_dict()
        d["out"] = str(out)
        click.echo(json.dumps(d, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"edgekit codegen → {out}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("ops", str(len(res.ops)))
    table.add_row("arena", f"{res.arena_bytes:,} B")
    table.add_row("arena lower bound", f"{res.arena_lower_bound_bytes:,} B")
    table.add_row("without reuse", f"{res.unshared_bytes:,} B")
    table.add_row("const data (weights, params)", f"{res.weight_bytes:,} B")
    table.add_row("input / output", f"{res.input_bytes:,} B / {res.output_bytes:,} B")
    table.add_row("files", ", ".join(res.files))
    Console().print(table)
