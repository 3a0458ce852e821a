"""QAT, weight clustering and distillation, measured against the issue's "done when" lines.

- QAT: a CNN on generated noisy shapes (32x32, 5 classes) quantized after
  training with a tiny calibration set (one image, and the four dimmest
  images) loses accuracy; the QAT stage (which learns its ranges from the
  training set) converted with the same tiny set wins it back. Also printed:
  post-training int8 with a proper calibration set (200 images), and the
  layer the quantization debugger blames.
- Clustering: the digits CNN (both Keras kinds), 16 clusters: int8 weight
  bytes vs 4-bit indices + per-channel tables, accuracy, TFLM LUT .tflite size.
- Distillation: a half-width student of the shapes CNN, distilled vs trained on
  the labels alone (same epochs, same seeds), averaged over the seeds; with
  clean training labels and with 25% of them flipped (teacher and students
  see the same noisy labels; accuracy is on clean eval labels).

    python bench/bench_qat_distill.py [--seeds 3] [--json bench/results/qat_distill.json] [--only qat,cluster,distill]
    python bench/bench_qat_distill.py --markdown   # the docs tables from the JSON

``--only`` updates just those parts of an existing JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from edgekit.data import Dataset  # noqa: E402
from edgekit.load import LoadedModel  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import host  # noqa: E402


def noisy_shapes(n: int, seed: int, size: int = 32, noise: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of one shape each (0 disc, 1 square, 2 triangle, 3 cross, 4 ring), random size, place and brightness, Gaussian noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    x = np.empty((n, size, size, 1), np.float32)
    y = rng.integers(0, 5, n)
    for i in range(n):
        r = rng.uniform(5, 11)
        cx, cy = rng.uniform(r, size - r, 2)
        a = rng.uniform(0.4, 1.0)
        dx, dy = xx - cx, yy - cy
        d2 = dx * dx + dy * dy
        mask = [
            d2 <= r * r,
            (abs(dx) <= r * 0.8) & (abs(dy) <= r * 0.8),
            (dy <= r * 0.7) & (dy >= -r * 0.9 + 1.6 * abs(dx)),
            ((abs(dx) <= r * 0.25) | (abs(dy) <= r * 0.25)) & (abs(dx) <= r) & (abs(dy) <= r),
            (d2 <= r * r) & (d2 >= (0.6 * r) ** 2),
        ][y[i]]
        x[i, ..., 0] = a * mask + rng.normal(0, noise, (size, size))
    return x, y.astype(np.int64)


def shapes_cnn(width: int = 8, epochs: int = 15, seed: int = 0, data=None):
    """The shapes CNN (Keras 3): three 3x3 convs (width, 2w, 4w), global pooling, softmax."""
    import keras

    keras.utils.set_random_seed(seed)
    m = keras.Sequential([
        keras.Input((32, 32, 1)),
        keras.layers.Conv2D(width, 3, activation="relu"),
        keras.layers.MaxPool2D(),
        keras.layers.Conv2D(2 * width, 3, activation="relu"),
        keras.layers.MaxPool2D(),
        keras.layers.Conv2D(4 * width, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(5, activation="softmax"),
    ])
    m.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    m.fit(*data, epochs=epochs, batch_size=32, verbose=0)
    return m


def keras_acc(model, x, y) -> float:
    return float(np.mean(model.predict(x, verbose=0, batch_size=256).argmax(1) == y))


def bench_qat(train, ev) -> dict:
    from edgekit.compress import qat
    from edgekit.compress.finetune import copy_model, fine_tune
    from edgekit.convert import convert_int8
    from edgekit.quant_debug import layer_errors, tflite_accuracy

    xt, yt = train
    model = shapes_cnn(data=train)
    loaded = LoadedModel("keras3", Path("shapes.keras"), model=model, input_shape=(None, 32, 32, 1))
    dim = np.argsort(xt.max(axis=(1, 2, 3)))[:4]
    calibs = {"200 images": xt[:200], "1 image": xt[:1], "4 dimmest": xt[dim]}
    t0 = time.perf_counter()
    qat_model, details = qat.apply(loaded, qat.Config(epochs=2, learning_rate=1e-3), Dataset(xt, yt, Path("train")), seed=0)
    qat_s = time.perf_counter() - t0
    # control: the same 2 extra epochs without fake quantization, so QAT's gain is not just more training
    tuned = copy_model(model)
    fine_tune(tuned, Dataset(xt, yt, Path("train")), epochs=2, learning_rate=1e-3, batch_size=32, seed=0, stage="control")
    tuned_loaded = LoadedModel("keras3", Path("shapes-tuned.keras"), model=tuned, input_shape=(None, 32, 32, 1))
    out = {"float": keras_acc(model, *ev), "float_tuned": keras_acc(tuned, *ev), "qat_seconds": round(qat_s, 1), "rows": []}
    for name, cx in calibs.items():
        cal = Dataset(cx, None, Path(name))
        ptq = tflite_accuracy(convert_int8(loaded, cal), *ev)
        ptq_tuned = tflite_accuracy(convert_int8(tuned_loaded, cal), *ev)
        q = tflite_accuracy(convert_int8(qat_model, cal), *ev)
        lost = out["float"] - ptq
        lost_tuned = out["float_tuned"] - ptq_tuned
        row = {"calibration": name, "ptq_int8": ptq, "qat_int8": q, "ptq_loss_points": round(100 * lost, 2),
               "recovered": round((q - ptq) / lost, 3) if lost > 0 else None,
               "tuned_ptq_int8": ptq_tuned, "tuned_ptq_loss_points": round(100 * lost_tuned, 2),
               "recovered_vs_tuned": round((q - ptq_tuned) / lost_tuned, 3) if lost_tuned > 0 else None}
        if name == "1 image":
            worst = layer_errors(loaded, cal, Dataset(xt[:64], None, Path("train")), max_samples=64).worst()
            row["worst_layer"] = {"name": worst.name, "op": worst.op, "rmse_over_scale": round(worst.rmse_over_scale, 2)}
        out["rows"].append(row)
    out["ranges"] = details["ranges"]
    return out


def bench_cluster() -> dict:
    from edgekit.compress import cluster
    from edgekit.convert import convert_int8
    from edgekit.examples import digits_split, train_digits_cnn
    from edgekit.quant_debug import tflite_accuracy

    s = digits_split()
    train, calib = Dataset(*s["train"], Path("train")), Dataset(*s["calib"], Path("calib"))
    rows = []
    for kind in ("keras3", "tf_keras"):
        loaded = LoadedModel(kind, Path(f"digits-{kind}"), model=train_digits_cnn(kind), input_shape=(None, 8, 8, 1))
        base = convert_int8(loaded, calib)
        out, det = cluster.apply(loaded, cluster.Config(clusters=16, epochs=2), train, seed=0)
        tfl = convert_int8(out, calib)
        st = cluster.device_weight_bytes(tfl, bits=4)
        rows.append({
            "kind": kind, "method": det["method"],
            "int8_acc": tflite_accuracy(base, *s["eval"]), "clustered_acc": tflite_accuracy(tfl, *s["eval"]),
            "int8_weight_bytes": st.int8_bytes, "indexed_weight_bytes": st.indexed_bytes, "saving": round(st.saving, 4),
            "tflite_bytes": len(tfl), "tflm_lut_tflite_bytes": len(cluster.tflm_compress(tfl)),
        })
    return {"rows": rows}


def noisy_labels(y: np.ndarray, fraction: float, seed: int = 5) -> np.ndarray:
    """``y`` with ``fraction`` of the labels replaced by a different class, uniformly (symmetric label noise)."""
    rng = np.random.default_rng(seed)
    flip = rng.random(len(y)) < fraction
    return np.where(flip, (y + rng.integers(1, 5, len(y))) % 5, y)


DISTILL_SETTINGS = {
    "labels only": dict(alpha=0.0),
    "KD a=0.5 T=2": dict(alpha=0.5, temperature=2.0),
    "KD a=0.8 T=2": dict(alpha=0.8, temperature=2.0),
    "KD a=0.3 T=2": dict(alpha=0.3, temperature=2.0),
}


def bench_distill(train, ev, seeds: int, label_noise: float) -> dict:
    """Teacher and students trained on ``train`` with ``label_noise`` of its labels flipped; accuracy on clean ``ev``."""
    from edgekit.compress import distill

    train = (train[0], noisy_labels(train[1], label_noise)) if label_noise else train
    teacher = shapes_cnn(width=8, data=train)
    loaded = LoadedModel("keras3", Path("shapes.keras"), model=teacher, input_shape=(None, 32, 32, 1))
    tr = Dataset(*train, Path("train"))
    out = {"label_noise": label_noise, "teacher": keras_acc(teacher, *ev), "epochs": 20, "rows": []}
    for name, kw in DISTILL_SETTINGS.items():
        accs = []
        for seed in range(seeds):
            student, det = distill.apply(loaded, distill.Config(width=0.5, epochs=20, **kw), tr, seed=seed)
            accs.append(keras_acc(student.model, *ev))
        out["rows"].append({"student": name, **kw, "accuracy_per_seed": accs, "mean": float(np.mean(accs)),
                            "student_params": det["student_params"], "teacher_params": det["teacher_params"]})
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _qat_table(r: dict) -> list[str]:
    out = [f"Float accuracy {r['float']:.3f}, control (2 more float epochs) {r['float_tuned']:.3f}; int8 accuracies on "
           "LiteRT's reference kernels.", "",
           "| calibration | PTQ int8 | loss | control PTQ int8 | loss | QAT int8 | recovered (vs control) |",
           "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        out.append(f"| {row['calibration']} | {row['ptq_int8']:.3f} | {row['ptq_loss_points']:.1f} p | {row['tuned_ptq_int8']:.3f} | "
                   f"{row['tuned_ptq_loss_points']:.1f} p | {row['qat_int8']:.3f} | "
                   f"{_pct(row['recovered'])} ({_pct(row['recovered_vs_tuned'])}) |")
    worst = next((row["worst_layer"] for row in r["rows"] if "worst_layer" in row), None)
    if worst:
        out += ["", f"With one calibration image the quantization debugger names `{worst['name']}` ({worst['op']}) "
                    f"as the worst layer (rmse/scale {worst['rmse_over_scale']})."]
    return out


def _cluster_table(r: dict) -> list[str]:
    out = ["| kind | method | int8 acc | clustered int8 acc | int8 weight bytes | 4-bit indexed | saving | .tflite | TFLM LUT .tflite |",
           "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        out.append(f"| {row['kind']} | {row['method']} | {row['int8_acc']:.3f} | {row['clustered_acc']:.3f} | "
                   f"{row['int8_weight_bytes']:,} | {row['indexed_weight_bytes']:,} | {100 * row['saving']:.1f}% | "
                   f"{row['tflite_bytes']:,} | {row['tflm_lut_tflite_bytes']:,} |")
    return out


def _distill_table(clean: dict, noisy: dict) -> list[str]:
    n = len(clean["rows"][0]["accuracy_per_seed"])
    out = [f"| student | clean labels: mean of {n} | vs labels only | 25% noisy labels: mean of {n} | vs labels only |",
           "|---|---|---|---|---|"]
    base_c, base_n = clean["rows"][0]["mean"], noisy["rows"][0]["mean"]
    for c, z in sorted(zip(clean["rows"], noisy["rows"]), key=lambda p: (p[0]["alpha"] > 0, p[0]["alpha"] != 0.3, p[0]["alpha"])):
        name = "labels only (alpha 0)" if c["alpha"] == 0 else f"KD alpha {c['alpha']}, T {c['temperature']:g}" + (
            " (default)" if c["alpha"] == 0.3 else "")
        dc = "" if c["alpha"] == 0 else f"{100 * (c['mean'] - base_c):+.1f} p"
        dn = "" if c["alpha"] == 0 else f"{100 * (z['mean'] - base_n):+.1f} p"
        out.append(f"| {name} | {c['mean']:.4f} | {dc} | {z['mean']:.4f} | {dn} |")
    return out + ["", f"Teacher accuracy: {clean['teacher']:.3f} (clean), {noisy['teacher']:.3f} (noisy); "
                      "accuracies of the float Keras models on the clean eval set."]


def markdown_tables(result: dict) -> dict[str, str]:
    """The docs' blocks for ``result``, by part (source, qat, cluster, distill); tests/test_docs_figures.py checks the docs."""
    m = result.get("machine", {})
    out = {"source": f"Measured by `bench/bench_qat_distill.py` (`bench/results/qat_distill.json`) on {m.get('host')}, "
                     f"TensorFlow {m.get('tensorflow')}, tfmot {m.get('tfmot')}; int8 accuracies on {m.get('runtime')}, float ones on Keras."}
    if "qat" in result:
        out["qat"] = "\n".join(_qat_table(result["qat"]))
    if "cluster" in result:
        out["cluster"] = "\n".join(_cluster_table(result["cluster"]))
    clean, noisy = result.get("distill_label_noise_0.0"), result.get("distill_label_noise_0.25")
    if clean and noisy:
        out["distill"] = "\n".join(_distill_table(clean, noisy))
    return out


def _versions() -> dict:
    from importlib.metadata import version

    return {"host": host(), "tensorflow": version("tensorflow"), "tfmot": version("tensorflow-model-optimization"),
            "runtime": "LiteRT reference kernels on the host (int8)"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "qat_distill.json"))
    ap.add_argument("--only", default="qat,cluster,distill")
    ap.add_argument("--markdown", action="store_true", help="print the docs tables from the JSON")
    args = ap.parse_args(argv)
    if args.markdown:
        print("\n\n".join(markdown_tables(json.loads(Path(args.json).read_text())).values()))
        return 0
    parts = set(args.only.split(","))
    train, ev = noisy_shapes(3000, seed=1), noisy_shapes(1000, seed=2)
    results: dict = json.loads(Path(args.json).read_text()) if Path(args.json).exists() and parts != {"qat", "cluster", "distill"} else {}
    results["machine"] = _versions()
    if "qat" in parts:
        r = results["qat"] = bench_qat(train, ev)
        print(f"\nQAT (noisy shapes CNN, float accuracy {r['float']:.3f}, {r['float_tuned']:.3f} after 2 more float epochs; "
              f"QAT 2 epochs in {r['qat_seconds']} s)")
        print(f"{'calibration':<12} {'PTQ int8':>9} {'QAT int8':>9} {'PTQ loss':>9} {'recovered':>10}"
              f" | {'tuned PTQ':>9} {'loss':>6} {'recovered':>10}")
        for row in r["rows"]:
            rec = "-" if row["recovered"] is None else f"{100 * row['recovered']:.0f}%"
            rec2 = "-" if row["recovered_vs_tuned"] is None else f"{100 * row['recovered_vs_tuned']:.0f}%"
            print(f"{row['calibration']:<12} {row['ptq_int8']:>9.3f} {row['qat_int8']:>9.3f} {row['ptq_loss_points']:>8.1f}p {rec:>10}"
                  f" | {row['tuned_ptq_int8']:>9.3f} {row['tuned_ptq_loss_points']:>5.1f}p {rec2:>10}")
            if "worst_layer" in row:
                w = row["worst_layer"]
                print(f"  worst layer under PTQ ({row['calibration']}): {w['op']} {w['name']} rmse/scale {w['rmse_over_scale']}")
    if "cluster" in parts:
        r = results["cluster"] = bench_cluster()
        print("\nClustering (digits CNN, 16 clusters, 4-bit indices + per-channel tables)")
        print(f"{'kind':<9} {'method':<7} {'int8 acc':>8} {'clust acc':>9} {'int8 W bytes':>12} {'indexed':>8} {'saving':>7} {'tflite':>7} {'TFLM LUT':>9}")
        for row in r["rows"]:
            print(f"{row['kind']:<9} {row['method']:<7} {row['int8_acc']:>8.3f} {row['clustered_acc']:>9.3f} {row['int8_weight_bytes']:>12} "
                  f"{row['indexed_weight_bytes']:>8} {100 * row['saving']:>6.1f}% {row['tflite_bytes']:>7} {row['tflm_lut_tflite_bytes']:>9}")
    for noise in (0.0, 0.25) if "distill" in parts else ():
        r = results[f"distill_label_noise_{noise}"] = bench_distill(train, ev, args.seeds, noise)
        print(f"\nDistillation (noisy shapes, {100 * noise:.0f}% of train labels flipped, teacher accuracy {r['teacher']:.3f}, "
              f"half-width students, {r['epochs']} epochs, {args.seeds} seeds)")
        base = r["rows"][0]["mean"]
        for row in r["rows"]:
            print(f"{row['student']:<13} mean {row['mean']:.4f} ({100 * (row['mean'] - base):+.1f}p)  per seed {', '.join(f'{a:.3f}' for a in row['accuracy_per_seed'])}"
                  f"  ({row['student_params']} vs {row['teacher_params']} weights)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
