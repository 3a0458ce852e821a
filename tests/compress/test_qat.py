"""QAT on both Keras kinds (Keras 3 rebuilt as tf_keras), the learned ranges, and per-layer quantization error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.compress import qat
from edgekit.convert import convert_int8
from edgekit.data import Dataset, load_data
from edgekit.errors import InputError
from edgekit.load import LoadedModel, load_model
from edgekit.quant_debug import ROUNDING_NOISE, layer_errors, tflite_accuracy


def _data(d):
    return tuple(load_data(d / f"{s}.npz", s) for s in ("train", "calib", "eval"))


def test_config_is_strict():
    with pytest.raises(InputError, match="unknown parameter 'epoch'") as err:
        qat.Config.from_dict({"epoch": 2})
    assert "epochs" in err.value.hint
    with pytest.raises(InputError, match="preserve must be one of none, cluster, sparsity"):
        qat.Config.from_dict({"preserve": "pruning"})


def test_qat_needs_labels(digits_dir):
    loaded = load_model(digits_dir / "model.keras")
    train = load_data(digits_dir / "train.npz")
    with pytest.raises(InputError, match="has no labels"):
        qat.apply(loaded, qat.Config(), Dataset(train.x, None, train.path), 0)


def test_keras3_rebuilt_as_tf_keras_computes_the_same_function(digits_dir):
    import keras

    loaded = load_model(digits_dir / "model.keras")
    x = load_data(digits_dir / "eval.npz").x[:64]
    seq = qat.to_tf_keras(loaded.model)
    assert type(seq).__module__.startswith("tf_keras")
    assert np.abs(seq.predict(x, verbose=0) - loaded.model.predict(x, verbose=0)).max() < 1e-5
    # functional graph with BatchNorm, a residual Add and a Keras 3-only Dense argument
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 1))
    a = keras.layers.ReLU()(keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, padding="same")(i)))
    b = keras.layers.Conv2D(8, 1)(a)
    o = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([a, b])))
    func = keras.Model(i, o)
    func.layers[2].set_weights([np.full(8, 1.5, np.float32), np.full(8, 0.1, np.float32), np.full(8, 0.2, np.float32), np.full(8, 2.0, np.float32)])
    rebuilt = qat.to_tf_keras(func)
    assert [type(layer).__name__ for layer in rebuilt.layers] == [type(layer).__name__ for layer in func.layers]
    assert np.abs(rebuilt.predict(x, verbose=0) - func.predict(x, verbose=0)).max() < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["keras3", "tf_keras"])
def test_qat_model_converts_to_int8_with_learned_ranges(kind, digits_dir, digits_tfkeras_dir):
    d, name = (digits_dir, "model.keras") if kind == "keras3" else (digits_tfkeras_dir, "model.h5")
    loaded = load_model(d / name)
    train, calib, ev = _data(d)
    before = loaded.model.predict(ev.x[:32], verbose=0)
    out, details = qat.apply(loaded, qat.Config(epochs=1, learning_rate=1e-4), train, seed=0)
    assert np.array_equal(loaded.model.predict(ev.x[:32], verbose=0), before)  # the input model is not touched
    json.dumps(details)  # the report stores it as is
    assert out.kind == "tf_keras" and details["rebuilt_from"] == (None if kind == "tf_keras" else "keras3")
    ranges = {r["layer"]: r for r in details["ranges"]}
    assert ranges[next(iter(ranges))]["input"] == [0.0, 1.0]  # digits pixels are in [0, 1]
    err = details["ptq_layer_error"]
    assert [r["op"] for r in err["layers"]].count("CONV_2D") == 2 and err["worst"] in [r["name"] for r in err["layers"]]
    convs = [r for r in details["ranges"] if r.get("kernel_channels")]
    assert [r["kernel_channels"] for r in convs] == [16, 32]  # per-channel kernel ranges of the two Conv2D
    # ReLU layers start from the float model's observed ranges, not tfmot's [-6, 6]
    assert all(r["activation"][0] == 0.0 for r in convs)
    tfl = convert_int8(out, calib)
    acc_float = float(np.mean(loaded.model.predict(ev.x, verbose=0).argmax(1) == ev.y))
    acc_qat = tflite_accuracy(tfl, ev.x, ev.y)
    # measured on the keras3 digits CNN over QAT seeds 0-3: 1.3 to 2.0 points below float (0.9698), also
    # with 10 % of --train held out to compare with post-training int8; 0.948 was seen on another machine.
    # Twice the worst measured loss is the margin, not a knife-edge.
    assert acc_qat >= acc_float - 0.04, (acc_float, acc_qat)


@pytest.mark.slow
def test_per_layer_error_names_the_layers_and_finds_a_broken_one(digits_dir):
    loaded = load_model(digits_dir / "model.keras")
    _, calib, ev = _data(digits_dir)
    report = layer_errors(loaded, calib, ev, max_samples=32)
    ops = [r.op for r in report.layers]
    assert ops.count("CONV_2D") == 2 and ops.count("FULLY_CONNECTED") == 2 and report.samples == 32
    assert all(r.rmse_over_scale < 2 * ROUNDING_NOISE for r in report.layers if r.op == "CONV_2D")  # about rounding noise
    # calibrate on inputs 10x dimmer than the data: the first conv's output range is clipped and it becomes the worst layer
    dim = Dataset(calib.x * 0.1, None, calib.path)
    bad = layer_errors(loaded, dim, ev, max_samples=32)
    assert bad.worst().name == report.layers[0].name and bad.worst().rmse_over_scale > 50
    assert set(bad.to_dict()) == {"samples", "worst", "layers"}
    with pytest.raises(InputError, match="needs the float model"):
        layer_errors(LoadedModel("tflite", calib.path, tflite=b""), calib)


@pytest.mark.slow
def test_cluster_preserving_qat_keeps_the_index_storage(digits_dir):
    from edgekit.compress import cluster

    loaded = load_model(digits_dir / "model.keras")
    train, calib, ev = _data(digits_dir)
    clustered, _ = cluster.apply(loaded, cluster.Config(epochs=1), train, seed=0)
    out, details = qat.apply(clustered, qat.Config(epochs=1, learning_rate=1e-4, preserve="cluster"), train, seed=0)
    assert details["preserve"] == "cluster"
    tfl = convert_int8(out, calib)
    assert cluster.device_weight_bytes(tfl).saving >= 0.45  # plain QAT (preserve = "none") measured 0.0: clusters gone
    assert tflite_accuracy(tfl, ev.x, ev.y) >= 0.90  # measured 0.93 (unclustered int8: 0.97); see the docs


@pytest.mark.slow
def test_pruning_preserving_qat_keeps_the_zeros_in_the_int8_weights(digits_dir):
    from edgekit.compress import apply_recipe
    from edgekit.compress.cluster import weight_tensors
    from edgekit.recipe import Recipe

    loaded = load_model(digits_dir / "model.keras")
    train, calib, ev = _data(digits_dir)
    result = apply_recipe(loaded, Recipe.load("prune50-qat"), train=train)
    assert [s["name"] for s in result.stages] == ["prune", "qat"] and result.stages[1]["details"]["preserve"] == "sparsity"
    tfl = convert_int8(result.model, calib)
    sparsity = [float(np.mean(w["data"] == 0)) for w in weight_tensors(tfl)]
    assert len(sparsity) == 4 and min(sparsity) >= 0.49, sparsity  # measured 0.5 in every kernel
    assert tflite_accuracy(tfl, ev.x, ev.y) >= 0.95


@pytest.mark.slow
def test_qat_wins_back_what_a_bad_calibration_set_loses(digits_dir):
    loaded = load_model(digits_dir / "model.keras")
    train, calib, ev = _data(digits_dir)
    dim = Dataset(calib.x[:8] * 0.25, None, calib.path)  # 8 images at a quarter of the real brightness
    acc_float = float(np.mean(loaded.model.predict(ev.x, verbose=0).argmax(1) == ev.y))
    acc_ptq = tflite_accuracy(convert_int8(loaded, dim), ev.x, ev.y)
    out, _ = qat.apply(loaded, qat.Config(epochs=1, learning_rate=1e-3), train, seed=0)
    acc_qat = tflite_accuracy(convert_int8(out, dim), ev.x, ev.y)  # QAT ranges come from training, not from this set
    lost = acc_float - acc_ptq
    # measured: float 0.970, PTQ 0.921, QAT 0.988
    assert lost > 0.01, (acc_float, acc_ptq)
    assert acc_qat - acc_ptq >= lost / 2, (acc_float, acc_ptq, acc_qat)
