"""edgekit's generated C on the host versus the tflite-micro interpreter: memory and bit-exactness.

For every int8 model under ../shared/models (or EDGEKIT_SHARED_MODELS) prints:

- arena: edgekit's planned arena, its lower bound (the most tensor bytes alive
  at one op), and the arena TFLM allocated (measured with the tflite-micro
  package, reference kernels; it also holds the I/O tensors and TFLM's
  persistent data), with the ratios arena/TFLM and (arena + I/O)/TFLM;
- const data: weights and host-computed parameters emitted as const arrays;
- outputs: the fraction of output bytes equal to tflite-micro's on N seeded
  generated inputs, and the largest difference in LSB;
- host time: microseconds per inference of the host-compiled code (gcc -O2).

    python bench/bench_aot_host.py [--inputs 100] [--seed 0] [--json out.json]
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

from edgekit.aot.hostcheck import generated_inputs, host_check  # noqa: E402
from edgekit.errors import EdgekitError  # noqa: E402


def shared_models() -> Path:
    return Path(os.environ.get("EDGEKIT_SHARED_MODELS", REPO.parent / "shared" / "models"))


def bench_model(path: Path, n: int, seed: int, work: Path) -> dict:
    from edgekit.tflm_host import measure_arena

    tfl = path.read_bytes()
    row: dict = {"model": path.name}
    try:
        t = time.perf_counter()
        r = host_check(tfl, generated_inputs(tfl, n, seed), work)
        row["check_seconds"] = round(time.perf_counter() - t, 2)
    except EdgekitError as exc:
        row["skipped"] = exc.one_line()
        return row
    cg = r.codegen
    row.update(
        ops=len(cg.ops), arena=cg.arena_bytes, lower_bound=cg.arena_lower_bound_bytes, io=cg.input_bytes + cg.output_bytes,
        const=cg.weight_bytes, overlapped_ops=cg.overlapped_ops, bit_exact=r.bit_exact_fraction,
        max_lsb=r.max_abs_lsb_diff, n_inputs=r.n_inputs,
    )
    # host speed: rerun the compiled binary on the same inputs
    import subprocess

    exe, fin = work / "host" / "edgekit_host", work / "host" / "inputs.bin"
    t = time.perf_counter()
    subprocess.run([str(exe), str(fin), str(work / "host" / "again.bin")], check=True)
    row["host_us_per_inference"] = round((time.perf_counter() - t) / n * 1e6, 1)
    try:
        m = measure_arena(tfl)
        row["tflm_arena"] = m.used_bytes
        row["ratio"] = round(cg.arena_bytes / m.used_bytes, 3)
        row["ratio_with_io"] = round((cg.arena_bytes + row["io"]) / m.used_bytes, 3)
    except EdgekitError as exc:
        row["tflm_arena"] = None
        row["tflm_error"] = exc.one_line()
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    root = shared_models()
    if not root.is_dir():
        print(f"no models at {root} (set EDGEKIT_SHARED_MODELS)", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-aot-") as tmp:
        for path in sorted(root.glob("*/*.tflite")):
            rows.append(bench_model(path, args.inputs, args.seed, Path(tmp) / path.stem))
    cols = ["model", "ops", "arena", "lower_bound", "io", "tflm_arena", "ratio", "ratio_with_io", "const",
            "bit_exact", "max_lsb", "host_us_per_inference"]
    print(" | ".join(cols))
    for r in rows:
        if "skipped" in r:
            print(f"{r['model']} | skipped: {r['skipped'][:100]}")
        else:
            print(" | ".join(str(r.get(c, "")) for c in cols))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
