"""Cold vs cached: building the emulated-Pi aarch64 root and the first emulated inference.

Usage: python bench/bench_pi_root.py [--legs litert,tflite_runtime] [--cpu cortex-a72] [--runs 2] [--json-out PATH]

Each run times ``ensure_root`` (Debian arm64 python3.11 via apt-get download,
aarch64 wheels via pip, the CPU view) and then one emulated run of a build's
``run.py`` on 32 inputs under qemu-aarch64-static. The first run starts from
an empty cache folder (a temporary ``EDGEKIT_CACHE``, so your own cache is
neither used nor touched) and pays the downloads; later runs reuse the cache.
Prints a table and writes JSON (default bench/results/bench_pi_root.json);
``--markdown`` prints the README's figure from that JSON.
Wall-clock seconds on this machine, network included: compare runs on the
same machine only. The acceptance figure is ``speedup`` (cold / cached, >= 3).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import sys

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import host  # noqa: E402


def tiny_build(folder: Path) -> Path:
    """A Pi build folder by hand: a full-int8 conv + dense model, the runner and 32 float inputs."""
    import tensorflow as tf

    from edgekit.convert import convert_int8
    from edgekit.data import Dataset
    from edgekit.load import LoadedModel
    from edgekit.resources import templates_dir

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((8, 8, 1)), tf.keras.layers.Conv2D(8, 3, activation="relu"),
                                 tf.keras.layers.Flatten(), tf.keras.layers.Dense(10)])
    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    loaded = LoadedModel("keras3", folder / "model.keras", model=model, input_shape=(None, 8, 8, 1))
    (folder / "model.tflite").write_bytes(convert_int8(loaded, Dataset(x, None, folder)))
    shutil.copyfile(templates_dir() / "rpi" / "run.py", folder / "run.py")
    np.savez(folder / "inputs.npz", x=x)
    return folder


def one_run(build: Path, legs: tuple[str, ...], cpu: str) -> dict:
    from edgekit.pi_emulator.root import ensure_root
    from edgekit.pi_emulator.run import run_runner

    t0 = time.perf_counter()
    root = ensure_root(legs=legs, cpus=(cpu,))
    t_root = time.perf_counter() - t0
    t1 = time.perf_counter()
    result = run_runner(build / "run.py", build / "model.tflite", build / "inputs.npz", cpu=cpu, leg=legs[0], root=root, work=build)
    t_run = time.perf_counter() - t1
    return {"root_seconds": round(t_root, 3), "first_inference_run_seconds": round(t_run, 3),
            "total_seconds": round(t_root + t_run, 3), "emulated_latency_ms": result.mean_latency_ms,
            "cache_bytes": root.size_bytes(), "root": root.path.name}


def markdown(result: dict) -> str:
    """The README's cold/cached figure for ``result`` (tests/test_docs_figures.py checks README against it)."""
    return (f"first run {result['cold_seconds']:.0f} s, then {result['cached_seconds']:.1f} s: wall-clock on "
            f"{result['machine']}, downloads included, `bench/bench_pi_root.py`")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--legs", default="litert", help="comma-separated runtime legs to provision (litert, tflite_runtime)")
    ap.add_argument("--cpu", default="cortex-a72")
    ap.add_argument("--runs", type=int, default=2, help="runs in all; the first one is cold")
    ap.add_argument("--json-out", type=Path, default=ROOT / "bench" / "results" / "bench_pi_root.json")
    ap.add_argument("--markdown", action="store_true", help="print the README figure from the JSON")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.json_out.read_text())))
        return
    legs = tuple(args.legs.split(","))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-pi-") as tmp:
        build = tiny_build(Path(tmp))
        os.environ["EDGEKIT_CACHE"] = str(Path(tmp) / "cache")
        runs = [one_run(build, legs, args.cpu) for _ in range(max(2, args.runs))]
    cold, cached = runs[0], min(runs[1:], key=lambda r: r["total_seconds"])
    result = {
        "legs": list(legs), "cpu": args.cpu, "runs": runs, "machine": host(),
        "cold_seconds": cold["total_seconds"], "cached_seconds": cached["total_seconds"],
        "speedup": round(cold["total_seconds"] / cached["total_seconds"], 2),
        "cache_megabytes": round(cold["cache_bytes"] / 1e6, 1),
        "note": "cold = empty EDGEKIT_CACHE (downloads included); cached = same cache; latency is emulated, not a Pi benchmark",
    }
    print(f"{'run':<8}{'root s':>10}{'first run s':>14}{'total s':>10}{'cache MB':>10}")
    for i, r in enumerate(runs):
        print(f"{'cold' if i == 0 else 'cached':<8}{r['root_seconds']:>10.2f}{r['first_inference_run_seconds']:>14.2f}"
              f"{r['total_seconds']:>10.2f}{r['cache_bytes'] / 1e6:>10.1f}")
    print(f"speedup (cold / cached): {result['speedup']}x")
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
