"""Structured pruning removes channels for real: exact on a residual graph, and the done-when measurement (int8 size, TFLM arena, accuracy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.compress import apply_recipe
from edgekit.compress.structured import Config, apply
from edgekit.data import Dataset
from edgekit.errors import InputError
from edgekit.load import LoadedModel
from edgekit.recipe import Recipe, StageSpec

KINDS = ["keras3", "tf_keras"]


def _keras(kind: str):
    if kind == "keras3":
        import keras
    else:
        import tf_keras as keras
    return keras


def _residual_model(keras):
    """Conv+BN residual pair, depthwise, separable conv, concatenation, flatten, two Dense: every rule of the rewrite."""
    L = keras.layers
    i = keras.Input((6, 6, 3))
    c1 = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(i)
    b1 = L.BatchNormalization(name="bn1")(c1)
    c2 = L.Conv2D(8, 3, padding="same", name="c2")(b1)
    b2 = L.BatchNormalization(name="bn2")(c2)
    r2 = L.ReLU(name="r2")(b2)
    add = L.Add(name="add")([b1, r2])
    dw = L.DepthwiseConv2D(3, padding="same", name="dw")(add)
    sep = L.SeparableConv2D(8, 3, padding="same", activation="relu", name="sep")(dw)
    cat = L.Concatenate(name="cat")([dw, sep])
    pool = L.MaxPooling2D(2, name="pool")(cat)
    flat = L.Flatten(name="flat")(pool)
    d1 = L.Dense(12, activation="relu", name="d1")(flat)
    out = L.Dense(4, name="out")(d1)
    return keras.Model(i, out)


def _kill_even_channels(model, rng):
    """Random weights, but every even channel of each prunable group produces exactly zero."""
    even = np.arange(0, 8, 2)
    for name in ("c1", "c2"):
        k, b = model.get_layer(name).get_weights()
        k[..., even] = 0
        b[:] = rng.normal(size=b.shape)
        b[even] = 0
        model.get_layer(name).set_weights([k, b])
    for name in ("bn1", "bn2"):
        g, beta, mean, var = (rng.uniform(0.5, 1.5, 8).astype(np.float32) for _ in range(4))
        beta -= 1.0
        mean -= 1.0
        beta[even] = 0
        mean[even] = 0
        model.get_layer(name).set_weights([g, beta, mean, var])
    dk, db = model.get_layer("dw").get_weights()
    db[:] = rng.normal(size=db.shape)
    db[even] = 0
    model.get_layer("dw").set_weights([dk, db])
    sd, sp, sb = model.get_layer("sep").get_weights()
    sp[..., even] = 0
    sb[:] = rng.normal(size=sb.shape)
    sb[even] = 0
    model.get_layer("sep").set_weights([sd, sp, sb])
    dk, db = model.get_layer("d1").get_weights()
    dk[:, np.arange(0, 12, 2)] = 0
    db[np.arange(0, 12, 2)] = 0
    db[np.arange(1, 12, 2)] = 0.1
    model.get_layer("d1").set_weights([dk, db])


@pytest.mark.parametrize("kind", KINDS)
def test_removing_dead_channels_leaves_the_function_unchanged(kind):
    keras = _keras(kind)
    keras.utils.set_random_seed(1)
    model = _residual_model(keras)
    rng = np.random.default_rng(1)
    _kill_even_channels(model, rng)
    lm = LoadedModel(kind, Path("residual"), model=model, input_shape=(None, 6, 6, 3))
    x = rng.normal(size=(16, 6, 6, 3)).astype(np.float32)

    new, det = apply(lm, Config(ratio=0.5, epochs=0), None, seed=0)
    after = {r["layer"]: r["channels_after"] for r in det["per_layer"]}
    assert after == {"c1": 4, "c2": 4, "sep": 4, "d1": 6, "out": 4}
    assert det["per_layer"][-1]["kept_whole"] == "reaches the model output"
    assert new.kind == kind
    assert tuple(new.model.get_layer("flat").output.shape) == (None, 3 * 3 * 8)
    assert det["params_after"] < det["params_before"] / 2
    np.testing.assert_allclose(new.model.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_ratio_zero_is_an_exact_copy(kind):
    keras = _keras(kind)
    keras.utils.set_random_seed(2)
    model = _residual_model(keras)
    lm = LoadedModel(kind, Path("residual"), model=model, input_shape=(None, 6, 6, 3))
    new, det = apply(lm, Config(ratio=0.0, epochs=0), None, seed=0)
    assert det["params_after"] == det["params_before"]
    x = np.random.default_rng(2).normal(size=(8, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(new.model.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_channels_feeding_an_unknown_layer_are_kept_whole_with_the_reason():
    import keras

    i = keras.Input((4, 4, 2))
    c = keras.layers.Conv2D(8, 3, padding="same", name="c")(i)
    r = keras.layers.Reshape((16, 8), name="reshape")(c)
    f = keras.layers.Flatten()(r)
    d = keras.layers.Dense(6, name="d")(f)
    o = keras.layers.Dense(3, name="o")(d)
    lm = LoadedModel("keras3", Path("m"), model=keras.Model(i, o), input_shape=(None, 4, 4, 2))
    _, det = apply(lm, Config(ratio=0.5, epochs=0, round_to=4), None, seed=0)
    rows = {r["layer"]: r for r in det["per_layer"]}
    assert rows["c"]["channels_after"] == 8 and rows["c"]["kept_whole"] == "feeds Reshape layer 'reshape'"
    assert rows["d"]["channels_after"] == 4  # 3 rounded up to a multiple of 4


def test_taylor_criterion_needs_labels_and_bad_layer_names_are_refused(digits_dir):
    from edgekit.data import load_data
    from edgekit.load import load_model

    lm = load_model(digits_dir / "model.keras")
    with pytest.raises(InputError, match=r"needs --train data with labels \(y\)"):
        apply(lm, Config(criterion="taylor", epochs=0), None, seed=0)
    train = load_data(digits_dir / "train.npz", "train")
    new, det = apply(lm, Config(criterion="taylor", epochs=0), train, seed=0)
    assert [r["channels_after"] for r in det["per_layer"]] == [8, 16, 16, 10]
    assert new.model.get_layer("conv2d_1").kernel.shape == (3, 3, 8, 16)
    with pytest.raises(InputError, match=r"no layer named 'dense_9'.*dense_1"):
        apply(lm, Config(layers=["dense_9"], epochs=0), None, seed=0)
    with pytest.raises(InputError, match="criterion must be one of l1, l2, taylor"):
        Recipe((StageSpec("structured", {"criterion": "l3"}),), source="r.toml")


def _digits32(seed: int = 0):
    """The digits upscaled to 32x32 (4x nearest): activations, not tensor metadata, dominate the TFLM arena."""
    from edgekit.examples import digits_split

    sp = digits_split(seed)

    def up(x):
        return np.kron(x, np.ones((1, 4, 4, 1), np.float32))

    return Dataset(up(sp["train"][0]), sp["train"][1], Path("train")), Dataset(up(sp["eval"][0]), sp["eval"][1], Path("eval"))


def cnn32(keras, seed: int, train: Dataset, epochs: int = 5):
    keras.utils.set_random_seed(seed)
    L = keras.layers
    m = keras.Sequential([
        keras.Input((32, 32, 1)),
        L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(32, activation="relu"), L.Dense(10, activation="softmax"),
    ])
    m.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(train.x, train.y, epochs=epochs, batch_size=32, verbose=0)
    return m


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_half_the_channels_shrinks_int8_tflite_and_tflm_arena_by_40_percent(kind):
    from edgekit.convert import convert_int8
    from edgekit.verify.runtimes import run_litert
    from edgekit.verify.inputs import quantize
    from edgekit.tflite_model import read_model
    from edgekit.tflm_host import measure_arena

    train, ev = _digits32()
    lm = LoadedModel(kind, Path("cnn32"), model=cnn32(_keras(kind), 0, train), input_shape=(None, 32, 32, 1))

    def top1(tfl: bytes) -> float:
        info = read_model(tfl)
        return float(np.mean(run_litert(tfl, quantize(ev.x, info.inputs[0])).argmax(-1) == ev.y))

    res = apply_recipe(lm, Recipe.load("structured50"), train=train, seed=0)
    base, pruned = convert_int8(lm, train), convert_int8(res.model, train)
    arena_base, arena_pruned = measure_arena(base).used_bytes, measure_arena(pruned).used_bytes
    assert len(pruned) <= 0.6 * len(base), (len(base), len(pruned))
    assert arena_pruned <= 0.6 * arena_base, (arena_base, arena_pruned)
    acc_base, acc_pruned = top1(base), top1(pruned)
    assert acc_pruned >= acc_base - 0.02, (acc_base, acc_pruned)
    # the converted model really has fewer channels: the first conv's int8 filter tensor is [16, 3, 3, 1]
    shapes = [tuple(t["shape"]) for t in read_model(pruned).tensors if t.get("dtype") == "int8" and len(t.get("shape", ())) == 4]
    assert (16, 3, 3, 1) in shapes, shapes


@pytest.mark.shared_models
@pytest.mark.parametrize("name, kept_fraction", [("pretrainedResnet.h5", 0.26), ("vww_96.h5", 0.28)])
def test_third_party_residual_and_depthwise_models_rebuild_with_half_the_channels(shared_models, name, kept_fraction):
    """MLPerf Tiny ResNet-8 (residual Add with 1x1 shortcuts, BN) and MobileNetV1 VWW (depthwise, BN): nobody here trained them."""
    from edgekit.load import load_model

    lm = load_model(shared_models / "mlperf_tiny" / name)
    x = np.random.default_rng(0).random((2, *lm.input_shape[1:]), dtype=np.float32)
    same, _ = apply(lm, Config(ratio=0.0, epochs=0), None, seed=0)
    np.testing.assert_array_equal(same.model.predict(x, verbose=0), lm.model.predict(x, verbose=0))
    half, det = apply(lm, Config(ratio=0.5, epochs=0), None, seed=0)
    assert det["params_after"] <= kept_fraction * det["params_before"]
    assert all(r["channels_after"] == r["channels_before"] // 2 for r in det["per_layer"][:-1])
    assert det["per_layer"][-1]["kept_whole"] == "reaches the model output"
    assert half.model.predict(x, verbose=0).shape == lm.model.predict(x, verbose=0).shape
