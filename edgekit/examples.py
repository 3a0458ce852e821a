"""The bundled example: a small CNN on scikit-learn's 8x8 digits.

It is what the README's first command builds, and the fixture most tests
train. Training is seeded, so the same call gives the same model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SEED = 0


def digits_split(seed: int = SEED) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's digits as float32 NHWC images in [0, 1]: train, calib, eval splits."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[..., None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return {
        "train": (x[:1200], y[:1200]),
        "calib": (x[:200], y[:200]),
        "eval": (x[1200:], y[1200:]),
    }


def _layers(keras, width: int):
    # named explicitly: Keras numbers unnamed layers per process (dense, dense_1, ... dense_4), so the
    # same model would get other names after other models were built in the same process
    return [
        keras.layers.Input((8, 8, 1)),
        keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="conv2d"),
        keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="conv2d_1"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(32, activation="relu", name="dense"),
        keras.layers.Dense(10, activation="softmax", name="dense_1"),
    ]


def train_digits_cnn(flavor: str = "keras3", epochs: int = 12, width: int = 16, seed: int = SEED):
    """Train the digits CNN (~70k parameters) with Keras 3 (``keras3``) or tf_keras (``tf_keras``)."""
    if flavor == "keras3":
        import keras
    elif flavor == "tf_keras":
        import tf_keras as keras
    else:
        raise ValueError(f"flavor must be keras3 or tf_keras, not {flavor!r}")
    keras.utils.set_random_seed(seed)
    (xt, yt) = digits_split(seed)["train"]
    model = keras.Sequential(_layers(keras, width))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(xt, yt, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    return model


def write_digits_example(folder: Path, flavor: str = "keras3") -> dict[str, Path]:
    """Write model + train/calib/eval ``.npz`` files into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for split, (x, y) in digits_split().items():
        paths[split] = folder / f"{split}.npz"
        np.savez_compressed(paths[split], x=x, y=y)
    model = train_digits_cnn(flavor)
    paths["model"] = folder / ("model.keras" if flavor == "keras3" else "model.h5")
    model.save(paths["model"])
    return paths


OUTLIER_CHANNELS = (0, 3)
OUTLIER_FACTOR = 400.0


def add_outlier_channels(model, channels=OUTLIER_CHANNELS, factor=OUTLIER_FACTOR) -> None:
    """Scale ``channels`` of the first conv's output by ``factor`` and undo it in the second conv (in place).

    The float model computes exactly what it did (ReLU is positively homogeneous), but the first
    conv's output range is set by two channels: full int8 with min-max ranges leaves the other
    channels a handful of levels (the model of tests/quant and bench/bench_int16.py)."""
    c1, c2 = model.layers[0], model.layers[1]
    k1, b1 = c1.get_weights()
    k2, b2 = c2.get_weights()
    ch = list(channels)
    k1[..., ch] *= factor
    b1[ch] *= factor
    k2[:, :, ch, :] /= factor
    c1.set_weights([k1, b1])
    c2.set_weights([k2, b2])
