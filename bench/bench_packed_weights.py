"""What 4-bit packed weights cost and save in edgekit's C runtime on QEMU, on the clustered digits CNN.

The bundled digits CNN (examples/digits, Keras 3) is clustered to 16 values per
channel (the ``cluster`` stage, 1 epoch, seed 0), converted to int8 with
edgekit.convert, and its C generated twice: packed (4-bit indices + an int8
table per channel, the default) and plain (``weight_bits=8``). Both run the
same seeded inputs on QEMU (cortex-m4, ``mps2-an386``) and are compared byte for
byte with the tflite-micro interpreter on the host.

    python bench/bench_packed_weights.py [--inputs 24] [--json-out PATH]   # measure, write the JSON
    python bench/bench_packed_weights.py --markdown                         # print the docs table from the JSON

writes JSON (default bench/results/bench_packed_weights.json).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cli  # noqa: E402
from machine import host  # noqa: E402

RESULT = REPO / "bench" / "results" / "bench_packed_weights.json"
EX = REPO / "examples" / "digits"
TARGET = "cortex-m4"


def clustered_digits() -> bytes:
    """The bundled digits CNN clustered to 16 values per channel, as an int8 .tflite."""
    from edgekit.compress import apply_recipe
    from edgekit.convert import convert_int8
    from edgekit.data import load_data
    from edgekit.load import load_model
    from edgekit.recipe import Recipe

    loaded = load_model(EX / "model.keras")
    train, calib = load_data(EX / "train.npz", "train"), load_data(EX / "calib.npz", "calib")
    recipe = Recipe.from_dict({"stage": [{"name": "cluster", "clusters": 16, "epochs": 1}]})
    return convert_int8(apply_recipe(loaded, recipe, train=train, seed=0).model, calib)


def measure(work: Path, n_inputs: int) -> dict:
    """Generate, build and run both variants; the figures of each as plain numbers."""
    import numpy as np

    from edgekit.aot import generate
    from edgekit.targets import get_target
    from edgekit.tflm_host import run_tflm
    from edgekit.toolchain.mcu_verify import generated_inputs, run_on_emulator

    tfl = clustered_digits()
    target = get_target(TARGET)
    rows, machine = {}, None
    for name, bits in (("plain", 8), ("packed", None)):
        gen = generate(tfl, work / name, weight_bits=bits)
        x = generated_inputs(n_inputs, gen.input_bytes, seed=11)
        ref = run_tflm(tfl, x)
        out, dev = run_on_emulator(work / name, target, x, work / f"run-{name}")
        machine = dev.machine
        rows[name] = {
            "weight_bits": 4 if gen.packed_weight_tensors else 8, "packed_tensors": len(gen.packed_weight_tensors),
            "weight_bytes": gen.weight_bytes, "arena_bytes": gen.arena_bytes, "flash_bytes": dev.flash_bytes,
            "ram_bytes": dev.ram_bytes, "instructions_per_inference": dev.instructions_per_inference,
            "outputs_bit_exact": float(np.mean(out == ref.reshape(out.shape))),
        }
    return {"model": "examples/digits/model.keras, cluster 16 (1 epoch, seed 0), int8", "target": TARGET,
            "n_inputs": n_inputs, "machine": {"emulator": machine, "host": host()},
            "runtime": "edgekit C runtime (-O2) on QEMU; reference: tflite-micro interpreter on the host", "rows": rows}


def markdown_table(result: dict) -> str:
    """The docs table for ``result`` (tests/test_docs_figures.py checks README and docs against it)."""
    p, q = result["rows"]["plain"], result["rows"]["packed"]
    ratio = q["instructions_per_inference"] / p["instructions_per_inference"]
    lines = ["| clustered digits CNN | int8 weights (`--weight-bits 8`) | 4-bit packed (default) | change |",
             "|---|---|---|---|",
             f"| weight bytes | {p['weight_bytes']:,} | {q['weight_bytes']:,} | "
             f"{100 * (q['weight_bytes'] / p['weight_bytes'] - 1):+.1f} % |",
             f"| flash (firmware) | {p['flash_bytes']:,} | {q['flash_bytes']:,} | "
             f"{100 * (q['flash_bytes'] / p['flash_bytes'] - 1):+.1f} % |",
             f"| RAM (static + stack) | {p['ram_bytes']:,} | {q['ram_bytes']:,} | {q['ram_bytes'] - p['ram_bytes']:+,} B |",
             f"| instructions per inference | {p['instructions_per_inference'] / 1e6:.2f} M | "
             f"{q['instructions_per_inference'] / 1e6:.2f} M | {ratio:.2f}x |",
             f"| outputs bit-exact with tflite-micro | {100 * p['outputs_bit_exact']:.0f} % | "
             f"{100 * q['outputs_bit_exact']:.0f} % | |",
             "",
             f"Measured by `bench/bench_packed_weights.py` ({result['n_inputs']} seeded inputs; {result['runtime']}; "
             f"QEMU `{result['machine']['emulator']}` ({result['target']}), host {result['machine']['host']}; "
             "output in `bench/results/bench_packed_weights.json`)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return bench_cli.run(argv, __doc__, measure, markdown_table, RESULT, inputs=24)


if __name__ == "__main__":
    sys.exit(main())
