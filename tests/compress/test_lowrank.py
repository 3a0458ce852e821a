"""Low-rank factorization: exact on low-rank kernels, and the done-when measurement (largest Dense halved, at most 1 point lost)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.compress import apply_recipe
from edgekit.compress.finetune import evaluate
from edgekit.compress.lowrank import Config, apply
from edgekit.data import load_data
from edgekit.errors import InputError
from edgekit.load import LoadedModel, load_model
from edgekit.recipe import Recipe, StageSpec

KINDS = ["keras3", "tf_keras"]


def _keras(kind: str):
    if kind == "keras3":
        import keras
    else:
        import tf_keras as keras
    return keras


def _model_with_rank4_kernels(keras, rng):
    L = keras.layers
    i = keras.Input((6, 6, 8))
    c = L.Conv2D(12, 1, strides=2, activation="relu", name="pw")(i)
    k3 = L.Conv2D(4, 3, padding="same", name="k3")(c)
    f = L.Flatten()(k3)
    d = L.Dense(20, activation="relu", name="fc")(f)
    o = L.Dense(3, name="out")(d)
    m = keras.Model(i, o)
    for name, (n_in, n_out) in {"pw": (8, 12), "fc": (36, 20)}.items():
        layer = m.get_layer(name)
        k, b = layer.get_weights()
        w = rng.normal(size=(n_in, 4)) @ rng.normal(size=(4, n_out)) / 4
        layer.set_weights([w.reshape(k.shape).astype(np.float32), rng.normal(size=b.shape).astype(np.float32)])
    return m


@pytest.mark.parametrize("kind", KINDS)
def test_rank_4_kernels_factorize_exactly_and_strides_move_to_the_first_factor(kind):
    keras = _keras(kind)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = _model_with_rank4_kernels(keras, rng)
    lm = LoadedModel(kind, Path("m"), model=model, input_shape=(None, 6, 6, 8))
    new, det = apply(lm, Config(energy=0.999, layers=["pw", "fc"], epochs=0), None, seed=0)
    assert [(r["layer"], r["rank"]) for r in det["per_layer"]] == [("pw", 4), ("fc", 4)]
    assert all(r["energy_kept"] > 0.999999 for r in det["per_layer"])
    m2 = new.model
    assert tuple(m2.get_layer("pw_lowrank").kernel.shape) == (1, 1, 8, 4)
    assert tuple(m2.get_layer("pw").kernel.shape) == (1, 1, 4, 12)
    assert tuple(m2.get_layer("fc_lowrank").kernel.shape) == (36, 4)
    x = rng.normal(size=(8, 6, 6, 8)).astype(np.float32)
    np.testing.assert_allclose(m2.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


def test_bad_settings_are_refused():
    with pytest.raises(InputError, match="set only one of rank, energy, param_ratio"):
        Recipe((StageSpec("lowrank", {"rank": 4, "energy": 0.9}),), source="r.toml")
    import keras

    model = _model_with_rank4_kernels(keras, np.random.default_rng(0))
    lm = LoadedModel("keras3", Path("m"), model=model, input_shape=(None, 6, 6, 8))
    with pytest.raises(InputError, match="layer 'k3' cannot be factorized: only 1x1 Conv2D"):
        apply(lm, Config(layers=["k3"], epochs=0), None, seed=0)
    with pytest.raises(InputError, match=r"needs --train data with labels \(y\)"):
        apply(lm, Config(), None, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_largest_dense_halved_with_at_most_one_point_lost(kind, digits_dir, digits_tfkeras_dir):
    from edgekit.convert import convert_int8

    d = digits_dir if kind == "keras3" else digits_tfkeras_dir
    lm = load_model(d / ("model.keras" if kind == "keras3" else "model.h5"))
    train, ev = load_data(d / "train.npz"), load_data(d / "eval.npz")
    res = apply_recipe(lm, Recipe.load("lowrank50"), train=train, seed=0)
    row = res.stages[0]["details"]["per_layer"][0]
    assert row["layer"] == "dense" and row["in"] == 2048 and row["out"] == 32 and row["rank"] == 15
    m = res.model.model
    measured = sum(int(np.prod(w.shape)) for w in (*m.get_layer("dense_lowrank").weights, *m.get_layer("dense").weights))
    original = sum(int(np.prod(w.shape)) for w in lm.model.get_layer("dense").weights)
    assert measured == row["params_after"] and original == row["params_before"] == 65568
    assert measured <= original / 2
    acc_before, acc_after = evaluate(lm.model, ev), evaluate(m, ev)
    assert acc_after >= acc_before - 0.01, (acc_before, acc_after)
    # and the flash it pays for: the int8 model loses about half its bytes
    assert len(convert_int8(res.model, ev)) < 0.6 * len(convert_int8(lm, ev))
