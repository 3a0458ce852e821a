"""What each bundled compression recipe buys on the device, for both Keras kinds, through `edgekit compare`.

Usage: python bench/bench_compress.py [--target cortex-m4] [--emulator] [--seeds 0,1,2] [--json-out PATH]

Models (trained here, seeded): the bundled 8x8 digits CNN and the same digits
upscaled 4x to 32x32 with a 32/32-channel CNN (there activations, not tensor
metadata, dominate the TFLM arena). For each model, Keras kind and seed it
runs `edgekit.compare.compare` over the recipes and checks the issue's
"done when" numbers against the plain int8 build (recipe `none`):

- structured50: int8 .tflite and TFLM arena each at least 40% smaller, top-1
  within 2 points (each criterion reported on its own: the arena one is meant
  for digits32, where activations dominate the arena);
- lowrank50: largest Dense layer's parameters at most halved, at most 1 point
  of top-1 lost.

Prints a table and writes JSON (default bench/results/bench_compress.json);
``--markdown`` prints the docs table (docs/compression.md) from that JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import sys

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import host  # noqa: E402

MODELS = {"digits8": "digits 8x8 CNN", "digits32": "digits 32x32 CNN (32/32 ch)"}
RECIPES = ("none", "prune50", "prune2x4", "structured50", "lowrank50", "structured50-lowrank")


def _keras(kind: str):
    if kind == "keras3":
        import keras
    else:
        import tf_keras as keras
    return keras


def write_task(folder: Path, task: str, kind: str, seed: int) -> Path:
    """Write train/calib/eval .npz and the trained model for ``task`` (digits8 or digits32); return the model path."""
    from edgekit.examples import digits_split, train_digits_cnn

    folder.mkdir(parents=True, exist_ok=True)
    split = digits_split(seed)
    scale = 4 if task == "digits32" else 1
    for name, (x, y) in split.items():
        np.savez_compressed(folder / f"{name}.npz", x=np.kron(x, np.ones((1, scale, scale, 1), np.float32)), y=y)
    if task == "digits8":
        model = train_digits_cnn(kind, seed=seed)
    else:
        keras = _keras(kind)
        keras.utils.set_random_seed(seed)
        L = keras.layers
        model = keras.Sequential([
            keras.Input((32, 32, 1)),
            L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
            L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
            L.Flatten(), L.Dense(32, activation="relu"), L.Dense(10, activation="softmax"),
        ])
        model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        x, y = np.load(folder / "train.npz")["x"], split["train"][1]
        model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    path = folder / ("model.keras" if kind == "keras3" else "model.h5")
    model.save(path)
    return path


def checks(rows: dict[str, dict], out: Path) -> dict[str, dict]:
    """The done-when numbers of one comparison, each with pass/fail."""
    base, res = rows["none"], {}
    s = rows.get("structured50")
    if s and not s["error"]:
        size_cut = 1 - s["int8_tflite_bytes"] / base["int8_tflite_bytes"]
        arena_cut = 1 - s["arena_bytes"] / base["arena_bytes"] if base["arena_bytes"] else None
        drop = base["accuracy_deployed"] - s["accuracy_deployed"]
        res["structured50"] = {"int8_size_cut": round(size_cut, 4), "arena_cut": None if arena_cut is None else round(arena_cut, 4),
                               "top1_drop_points": round(100 * drop, 3),
                               # on the 8x8 model TFLM's fixed per-tensor bookkeeping is a third of the arena: judge the arena on digits32
                               "size_pass": size_cut >= 0.4, "arena_pass": (arena_cut or 0) >= 0.4, "accuracy_pass": drop <= 0.02}
    lr = rows.get("lowrank50")
    if lr and not lr["error"]:
        rep = json.loads((out / lr["out_dir"] / "report.json").read_text())
        layer = rep["compression"][0]["details"]["per_layer"][0]
        drop = base["accuracy_deployed"] - lr["accuracy_deployed"]
        res["lowrank50"] = {"layer": layer["layer"], "params_before": layer["params_before"], "params_after": layer["params_after"],
                            "top1_drop_points": round(100 * drop, 3),
                            "pass": layer["params_after"] <= layer["params_before"] / 2 and drop <= 0.01}
    return res


def _span(values: list[float], fmt: str = ".0f", unit: str = " %") -> str:
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return f"{lo}{unit}" if lo == hi else f"{lo}–{hi}{unit}"


def _cut(new: int, base: int) -> str:
    return f" ({100 * (new / base - 1):+.0f} %)" if new != base else ""


def markdown_table(result: dict) -> str:
    """The docs table and its summary for ``result`` (tests/test_docs_figures.py checks docs/compression.md against it)."""
    lines = ["| model | Keras | seed | recipe | int8 .tflite | TFLM arena | instructions (QEMU) | top-1 (deployed int8) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["results"]:
        rows = {row["recipe"]: row for row in r["rows"]}
        base = rows["none"]
        for i, (name, row) in enumerate(rows.items()):
            head = f"| {MODELS[r['task']]} | {r['kind']} | {r['seed']} |" if i == 0 else "| | | |"
            if row["error"]:
                lines.append(f"{head} {name} | {row['error']} | | | |")
                continue
            ins = row["instructions_per_inference"]
            ins_text = "n/a" if ins is None else f"{ins:,}" + (_cut(ins, base["instructions_per_inference"]) if name != "none" else "")
            lines.append(f"{head} {name} | {row['int8_tflite_bytes']:,} B{_cut(row['int8_tflite_bytes'], base['int8_tflite_bytes'])} | "
                         f"{row['arena_bytes']:,} B{_cut(row['arena_bytes'], base['arena_bytes'])} | {ins_text} | "
                         f"{100 * row['accuracy_deployed']:.2f} % |")
    runs = result["results"]
    s50 = [r["checks"]["structured50"] for r in runs if "structured50" in r["checks"]]
    lr = [r["checks"]["lowrank50"] for r in runs if "lowrank50" in r["checks"]]
    lines.append("")
    if s50:
        arena = {t: [r["checks"]["structured50"]["arena_cut"] for r in runs if r["task"] == t and "structured50" in r["checks"]]
                 for t in MODELS}
        arena_text = ", ".join(f"{_span([100 * x for x in a])} on the {MODELS[t]}" for t, a in arena.items() if a)
        lines.append(f"- `structured50` over {len(s50)} runs: int8 `.tflite` cut by "
                     f"{_span([100 * c['int8_size_cut'] for c in s50])}, TFLM arena by {arena_text}; largest top-1 drop "
                     f"{max(c['top1_drop_points'] for c in s50):+.2f} points.")
    if lr:
        params = sorted({(c["params_before"], c["params_after"]) for c in lr})
        lines.append(f"- `lowrank50` met its criterion (largest Dense at most half its parameters, at most 1 point of top-1 lost) "
                     f"in {sum(c['pass'] for c in lr)} of {len(lr)} runs (largest Dense: "
                     + ", ".join(f"{b:,} → {a:,} parameters" for b, a in params)
                     + f"); largest top-1 drop {max(c['top1_drop_points'] for c in lr):+.2f} points.")
    speedups = [row["speedup"] for r in runs for row in r["rows"] if row["recipe"] == "none" and row["speedup"]]
    if speedups:
        lines.append(f"- Host latency, float / int8 (plain build): {_span(speedups, '.1f', 'x')} across the runs: wall-clock "
                     "on a shared machine, so noisy; instructions per inference are the stable speed figure.")
    lines.append(f"\nMeasured by `bench/bench_compress.py` ({result['target']}): sizes and top-1 from each build's report "
                 f"({result['runtime']}), on {result['machine']}; instructions per inference by edgekit's C runtime on QEMU "
                 f"`{result['emulator'] or 'n/a'}`; output in `bench/results/bench_compress.json`.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="cortex-m4")
    ap.add_argument("--tasks", default="digits8,digits32")
    ap.add_argument("--kinds", default="keras3,tf_keras")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--emulator", action="store_true", help="also run each build under QEMU (instructions per inference)")
    ap.add_argument("--json-out", type=Path, default=ROOT / "bench" / "results" / "bench_compress.json")
    ap.add_argument("--markdown", action="store_true", help="print the docs table from the JSON")
    args = ap.parse_args()
    if args.markdown:
        print(markdown_table(json.loads(args.json_out.read_text())))
        return

    from edgekit.compare import compare
    from edgekit.targets import get_target

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            for kind in args.kinds.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    d = Path(tmp) / f"{task}-{kind}-{seed}"
                    model = write_task(d / "data", task, kind, seed)
                    t0 = time.perf_counter()
                    cmp = compare(model, args.target, recipes=args.recipes, calib=d / "data" / "calib.npz", eval=d / "data" / "eval.npz",
                                  train=d / "data" / "train.npz", out_dir=d / "cmp", seed=seed, emulator=args.emulator)
                    rows = {r.recipe: r.to_dict() for r in cmp.rows}
                    results.append({"task": task, "kind": kind, "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
                                    "rows": list(rows.values()), "checks": checks(rows, d / "cmp")})
                    print(f"\n## {task} {kind} seed {seed} ({args.target})")
                    print("\n".join(line for line in cmp.to_markdown().splitlines() if line.startswith("|")))
                    for name, c in results[-1]["checks"].items():
                        print(f"check {name}: {c}")
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    target = get_target(args.target)
    result = {"target": args.target, "results": results, "machine": host(),
              "runtime": "accuracy on the tflite-micro interpreter (tflm-host), arena measured by it",
              "emulator": target.emulator.machine if args.emulator and target.emulator else None}
    args.json_out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {args.json_out}")


if __name__ == "__main__":
    main()
