"""Whole multi-op graphs built with Keras (untrained, seeded): every supported op family together,
residual and concatenation branches, in-place and overlapping buffers, against tflite-micro."""

from __future__ import annotations

import numpy as np
import pytest
from aot_models import convert_keras, random_inputs
from conftest import require_tools

from edgekit.aot.graph import parse
from edgekit.aot.hostcheck import host_check


def _zoo():
    import keras

    keras.utils.set_random_seed(3)
    L = keras.layers
    x_in = L.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu6")(x_in)
    a = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    b = L.Conv2D(8, 1, activation="relu")(x)
    x = L.Add()([a, b])
    x = L.MaxPooling2D(2)(x)
    c = L.Conv2D(6, 3, strides=2, padding="same")(x)
    d = L.AveragePooling2D(2)(x)
    x = L.Concatenate()([c, d])
    x = L.Multiply()([x, x])
    x = L.ZeroPadding2D(((1, 0), (0, 1)))(x)
    g = L.GlobalAveragePooling2D()(x)
    y = L.Dense(12, activation="sigmoid")(g)
    y = L.Dense(5)(y)
    y = L.Softmax()(y)
    return keras.Model(x_in, y)


@pytest.fixture(scope="module")
def zoo_tflite() -> bytes:
    calib = np.random.default_rng(0).uniform(0, 1, size=(60, 16, 16, 3)).astype(np.float32)
    return convert_keras(_zoo(), calib)


def test_zoo_graph_bit_exact(zoo_tflite, tmp_path):
    require_tools("gcc")
    names = {op.name for op in parse(zoo_tflite).ops}
    for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MAX_POOL_2D", "AVERAGE_POOL_2D", "CONCATENATION", "MUL",
               "PAD", "MEAN", "FULLY_CONNECTED", "LOGISTIC", "SOFTMAX"):
        assert op in names, (op, sorted(names))
    r = host_check(zoo_tflite, random_inputs(zoo_tflite, 40, seed=8), tmp_path)
    assert r.bit_exact_fraction == 1.0, r.to_dict()
    cg = r.codegen
    assert cg.aliased_ops >= 2  # ADD, MUL, LOGISTIC or SOFTMAX in place
    assert cg.arena_bytes - cg.weight_scratch_bytes <= cg.arena_lower_bound_bytes  # the tensors; scratch after them
