"""Does an ensemble of two teachers distil a better student than one teacher?

Two MLP teachers (64 -> 128 -> 10, softmax) are trained on the digits
training split with different seeds. A width-1/16 student (64 -> 8 -> 10) is
distilled by edgekit's ``distill`` stage (defaults: T 2, alpha 0.3,
10 epochs) from teacher A alone and from the ensemble A + B (averaged
probabilities), once per seed; accuracies are float Keras on the eval split.

    python bench/bench_distill_ensemble.py             # measure, write bench/results/bench_distill_ensemble.json
    python bench/bench_distill_ensemble.py --markdown  # print the docs table from the JSON
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import host  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULT = REPO / "bench" / "results" / "bench_distill_ensemble.json"
SEEDS = (0, 1, 2, 3, 4)
STUDENT_WIDTH = 0.0625


def _teacher(x: np.ndarray, y: np.ndarray, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    m = keras.Sequential([keras.layers.Input((64,)), keras.layers.Dense(128, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
    m.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    m.fit(x, y, epochs=30, batch_size=32, verbose=0)
    return m


def _accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(model.predict(x, batch_size=256, verbose=0), axis=-1) == y))


def measure(folder: Path, seeds=SEEDS) -> dict:
    """Train the teachers into ``folder``, distil one student per seed from A and from A + B; accuracies as fractions."""
    from edgekit.compress.distill import Config, apply, ensemble_logits
    from edgekit.data import Dataset
    from edgekit.examples import digits_split
    from edgekit.load import load_model

    split = digits_split()
    (xt, yt), (xe, ye) = split["train"], split["eval"]
    xt, xe = xt.reshape(len(xt), 64), xe.reshape(len(xe), 64)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, seed in (("teacher_a", 101), ("teacher_b", 202)):
        paths.append(folder / f"{name}.keras")
        _teacher(xt, yt, seed).save(paths[-1])
    a, b = load_model(paths[0]), load_model(paths[1])
    train = Dataset(xt, yt, folder / "train.npz")
    ens_acc = float(np.mean(np.argmax(ensemble_logits([a.model, b.model], xe), axis=-1) == ye))
    rows = []
    for seed in seeds:
        single, _ = apply(a, Config(width=STUDENT_WIDTH), train, seed)
        both, details = apply(a, Config(width=STUDENT_WIDTH, teachers=[str(paths[1])]), train, seed)
        rows.append({"seed": seed, "single_teacher": _accuracy(single.model, xe, ye), "ensemble": _accuracy(both.model, xe, ye),
                     "student_params": details["student_params"]})
    return {
        "teachers": {"a": _accuracy(a.model, xe, ye), "b": _accuracy(b.model, xe, ye), "ensemble": ens_acc},
        "students": rows,
        "mean": {"single_teacher": float(np.mean([r["single_teacher"] for r in rows])),
                 "ensemble": float(np.mean([r["ensemble"] for r in rows]))},
        "eval_samples": int(len(xe)),
        "runtime": "keras (float32), build host",
        "machine": host(),
    }


def markdown_table(result: dict) -> str:
    """The docs table for ``result``."""
    t = result["teachers"]
    lines = [f"| | accuracy on {result['eval_samples']} eval digits |", "|---|---|",
             f"| teacher A | {100 * t['a']:.2f} % |", f"| teacher B | {100 * t['b']:.2f} % |",
             f"| ensemble A + B (mean probabilities) | {100 * t['ensemble']:.2f} % |"]
    for r in result["students"]:
        lines.append(f"| student, seed {r['seed']}: from A / from A + B | {100 * r['single_teacher']:.2f} % / {100 * r['ensemble']:.2f} % |")
    m = result["mean"]
    lines.append(f"| student, mean of {len(result['students'])} seeds: from A / from A + B | "
                 f"{100 * m['single_teacher']:.2f} % / {100 * m['ensemble']:.2f} % |")
    lines += ["", f"Runtime: {result['runtime']}; machine: {result['machine']}; produced by "
              "`bench/bench_distill_ensemble.py` (`bench/results/bench_distill_ensemble.json`)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="print the docs table from the committed JSON")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown_table(json.loads(RESULT.read_text())))
        return 0
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = measure(Path(tmp))
    RESULT.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(markdown_table(result))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
