"""Conversion with a static batch of 1: Flatten and Reshape leave no SHAPE / STRIDED_SLICE / PACK.

``from_keras_model`` left the batch dynamic, so every Flatten became
SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE (three kernels a TFLM build carried
for nothing). Checked for both Keras kinds, float and every quantization
scheme, and on the bundled example, whose outputs must stay those of Keras.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.convert import SCHEMES, convert_float, convert_quantized
from edgekit.data import Dataset, load_data
from edgekit.load import load_model
from edgekit.tflite_model import read_model

REPO = Path(__file__).resolve().parent.parent
SHAPE_OPS = {"SHAPE", "STRIDED_SLICE", "PACK"}


def _flatten_reshape_model(tmp_path: Path, flavor: str) -> Path:
    """Conv -> Flatten -> Dense -> Reshape -> Flatten -> Dense, untrained (the graph is what is checked)."""
    if flavor == "keras3":
        import keras
    else:
        import tf_keras as keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((6, 6, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(12, activation="relu"),
        keras.layers.Reshape((3, 4)),
        keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    path = tmp_path / ("m.keras" if flavor == "keras3" else "m.h5")
    model.save(path)
    return path


@pytest.mark.parametrize("flavor", ["keras3", "tf_keras"])
def test_every_scheme_has_a_static_graph(tmp_path, flavor):
    loaded = load_model(_flatten_reshape_model(tmp_path, flavor))
    assert loaded.kind == flavor and loaded.input_shape[0] is None  # the Keras model itself has a dynamic batch
    calib = Dataset(np.random.default_rng(0).random((32, 6, 6, 1), dtype=np.float32), None, tmp_path / "calib.npz")
    models = {"float": convert_float(loaded)} | {q: convert_quantized(loaded, calib, q) for q in SCHEMES}
    for name, tflite in models.items():
        info = read_model(tflite)
        assert not SHAPE_OPS & set(info.ops), f"{flavor} {name}: {info.ops}"
        assert "RESHAPE" in info.ops and info.inputs[0].shape == (1, 6, 6, 1), f"{flavor} {name}"
        assert not {"VAR_HANDLE", "READ_VARIABLE"} & set(info.ops), f"{flavor} {name}: variables not frozen"


def test_bundled_example_int8_is_clean_and_matches_keras():
    from edgekit.verify.inputs import quantize
    from edgekit.verify.metrics import top1
    from edgekit.verify.runtimes import run_keras, run_litert

    loaded = load_model(REPO / "examples/digits/model.keras")
    calib = load_data(REPO / "examples/digits/calib.npz", "calib")
    ev = load_data(REPO / "examples/digits/eval.npz", "eval")
    int8 = convert_quantized(loaded, calib, "int8")
    info = read_model(int8)
    assert set(info.ops) == {"CONV_2D", "FULLY_CONNECTED", "RESHAPE", "SOFTMAX"}
    assert len(info.operators) == 6  # conv, conv, reshape, dense, dense, softmax
    out = run_litert(int8, quantize(ev.x, info.inputs[0]), reference=True)
    agree = float(np.mean(top1(out) == top1(run_keras(loaded.model, ev.x))))
    assert agree > 0.97, agree  # int8 keeps the float model's decisions (measured 1.0)
