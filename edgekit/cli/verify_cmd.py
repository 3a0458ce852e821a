"""``edgekit verify BUILD_DIR --emulator``: run a finished build on an emulated device."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from edgekit.cli.gate_options import gate_options, make_gates
from edgekit.errors import InputError
from edgekit.outdir import record_writes
from edgekit.report import Report


def _read_report(build_dir: Path) -> dict:
    path = build_dir / "report.json"
    if not path.is_file():
        raise InputError(f"{build_dir}: not an edgekit build folder (no report.json)", "run `edgekit build ... --out DIR` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: report.json is not valid JSON ({exc.msg})") from None


def _write_report(build_dir: Path, data: dict) -> None:
    report = Report(data=data, out_dir=build_dir)
    for name, text in (("report.json", report.to_json()), ("report.md", report.to_markdown())):
        tmp = build_dir / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, build_dir / name)


def _shown(metrics: dict | None) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in (metrics or {}).items() if isinstance(v, (int, float))) or "no labels"


@click.command(name="verify")
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--emulator", is_flag=True, required=True, help="Run on the target's emulator (QEMU): Cortex-M firmware or an emulated aarch64 Pi.")
@click.option("--inputs", "n_inputs", type=int, default=100, show_default=True, help="How many inputs to run (eval data first, else seeded generated inputs).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tflite-runtime-leg", is_flag=True, help="Pi builds: also run the runner's tflite_runtime fallback (numpy<2) under emulation.")
@gate_options("on for microcontrollers (edgekit's C runtime must match the TFLM interpreter), off for Pi builds")
@click.option("--json", "as_json", is_flag=True, help="Print the emulator section as JSON.")
def command(build_dir: Path, emulator: bool, n_inputs: int, seed: int, tflite_runtime_leg: bool,
            max_accuracy_drop, min_accuracy, require_bit_exact, as_json: bool) -> None:
    """Check an existing build on an emulated device and add an `emulator` section to its report.

    Microcontroller builds are compiled with arm-none-eabi-gcc (edgekit's own
    C runtime) and run under qemu-system-arm on the target's machine; Pi builds
    run their own run.py with an aarch64 Python under qemu-aarch64-static.
    Outputs are compared byte for byte with the host reference. Emulated
    figures are not device benchmarks. A broken gate still updates the
    report (``emulator.verdict``) and exits 6.
    """
    data = _read_report(build_dir)
    runtime = data.get("target", {}).get("runtime")
    gates = make_gates(max_accuracy_drop, min_accuracy, require_bit_exact, bit_exact_default=runtime == "tflm")
    if runtime == "tflm":
        from edgekit.toolchain.mcu_verify import verify_mcu_build

        result = verify_mcu_build(build_dir, n_inputs=n_inputs, seed=seed)
    elif runtime == "litert":
        from edgekit.pi_emulator.verify import verify_pi_build

        legs = ("litert", "tflite_runtime") if tflite_runtime_leg else ("litert",)
        result = verify_pi_build(build_dir, legs=legs, n_inputs=n_inputs, seed=seed)
    else:
        raise InputError(f"{build_dir}/report.json: unknown target runtime {runtime!r}")
    section = result.to_dict()
    from edgekit.verify.gates import check

    reference = "tflm-host" if runtime == "tflm" else "the host, same runtime and kernels"
    verdict = check(gates, float_accuracy=(data.get("accuracy") or {}).get("float"), deployed_accuracy=section.get("accuracy"),
                    deployed_runtime=section.get("runtime") or "the emulator", bit_exact=section.get("outputs_bit_exact"),
                    bit_exact_what=f"emulator vs {reference}")
    section["verdict"] = verdict.to_dict()
    data["emulator"] = section
    if runtime == "tflm" and section.get("instructions_per_inference"):
        scheme = "int16x8" if (data.get("quantization") or {}).get("scheme") == "int16x8" else "int8"
        device = f"emulator.instructions_per_inference: {scheme} on {section.get('machine')} (emulated; no float figure on the device)"
        data.setdefault("runtimes", {})["speedup.device"] = device
        data.setdefault("summary", {})["speedup_source"] = device
    _write_report(build_dir, data)
    record_writes(build_dir, ("report.json", "report.md", "emulator"))  # the build stays edgekit's to replace
    gate_error = verdict.error()
    if gate_error is not None:
        raise gate_error
    if as_json:
        click.echo(json.dumps(section, indent=2, sort_keys=True, default=str))
        return
    if section.get("task_outputs"):  # several outputs: no single accuracy, each output's own metrics
        click.echo(f"emulator {section.get('machine')}: outputs bit-exact {section.get('outputs_bit_exact')}")
        for o in section["task_outputs"]:
            click.echo(f"  output {o['output']} ({o['task']}): {_shown(o['metrics'])}")
    else:
        click.echo(f"emulator {section.get('machine')}: outputs bit-exact {section.get('outputs_bit_exact')}, accuracy {section.get('accuracy')}")
    if section.get("task_metrics") and section.get("task", "classification") != "classification":
        click.echo(f"  {section['task']} metrics: {_shown(section['task_metrics'])}")
    for key in ("flash_bytes", "ram_bytes", "stack_bytes", "instructions_per_inference", "emulated_latency_ms"):
        if section.get(key) is not None:
            click.echo(f"  {key:<28} {section[key]}")
    if section.get("latency_note"):
        click.echo(f"  note: {section['latency_note']}")
    click.echo(f"Updated {build_dir}/report.json")
