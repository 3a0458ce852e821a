"""Per-stage times of one `edgekit build`, and edgekit's overhead over a bare full-int8 conversion.

Usage: python bench/bench_build.py [--model M --calib C --eval E --target T] [--json-out PATH]
Defaults to the bundled digits example for cortex-m4. Prints a table and
writes JSON (default bench/results/bench_build.json). Wall-clock seconds on
this machine: compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "examples" / "digits"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import host  # noqa: E402


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it: no absolute paths in committed results."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return path.name


def bare_conversion_seconds(model_path: Path, calib_path: Path) -> float:
    """Load and run edgekit's own full-int8 converter setup on the same calibration data, nothing else."""
    from edgekit.convert import MAX_CALIB_SAMPLES, int8_converter
    from edgekit.load import load_model
    from edgekit.quiet import quiet

    t0 = time.perf_counter()
    loaded = load_model(model_path)
    conv = int8_converter(loaded, np.load(calib_path)["x"][:MAX_CALIB_SAMPLES])
    with quiet():
        conv.convert()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=EX / "model.keras")
    ap.add_argument("--calib", type=Path, default=EX / "calib.npz")
    ap.add_argument("--eval", type=Path, default=EX / "eval.npz")
    ap.add_argument("--target", default="cortex-m4")
    ap.add_argument("--json-out", type=Path, default=ROOT / "bench" / "results" / "bench_build.json")
    args = ap.parse_args()

    from edgekit.pipeline import build

    bare_conversion_seconds(args.model, args.calib)  # warm TensorFlow up so neither side pays the import
    bare = bare_conversion_seconds(args.model, args.calib)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = build(args.model, args.target, calib=args.calib, eval=args.eval, out_dir=Path(tmp) / "out")
        total = time.perf_counter() - t0
    stages = report.data["stages"]
    result = {
        "model": _shown(args.model), "target": args.target, "machine": host(),
        "runtime": "wall-clock seconds on the build host (LiteRT and the tflite-micro interpreter)", "eval_samples": report.data["verified_on"]["samples"],
        "stages": stages, "edgekit_total_s": round(total, 3), "bare_convert_s": round(bare, 3),
        "overhead_s": round(total - bare, 3), "overhead_ratio": round(total / bare, 2),
    }
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"edgekit build {args.model.name} → {args.target}")
    t.add_column("stage")
    t.add_column("seconds", justify="right")
    for s in stages:
        t.add_row(s["name"], f"{s['seconds']:.2f}")
    t.add_row("edgekit total", f"{total:.2f}")
    t.add_row("bare full-int8 conversion (edgekit.convert)", f"{bare:.2f}")
    t.add_row("overhead (verify, memory, emit, ...)", f"{total - bare:.2f} ({total / bare:.1f}x)")
    Console().print(t)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
