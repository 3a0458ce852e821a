"""``edgekit compare``: several recipes on one model, one table and plot."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli.gate_options import gate_options, make_gates
from edgekit.task import TASKS
from edgekit.cli.output import stage_progress
from edgekit.compare import DEFAULT_RECIPES


@click.command(name="compare")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "-t", required=True, help="Board profile name (see `edgekit targets`) or path to a .toml profile.")
@click.option("--calib", type=click.Path(path_type=Path), help="Calibration inputs for int8 quantization. Defaults to --eval.")
@click.option("--eval", "eval_", type=click.Path(path_type=Path), help="Evaluation data (.npz with x and labels y) for accuracy.")
@click.option("--train", type=click.Path(path_type=Path), help="Training data with labels, for recipes that fine-tune.")
@click.option("--recipes", default=",".join(DEFAULT_RECIPES), show_default=True,
              help="Comma-separated bundled recipe names or .toml files; `none` is the plain int8 build.")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Output folder [default: edgekit-out/<model>-<target>-compare]; one sub-folder per recipe.")
@click.option("--emulator", is_flag=True, help="Microcontroller targets: also run each build under QEMU for instructions per inference.")
@click.option("--codegen/--no-codegen", default=False, show_default=True, help="Also generate edgekit's C runtime in each build.")
@click.option("--max-eval", type=int, help="Verify on at most this many eval samples.")
@click.option("--quant", help="[default: the recipe's quant, else int8] Quantization of every build: int8, int16x8; Linux targets also float16, dynamic.")
@click.option("--calibration", help="[default: the recipe's calibration, else minmax] int8 activation ranges: minmax, percentile[:P] or mse.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for every build.")
@click.option("--task", type=click.Choice(TASKS),
              help="What the output means (see `edgekit build --help`) [default: inferred from the model's head].")
@gate_options("off", metric_drop=True)
@click.option("--json", "as_json", is_flag=True, help="Print compare.json to stdout instead of the table.")
def command(model: Path, target: str, calib, eval_, train, recipes: str, out, emulator: bool, codegen: bool, max_eval,
            quant: str, calibration: str, seed: int, task, max_metric_drop, max_accuracy_drop, min_accuracy, require_bit_exact, as_json: bool) -> None:
    """Build MODEL once per recipe and compare flash, arena, latency, accuracy and the ratios against the float model.

    Writes compare.md, compare.html, compare.png and compare.json, plus one
    ordinary build folder per recipe whose report.json holds the same numbers.
    Exits with the first failed build's exit code (after writing the table).

    \b
    Example:
      edgekit compare model.keras --target cortex-m4 --calib calib.npz --eval eval.npz \\
          --train train.npz --recipes none,prune50,structured50,lowrank50
    """
    import json

    from edgekit.compare import compare
    from edgekit.errors import EdgekitError

    gates = make_gates(max_accuracy_drop, min_accuracy, require_bit_exact, bit_exact_default=False, max_metric_drop=max_metric_drop)
    with stage_progress(enabled=not as_json) as progress:
        result = compare(model, target, recipes=recipes, calib=calib, eval=eval_, train=train, out_dir=out, seed=seed,
                         codegen=codegen, emulator=emulator, max_eval=max_eval, quant=quant, calibration=calibration,
                         progress=progress, gates=gates, task=task)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        from rich.console import Console
        from rich.table import Table

        head, rows = result.table()
        table = Table(title=f"edgekit compare → {result.target}")
        for h in head:
            table.add_column(h, justify="left" if h in ("recipe", "note") else "right")
        for row in rows:
            table.add_row(*row)
        import sys

        console = Console(width=None if sys.stdout.isatty() else 160)  # a pipe should not squeeze the table to 80 columns
        console.print(table)
        console.print(f"Wrote {result.out_dir}/ ({', '.join(result.outputs.values())}, one build folder per recipe)")
    if result.failed:
        first = result.failed[0]
        err = EdgekitError(f"{len(result.failed)} of {len(result.rows)} builds failed; first: {first.recipe}: {first.error}")
        err.exit_code = first.exit_code  # the exit code of the first failure's class
        raise err
