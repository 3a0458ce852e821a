"""edgekit's generated C on an emulated Cortex-M versus the TFLM interpreter.

For the MLPerf Tiny reference models and TFLM's person_detect (from
../shared/models, or EDGEKIT_SHARED_MODELS), prints side by side:

- RAM: edgekit's arena plus its input and output buffers (TFLM's arena holds
  the I/O tensors too, so this is the like-for-like figure), and the total RAM
  measured on the device (arena + static data + stack high-water), versus the
  arena the tflite-micro interpreter allocated (x86 host, reference kernels);
  goal: at most 0.7x;
- flash: edgekit's firmware (code + weights + harness) versus the .tflite size
  (TFLM's flash would be the .tflite plus the interpreter's code on top);
- instructions per inference on QEMU (executed guest instructions, counted by
  a TCG plugin);
- outputs: the fraction of output bytes bit-identical with TFLM on seeded
  generated inputs;
- per op: instructions of every op on QEMU (``layers``, bench/profile_aot_layers.py);
- the planner's layer-wise bound and the arena with the input and output
  inside it (``codegen --io-in-arena``).

TFLM's own firmware (reference kernels and CMSIS-NN) is not built here: its
flash, RAM and instructions from issue 14 are kept as labelled reference
constants (``reference_tflm`` in the JSON) beside the measurements.

    python bench/bench_aot_vs_tflm.py [--target cortex-m4] [--inputs 10] [--json-out PATH]

writes JSON (default bench/results/bench_aot_vs_tflm.json).

Models whose ops edgekit's generator does not support are listed as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgekit.errors import EdgekitError, UnsupportedOpError  # noqa: E402
from edgekit.targets import get_target  # noqa: E402
from edgekit.toolchain.mcu_verify import (  # noqa: E402
    generated_inputs,
    io_quantization,
    run_on_emulator,

)
from edgekit.tflm_host import measure_arena, run_tflm  # noqa: E402
from edgekit.aot.codegen import generate  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import host  # noqa: E402
from profile_aot_layers import profile  # noqa: E402

MODELS = [
    "mlperf_tiny/kws_ref_model.tflite",
    "mlperf_tiny/vww_96_int8.tflite",
    "mlperf_tiny/pretrainedResnet_quant.tflite",
    "mlperf_tiny/ad01_int8.tflite",
    "tflm/person_detect.tflite",
]


# Not measured here: TFLM built from its own sources (reference kernels, and CMSIS-NN with
# OPTIMIZED_KERNEL_DIR=cmsis_nn), run on the same QEMU mps2-an386 harness and instruction counter,
# Invoke only, all at -O2, as reported in issue 14 (this machine's TFLM tree lacks the third-party
# downloads needed to rebuild it). Kept as labelled reference constants beside the measurements.
REFERENCE_SOURCE = ("issue 14: TFLM firmware built from TFLM's sources, reference kernels and CMSIS-NN, on the same "
                    "QEMU mps2-an386 harness and TCG instruction counter, Invoke only, -O2; not re-measured by this script")
REFERENCE = {  # model: {runtime: (flash B, RAM B, instructions per inference)}
    "kws_ref_model.tflite": {"tflm_ref": (95_736, 24_256, 43_000_000), "tflm_cmsis_nn": (138_624, 24_884, 7_700_000)},
    "vww_96_int8.tflite": {"tflm_ref": (375_088, 102_144, 100_300_000), "tflm_cmsis_nn": (417_976, 102_772, 24_100_000)},
    "pretrainedResnet_quant.tflite": {"tflm_ref": (144_708, 55_872, 107_400_000),
                                      "tflm_cmsis_nn": (178_044, 57_060, 29_900_000)},
    "person_detect.tflite": {"tflm_ref": (338_192, 83_744, 95_700_000), "tflm_cmsis_nn": (371_736, 84_332, 22_900_000)},
    "ad01_int8.tflite": {"tflm_ref": (297_736, 3_624, 1_950_000), "tflm_cmsis_nn": (309_256, 4_300, 580_000)},
}


def shared_models() -> Path:
    return Path(os.environ.get("EDGEKIT_SHARED_MODELS", REPO.parent / "shared" / "models"))


def bench_model(path: Path, target_name: str, n_inputs: int, seed: int, work: Path) -> dict:
    """One row of the table: measurements of edgekit on QEMU and of TFLM on the host."""
    tflite = path.read_bytes()
    arena = measure_arena(tflite)
    row: dict = {"model": path.name, "tflite_bytes": len(tflite), "tflm_arena_bytes": arena.used_bytes,
                 "tflm_min_arena_bytes": arena.min_bytes}
    inp, outp = io_quantization(tflite)
    x = generated_inputs(n_inputs, inp.nbytes, seed)
    t0 = time.monotonic()
    try:
        ours, dev = run_on_emulator(tflite, get_target(target_name), x, work / path.stem)
    except UnsupportedOpError as exc:
        row["skipped"] = exc.message
        return row
    except EdgekitError as exc:  # over budget, toolchain: a result too, shown in the table
        row["failed"] = f"{type(exc).__name__}: {exc.message}"
        return row
    ref = run_tflm(tflite, x).reshape(ours.shape)
    row.update(
        machine=dev.machine,
        arena_bytes=dev.arena_bytes,
        ram_bytes=dev.ram_bytes,
        stack_bytes=dev.stack_bytes,
        flash_bytes=dev.flash_bytes,
        instructions_per_inference=dev.instructions_per_inference,
        outputs_bit_exact=float((ours == ref).mean()),
        n_inputs=n_inputs,
        emulator_seconds=round(time.monotonic() - t0, 1),
    )
    if dev.arena_bytes:
        row["arena_with_io_bytes"] = dev.arena_bytes + inp.nbytes + outp.nbytes
        row["arena_ratio"] = round(row["arena_with_io_bytes"] / row["tflm_arena_bytes"], 3)
    row["ram_ratio"] = round(dev.ram_bytes / row["tflm_arena_bytes"], 3)
    # the planner's layer-wise bound (most tensor bytes alive at once) and the arena with the input
    # and output planned inside it (codegen --io-in-arena): then the arena is all the RAM needed
    plain = generate(tflite, work / path.stem / "plan_plain")
    inside = generate(tflite, work / path.stem / "plan_io_in_arena", io_in_arena=True)
    row["arena_lower_bound_bytes"] = plain.arena_lower_bound_bytes
    row["io_in_arena_arena_bytes"] = inside.arena_bytes
    row["layers"] = profile(path, target_name, work / path.stem / "profile")
    return row


def print_table(rows: list[dict], target: str) -> None:
    print(f"edgekit generated C on QEMU ({target}) vs tflite-micro interpreter (host)")
    head = (f"{'model':<28} {'arena':>9} {'TFLM arena':>10} {'ratio':>6} {'RAM dev':>9} {'ratio':>6} {'stack':>6} "
            f"{'flash':>9} {'.tflite':>9} {'instr/inf':>12} {'bit-exact':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        if "skipped" in r or "failed" in r:
            status = f"skipped: {r['skipped']}" if "skipped" in r else f"failed: {r['failed']}"
            print(f"{r['model']:<28} {'':>9} {r['tflm_arena_bytes']:>10,} {status}")
            continue
        ipi = f"{r['instructions_per_inference']:,}" if r["instructions_per_inference"] else "n/a"
        print(
            f"{r['model']:<28} {r.get('arena_with_io_bytes') or 0:>9,} {r['tflm_arena_bytes']:>10,} {r.get('arena_ratio', 0):>6.2f} "
            f"{r['ram_bytes']:>9,} {r['ram_ratio']:>6.2f} {r['stack_bytes']:>6,} {r['flash_bytes']:>9,} {r['tflite_bytes']:>9,} "
            f"{ipi:>12} {r['outputs_bit_exact']:>9.4f}"
        )
    print("arena: edgekit's planned arena + input + output buffers (as TFLM's arena counts them); RAM dev: arena + .data + .bss + stack high-water on the device")
    print("(.bss includes the harness's input and output buffers); ratios are to TFLM's arena (goal <= 0.70);")
    print("TFLM arena: tflite-micro's allocation (x86, reference kernels); flash: whole firmware image;")
    print("instr/inf: executed guest instructions per inference (QEMU TCG plugin), not cycles.")


README_NAMES = {"kws_ref_model.tflite": "kws", "vww_96_int8.tflite": "vww", "pretrainedResnet_quant.tflite": "ResNet-8",
                "ad01_int8.tflite": "ad01", "person_detect.tflite": "person_detect"}


def _m(v: float) -> str:
    return f"{v / 1e6:.2f} M"


def markdown_table(result: dict) -> str:
    """The README's table, generated from a results JSON (tests/test_docs_figures.py checks README against it)."""
    ref = result.get("reference_tflm", {}).get("models", {})
    lines = ["| model | edgekit arena + I/O | I/O in arena | layer-wise bound | TFLM arena | RAM: edgekit / TFLM-ref* "
             "| flash: edgekit / TFLM-ref* | instructions: edgekit / TFLM-CMSIS-NN* |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "arena_with_io_bytes" not in r:
            continue
        t = ref.get(r["model"], {})
        tr, tc = t.get("tflm_ref"), t.get("tflm_cmsis_nn")
        ipi = "n/a" if not r.get("instructions_per_inference") else _m(r["instructions_per_inference"])
        lines.append(
            f"| {README_NAMES.get(r['model'], r['model'])} | {r['arena_with_io_bytes']:,} | {r['io_in_arena_arena_bytes']:,} "
            f"| {r['arena_lower_bound_bytes']:,} | {r['tflm_arena_bytes']:,} "
            f"| {r['ram_bytes']:,} / {tr[1]:,} | {r['flash_bytes']:,} / {tr[0]:,} | {ipi} / {_m(tc[2])} |"
            if tr and tc else
            f"| {README_NAMES.get(r['model'], r['model'])} | {r['arena_with_io_bytes']:,} | {r['io_in_arena_arena_bytes']:,} "
            f"| {r['arena_lower_bound_bytes']:,} | {r['tflm_arena_bytes']:,} | {r['ram_bytes']:,} / n/a "
            f"| {r['flash_bytes']:,} / n/a | {ipi} / n/a |")
    m = result.get("machine", {})
    lines += ["", f"Measured by `bench/bench_aot_vs_tflm.py` ({result['n_inputs']} seeded inputs per model, "
              f"all bit-exact with tflite-micro {m.get('tflite_micro')}): edgekit on QEMU `{m.get('emulator')}` ({result['target']}), "
              f"the TFLM arena by the interpreter on the build host ({m.get('host')}); "
              "output in `bench/results/bench_aot_vs_tflm.json`.",
              "", "\\* not measured by this benchmark: " + result.get("reference_tflm", {}).get("source", "n/a") + "."]
    return "\n".join(lines)


CORES = (("cortex-m4", "bench_aot_vs_tflm.json"), ("stm32f746", "bench_aot_vs_tflm_stm32f746.json"),
         ("cortex-m55", "bench_aot_vs_tflm_cortex-m55.json"))


def cores_table(results: list[dict]) -> str:
    """README's per-core table: edgekit's instructions per inference and flash on each emulated core."""
    lines = ["| model | " + " | ".join(f"instructions {r['target']}" for r in results) + " | "
             + " | ".join(f"flash B {r['target']}" for r in results) + " |",
             "|---|" + "---|" * (2 * len(results))]
    by_model = [{row["model"]: row for row in r["rows"]} for r in results]
    for model in [row["model"] for row in results[0]["rows"]]:
        rows = [m.get(model) for m in by_model]
        ipi = " | ".join("n/a" if not r else _m(r["instructions_per_inference"]) for r in rows)
        flash = " | ".join("n/a" if not r else f"{r['flash_bytes']:,}" for r in rows)
        lines.append(f"| {README_NAMES.get(model, model)} | {ipi} | {flash} |")
    exact = all(row["outputs_bit_exact"] == 1.0 for r in results for row in r["rows"])
    lines += ["", "Emulated on QEMU " + ", ".join(f"`{r['machine']['emulator']}` ({r['target']})" for r in results)
              + f"; measured by `bench/bench_aot_vs_tflm.py --target T` ({results[0]['n_inputs']} seeded inputs per model, "
              f"{'all' if exact else 'NOT all'} bit-exact with the tflite-micro interpreter); output in "
              + ", ".join(f"`bench/results/{name}`" for _, name in CORES[: len(results)]) + "."]
    return "\n".join(lines)


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="cortex-m4")
    ap.add_argument("--inputs", type=int, default=10, help="seeded generated inputs per model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json-out", type=Path, default=REPO / "bench" / "results" / "bench_aot_vs_tflm.json")
    ap.add_argument("--markdown", action="store_true", help="only print the README table from the existing --json-out")
    ap.add_argument("--markdown-cores", action="store_true",
                    help="only print README's per-core table from the committed JSON of each core")
    args = ap.parse_args(argv)
    if args.markdown_cores:
        print(cores_table([json.loads((REPO / "bench" / "results" / name).read_text()) for _, name in CORES]))
        return 0
    if args.markdown:
        print(markdown_table(json.loads(args.json_out.read_text())))
        return 0
    root = shared_models()
    if not root.is_dir():
        print(f"third-party models not found at {root} (set EDGEKIT_SHARED_MODELS)", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
        for rel in MODELS:
            if (root / rel).is_file():
                rows.append(bench_model(root / rel, args.target, args.inputs, args.seed, Path(tmp)))
    print_table(rows, args.target)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"host": host(), "emulator": rows[0].get("machine") if rows else None,
               "reference": "tflite-micro interpreter on the host (reference kernels)", "tflite_micro": _version("tflite-micro")}
    reference = {"source": REFERENCE_SOURCE, "fields": ["flash_bytes", "ram_bytes", "instructions_per_inference"],
                 "models": REFERENCE}
    result = {"target": args.target, "n_inputs": args.inputs, "machine": machine, "rows": rows}
    if args.target == "cortex-m4":  # the issue's TFLM figures were measured on mps2-an386 only
        result["reference_tflm"] = reference
    args.json_out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
