"""``edgekit inspect FILE.tflite``: what is inside a .tflite, and whether TFLM can run it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edgekit.errors import InputError
from edgekit.tflite_model import short_layer_name


def inspect_tflite(path: Path, target: str | None = None) -> dict[str, Any]:
    """Everything ``inspect`` shows, as plain data (no TensorFlow import)."""
    from edgekit.tflite_model import read_model
    from edgekit.tflm_compat import check_tflm, float_ops

    if path.is_dir():
        raise InputError(f"{path}: is a folder; inspect takes a .tflite file")
    info = read_model(path)
    blocking = check_tflm(info, allow_float=True)
    floats = float_ops(info)
    d = info.to_dict()
    d["largest_by_weights"] = [o.to_dict() for o in info.largest_by_weights(5)]
    d["largest_by_activations"] = [o.to_dict() for o in info.largest_by_activations(5)]
    d["tflm"] = {
        "runnable": not blocking,
        "problems": blocking,
        "float_ops": len(floats),
        "float_note": ("TFLM runs float ops, but the weights take 4x the flash of int8: "
                       "edgekit emits float models only with --allow-float") if floats else "",
        "missing_ops": sorted({p.split(" ", 1)[0] for p in blocking if "has no kernel" in p}),
    }
    d["aot"] = aot_support(info.ops)
    if target is not None:
        from edgekit.memory import estimate
        from edgekit.targets import get_target

        prof = get_target(target)
        arena = None
        if prof.is_mcu and not blocking:
            from edgekit.tflm_host import measure_arena

            arena = measure_arena(path.read_bytes())
        d["memory"] = estimate(info, prof, arena).to_dict()
    return d


def aot_support(ops: tuple[str, ...]) -> dict[str, Any]:
    """Whether edgekit's own C runtime (``codegen``) has every op; shape arithmetic it folds counts as supported."""
    from edgekit.aot.fold import FOLDABLE
    from edgekit.aot.lower import SUPPORTED_OPS

    missing = sorted(set(ops) - set(SUPPORTED_OPS) - set(FOLDABLE))
    return {"ops_supported": not missing, "missing_ops": missing}


def _b(n: int | None) -> str:
    return "-" if n is None else f"{n:,} B"


def _quant(t: dict[str, Any]) -> str:
    q = "" if t["scale"] is None else f" scale {t['scale']:.6g} zero point {t['zero_point']}"
    return f"{t['name']} {t['dtype']} {t['shape']}{q}"


@click.command(name="inspect")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", default=None, help="Also estimate flash/RAM against this board's budget (name or .toml).")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON (ops, tensors, per-op bytes, TFLM check).")
def command(model: Path, target: str | None, as_json: bool) -> None:
    """Show a .tflite's ops, tensors, parameter count, weight and activation bytes,
    I/O quantization, and whether TensorFlow Lite Micro can run it.

    Activation bytes are the sum of every non-constant tensor, without the
    buffer reuse TFLM's planner does (the measured arena is smaller).
    """
    d = inspect_tflite(model, target)
    if as_json:
        click.echo(json.dumps(d, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"edgekit inspect {model.name}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    rows = [
        ("size", _b(d["size_bytes"])),
        ("ops", f"{d['op_count']} distinct, {d['operator_count']} in total: {', '.join(d['ops'])}"),
        ("tensors", str(d["tensor_count"])),
        ("parameters", f"{d['param_count']:,}"),
        ("weights", f"{_b(d['weight_bytes'])} ({', '.join(d['weight_dtypes']) or '-'})"),
        ("activations (no reuse)", f"{_b(d['activation_bytes'])} ({', '.join(d['activation_dtypes']) or '-'})"),
        ("full int8", "yes" if d["is_full_int8"] else "no"),
    ]
    rows += [(f"input {i}", _quant(t)) for i, t in enumerate(d["inputs"])]
    rows += [(f"output {i}", _quant(t)) for i, t in enumerate(d["outputs"])]
    tflm = d["tflm"]
    verdict = "yes" if tflm["runnable"] else "no"
    if tflm["runnable"] and tflm["float_ops"]:
        verdict = f"yes, but {tflm['float_ops']} float op(s): emit needs --allow-float"
    rows.append(("TFLM can run it", verdict))
    aot = d["aot"]
    rows.append(("edgekit C runtime ops", "all supported" if aot["ops_supported"] else "missing " + ", ".join(aot["missing_ops"])))
    if "memory" in d:
        m = d["memory"]
        rows.append((f"flash on {m['target']}", f"{_b(m['flash_bytes'])} of {_b(m['flash_budget_bytes'])}"))
        rows.append((f"RAM on {m['target']}", f"{_b(m['ram_bytes'])} of {_b(m['ram_budget_bytes'])}"))
        if m.get("arena_bytes") is not None:
            rows.append(("TFLM arena (measured)", f"{_b(m['arena_bytes'])}, minimum {_b(m['arena_min_bytes'])}"))
        rows.append(("fits", "yes" if m["fits"] else "NO"))
    for k, v in rows:
        table.add_row(k, v)
    console = Console(width=max(120, Console().width))
    console.print(table)
    for p in tflm["problems"]:
        console.print(f"  TFLM: {p}", markup=False, soft_wrap=True)
    if d["largest_by_weights"]:
        console.print("Largest layers by weights:")
        for o in d["largest_by_weights"]:
            console.print(f"  {o['weight_bytes']:>10,} B  {o['op']:<18} {short_layer_name(o['layer'])}", markup=False, soft_wrap=True)
    console.print("Largest layers by activations:")
    for o in d["largest_by_activations"]:
        console.print(f"  {o['activation_bytes']:>10,} B  {o['op']:<18} {short_layer_name(o['layer'])}", markup=False, soft_wrap=True)
