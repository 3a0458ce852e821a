"""``edgekit codegen FILE.tflite --out DIR``: plain C99 for a full-int8 or int16x8 model, no interpreter."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command(name="codegen")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="Folder for the generated C (replaced atomically, and only if edgekit wrote it).")
@click.option("--prefix", default="edgekit", show_default=True,
              help="Prefix of the generated functions, macros, file names and runtime symbols (two models with "
                   "different prefixes link into one firmware).")
@click.option("--io-in-arena", is_flag=True,
              help="Plan the input and output inside the arena and add zero-copy <prefix>_input/_output/_invoke_in_arena.")
@click.option("--host-check", "host_check_n", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also compile with the host gcc and compare N seeded generated inputs with the tflite-micro interpreter.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --host-check inputs.")
@click.option("--calls-per-sequence", type=click.IntRange(min=1), default=None,
              help="A model with state (SVDF): run the --host-check inputs as sequences of this many calls, the state "
                   "reset between sequences, on both sides [default: all N inputs as one sequence].")
@click.option("--compare-tflm", is_flag=True, help="Also measure the arena the tflite-micro interpreter allocates for MODEL.")
@click.option("--weight-bits", type=click.Choice(["auto", "4", "8"]), default="auto", show_default=True,
              help="Weight storage: 4-bit indices + per-channel tables for clustered layers (auto: where it saves bytes; "
                   "4: every layer with at most 16 values per channel), or plain int8 (8).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def command(model: Path, out: Path, prefix: str, io_in_arena: bool, host_check_n: int, seed: int,
            calls_per_sequence: int | None, compare_tflm: bool, weight_bits: str, as_json: bool) -> None:
    """Generate C for MODEL (a full-int8 or int16x8 .tflite): const weights, one arena, <prefix>_invoke().

    Prints the planned arena, its lower bound (the most tensor bytes alive at
    once; overlapping a windowed op's output with its dying input can go below
    it) and the constant data size. Compile everything in --out with any C99
    compiler. Exit code 4 names an op the runtime does not support; with
    --host-check, 6 when any output byte differs from tflite-micro.
    """
    from edgekit.aot.codegen import generate
    from edgekit.outdir import staged

    bits = None if weight_bits == "auto" else int(weight_bits)
    with staged(out, [model]) as tmp:
        res = generate(model, tmp, prefix=prefix, weight_bits=bits, io_in_arena=io_in_arena)
    d = res.to_dict()
    d["out"] = str(out)
    check = None
    if host_check_n:
        import tempfile

        from edgekit.aot.hostcheck import generated_inputs, host_check

        seq = None
        if res.state_bytes:
            seq = calls_per_sequence or host_check_n
            if host_check_n % seq:
                from edgekit.errors import InputError

                raise InputError(f"--host-check {host_check_n} is not a whole number of sequences of {seq} calls",
                                 "pick N a multiple of --calls-per-sequence")
        with tempfile.TemporaryDirectory(prefix="edgekit-hostcheck-") as tmp:
            check = host_check(model, generated_inputs(model, host_check_n, seed), Path(tmp), weight_bits=bits,
                               calls_per_sequence=seq)
        d["host_check"] = {k: v for k, v in check.to_dict().items() if k != "codegen"} | {"seed": seed,
                                                                                         "calls_per_sequence": seq}
    tflm = None
    if compare_tflm:
        from edgekit.aot.graph import read_bytes
        from edgekit.tflm_host import measure_arena

        tflm = measure_arena(read_bytes(model)).used_bytes
        d["tflm_arena_bytes"] = tflm
        d["arena_ratio"] = round(res.arena_bytes / tflm, 4)
        d["arena_with_io_ratio"] = round((res.arena_bytes + res.input_bytes + res.output_bytes) / tflm, 4)
    if as_json:
        click.echo(json.dumps(d, indent=2))
    else:
        _table(res, out, check, tflm)
    if check is not None and check.bit_exact_fraction < 1.0:
        from edgekit.errors import VerificationError

        raise VerificationError(
            f"{model}: {check.mismatched_inputs} of {check.n_inputs} inputs differ from tflite-micro "
            f"(bit-exact bytes {check.bit_exact_fraction:.6f}, max {check.max_abs_lsb_diff} LSB)",
            "please report it with the model",
        )


def _table(res, out: Path, check, tflm: int | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"edgekit codegen → {out}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("ops", str(len(res.ops)))
    table.add_row("arena", f"{res.arena_bytes:,} B")
    table.add_row("arena lower bound", f"{res.arena_lower_bound_bytes:,} B")
    table.add_row("without reuse", f"{res.unshared_bytes:,} B")
    if tflm:
        io = res.input_bytes + res.output_bytes
        table.add_row("TFLM arena (tflite-micro, measured)", f"{tflm:,} B")
        table.add_row("ratio (with I/O buffers)", f"{res.arena_bytes / tflm:.2f} ({(res.arena_bytes + io) / tflm:.2f})")
    table.add_row("const data (weights, params)", f"{res.weight_bytes:,} B")
    if res.packed_weight_tensors:
        table.add_row("4-bit packed weight tensors", f"{len(res.packed_weight_tensors)} (decode scratch {res.weight_scratch_bytes:,} B)")
    table.add_row("input / output", f"{res.input_bytes:,} B / {res.output_bytes:,} B")
    if res.state_bytes:
        table.add_row("state kept between calls (in the arena)", f"{res.state_bytes:,} B")
    if check is not None:
        table.add_row("host vs tflite-micro", f"{check.bit_exact_fraction:.2%} bytes equal on {check.n_inputs} inputs")
    table.add_row("files", ", ".join(res.files))
    Console().print(table)
