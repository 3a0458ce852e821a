"""What converting with a static batch of 1 changes against a dynamic batch, on the bundled digits example.

edgekit converts Keras models from a frozen concrete function with batch 1
(``edgekit.convert.int8_converter``). ``TFLiteConverter.from_keras_model``,
which edgekit used before, leaves the batch dynamic, so every Flatten computes
its shape at run time (SHAPE, STRIDED_SLICE, PACK). Both are full-int8 with
the same calibration data; the flash estimate is edgekit's (model bytes + TFLM
core + per-kernel estimates) and the arena is measured by the tflite-micro
interpreter on the host.

    python bench/bench_static_batch.py             # measure, write bench/results/bench_static_batch.json
    python bench/bench_static_batch.py --markdown  # print the README table from the JSON
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import host  # noqa: E402

RESULT = REPO / "bench" / "results" / "bench_static_batch.json"
EX = REPO / "examples" / "digits"
TARGET = "cortex-m4"


def dynamic_batch_int8(loaded, calib_x: np.ndarray) -> bytes:
    """The conversion edgekit replaced: ``from_keras_model`` (dynamic batch), otherwise the same int8 settings."""
    import tensorflow as tf

    from edgekit.convert import samples_of
    from edgekit.quiet import quiet

    conv = tf.lite.TFLiteConverter.from_keras_model(loaded.model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = samples_of(calib_x)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    with quiet():
        return bytes(conv.convert())


def _figures(tflite: bytes) -> dict:
    from edgekit.memory import estimate
    from edgekit.targets import get_target
    from edgekit.tflite_model import read_model
    from edgekit.tflm_host import measure_arena

    info = read_model(tflite)
    arena = measure_arena(tflite)
    return {"operators": len(info.operators), "op_kinds": sorted(info.ops), "int8_tflite_bytes": len(tflite),
            "flash_estimate_bytes": estimate(info, get_target(TARGET), arena).flash_bytes, "tflm_arena_bytes": arena.used_bytes}


def measure() -> dict:
    """Convert the example both ways and measure each."""
    from edgekit.convert import MAX_CALIB_SAMPLES, convert_int8
    from edgekit.data import load_data
    from edgekit.load import load_model

    loaded = load_model(EX / "model.keras")
    calib = load_data(EX / "calib.npz", "calib")
    return {"model": "examples/digits/model.keras", "target": TARGET,
            "machine": {"host": host(), "tflite_micro": version("tflite-micro"), "tensorflow": version("tensorflow")},
            "rows": {"dynamic batch": _figures(dynamic_batch_int8(loaded, calib.x[:MAX_CALIB_SAMPLES])),
                     "static batch 1": _figures(convert_int8(loaded, calib))}}


def markdown_table(result: dict) -> str:
    """The README's table for ``result`` (tests/test_docs_figures.py checks README against it)."""
    m = result["machine"]
    lines = [f"On the bundled example (int8, {result['target']}; arena measured by the `tflite-micro` interpreter",
             f"{m['tflite_micro']} on the build host, {m['host']}; flash is edgekit's estimate: model bytes + TFLM core",
             "+ per-kernel estimates; `bench/bench_static_batch.py`, `bench/results/bench_static_batch.json`):", "",
             "| | ops (kinds) | int8 .tflite | flash estimate | TFLM arena |", "|---|---|---|---|---|"]
    for name, r in result["rows"].items():
        lines.append(f"| {name} | {r['operators']} ({len(r['op_kinds'])}): {', '.join(r['op_kinds'])} | {r['int8_tflite_bytes']:,} B | "
                     f"{r['flash_estimate_bytes']:,} B | {r['tflm_arena_bytes']:,} B |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="print the README table from the committed JSON")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown_table(json.loads(RESULT.read_text())))
        return 0
    result = measure()
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(markdown_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
