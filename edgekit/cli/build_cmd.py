"""``edgekit build``: the whole pipeline for one model and one target."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli.gate_options import gate_options, make_gates
from edgekit.task import TASKS
from edgekit.cli.output import print_report, stage_progress


def _tasks(value: str | None) -> str | None:
    """``--task``: one of :data:`TASKS`, or several separated by commas (one per output)."""
    for name in (value.split(",") if value else ()):
        if name.strip() not in TASKS:
            raise click.BadParameter(f"{name.strip()!r} is not one of {', '.join(TASKS)}", param_hint="'--task'")
    return value


@click.command(name="build")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "-t", required=True, help="Board profile name (see `edgekit targets`) or path to a .toml profile.")
@click.option("--calib", type=click.Path(path_type=Path), help="Calibration inputs for int8 quantization (.npz with x, or .npy). Defaults to --eval.")
@click.option("--eval", "eval_", type=click.Path(path_type=Path), help="Evaluation data (.npz with x and optional labels y) for accuracy and agreement.")
@click.option("--train", type=click.Path(path_type=Path), help="Training data with labels (.npz with x, y) for fine-tuning after pruning.")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Output folder [default: edgekit-out/<model>-<target>].")
@click.option("--prune", type=float, help="Magnitude-prune to this sparsity (0-1), fine-tuned on --train.")
@click.option("--fine-tune-epochs", type=int, default=2, show_default=True, help="Epochs of fine-tuning after pruning.")
@click.option("--recipe", help="Compression recipe: a bundled name or a .toml file (overrides --prune).")
@click.option("--codegen/--no-codegen", default=False, show_default=True, help="Also generate edgekit's interpreter-less C runtime (microcontroller targets).")
@click.option("--allow-float", is_flag=True, help="Emit a float model for TFLM (4x the flash of int8).")
@click.option("--max-eval", type=int, help="Verify on at most this many eval samples.")
@click.option("--quant", help="[default: the recipe's quant, else int8] Quantization: int8, int16x8 (int16 activations, int8 weights), auto (first of int8, int8+mse, equalize+int8, int16x8 within --max-accuracy-drop); Linux targets also float16, dynamic.")
@click.option("--calibration", help="[default: the recipe's calibration, else minmax] int8 activation ranges: minmax, percentile[:P] (default 99.99) or mse.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for every random choice; same inputs and seed give the same bytes.")
@click.option("--data-is-quantized", is_flag=True, help="Integer data is already in the .tflite's integer input type: pass it unchanged (otherwise integer data is values, quantized like floats).")
@click.option("--task", callback=lambda ctx, param, value: _tasks(value), metavar="|".join(TASKS),
              help="What the output means (sets what y is, the metrics and --max-metric-drop) [default: inferred from the model's head]; "
                   "a model with several outputs takes one task for all or one per output, comma-separated in output order.")
@click.option("--custom-objects", metavar="FILE.py|MODULE:ATTR",
              help="Your Keras custom layers/functions: a .py file (its classes and functions, or its CUSTOM_OBJECTS dict) or module:attr. Keras' safe mode stays on.")
@gate_options("off", metric_drop=True)
@click.option("--json", "as_json", is_flag=True, help="Print report.json to stdout instead of the table.")
@click.option("--unsafe-deserialization", is_flag=True, help="Load Lambda layers and custom objects, running the code stored in MODEL (only for files you trust).")
def command(model: Path, target: str, calib, eval_, train, out, prune, fine_tune_epochs, recipe, codegen, allow_float, max_eval,
            quant, calibration, seed, data_is_quantized, task, custom_objects, max_metric_drop, max_accuracy_drop, min_accuracy, require_bit_exact, as_json,
            unsafe_deserialization) -> None:
    """Compress, quantize to full int8, verify and package MODEL for a board.

    MODEL is a Keras 3 .keras file, a tf_keras .h5 / .keras / SavedModel
    folder, or an existing .tflite (then compression is skipped). The output
    folder gets model.tflite, the runner (Raspberry Pi) or a TFLM project
    (microcontrollers), and report.json / report.md.

    \b
    Examples:
      edgekit build model.keras --target cortex-m4 --calib calib.npz --eval eval.npz
      edgekit build model.h5 --target rpi4 --eval eval.npz --train train.npz --prune 0.5
    """
    from edgekit.pipeline import build

    gates = make_gates(max_accuracy_drop, min_accuracy, require_bit_exact, bit_exact_default=False, max_metric_drop=max_metric_drop)
    with stage_progress(enabled=not as_json) as progress:
        report = build(
            model, target, calib=calib, eval=eval_, train=train, out_dir=out, recipe=recipe,
            prune=prune, fine_tune_epochs=fine_tune_epochs, seed=seed, codegen=codegen,
            allow_float=allow_float, max_eval=max_eval, quant=quant, calibration=calibration,
            progress=progress, gates=gates, data_is_quantized=data_is_quantized, task=task, custom_objects=custom_objects,
            unsafe_deserialization=unsafe_deserialization,
        )
    print_report(report, as_json)
