"""Calibration methods (minmax, percentile, mse) and training-free stages on the outlier-channel model."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.calibrate import Calibration
from edgekit.convert import convert_int8, convert_quantized
from edgekit.data import load_data
from edgekit.errors import InputError
from edgekit.load import load_model
from edgekit.verify.metrics import accuracy
from edgekit.verify.inputs import quantize
from edgekit.verify.runtimes import run_keras, run_litert
from edgekit.tflite_model import read_model


def _acc(tflite: bytes, ds) -> float:
    return accuracy(run_litert(tflite, quantize(ds.x, read_model(tflite).inputs[0]), reference=True), ds.y)


@pytest.fixture(scope="module")
def data(outlier_dir):
    loaded = load_model(outlier_dir / "model.keras")
    calib = load_data(outlier_dir / "calib.npz", "calib")
    ev = load_data(outlier_dir / "eval.npz", "eval")
    float_acc = accuracy(run_keras(loaded.model, ev.x), ev.y)
    return loaded, calib, ev, float_acc


@pytest.fixture(scope="module")
def by_method(data):
    loaded, calib, ev, _ = data
    out = {}
    for m in ("minmax", "percentile", "percentile:99.9", "mse"):
        q = convert_quantized(loaded, calib, "int8", Calibration.parse(m))
        out[m] = (q, _acc(q, ev))
    return out


def test_plain_int8_loses_at_least_4_points_on_the_outlier_model(data, by_method):
    _, _, _, float_acc = data
    assert float_acc > 0.9
    assert by_method["minmax"][1] < float_acc - 0.04


def test_minmax_is_the_converters_own_result(data, by_method):
    loaded, calib, _, _ = data
    assert by_method["minmax"][0] == convert_int8(loaded, calib)


def test_each_method_gives_a_different_valid_int8_model(data, by_method):
    blobs = [q for q, _ in by_method.values()]
    assert len(set(blobs)) == len(blobs)
    for q, acc in by_method.values():
        info = read_model(q)
        assert info.is_full_int8 and info.inputs[0].dtype == "int8"
        assert acc > 0.3  # a working classifier (10 classes: chance is 0.1)


def test_mse_is_no_worse_than_minmax(by_method):
    assert by_method["mse"][1] >= by_method["minmax"][1] - 0.01  # margin: a few samples flip across machines


def test_percentile_clips_the_outlier_range(by_method):
    assert by_method["percentile:99.9"][1] > by_method["minmax"][1] + 0.05


@pytest.mark.parametrize("text,what", [("median", "unknown method"), ("percentile:abc", "must be a number"),
                                       ("percentile:40", "must be in (50, 100]"), ("mse:3", "takes no argument")])
def test_bad_calibration_is_refused(text, what):
    with pytest.raises(InputError, match=what.replace("(", r"\(").replace("]", r"\]")):
        Calibration.parse(text)


def test_equalize_keeps_float_outputs_and_recovers_int8(data, by_method):
    from edgekit.compress import equalize

    loaded, calib, ev, float_acc = data
    eq, details = equalize.apply(loaded, equalize.Config(), None, 0)
    before = run_keras(loaded.model, ev.x)
    after = run_keras(eq.model, ev.x)
    assert np.abs(after - before).max() < 1e-4  # same function up to float rounding
    first = details["pairs"][0]
    assert first["layers"][0] == loaded.model.layers[0].name
    assert first["weight_range_ratio_before"] > 100 > 5 > first["weight_range_ratio_after"]
    acc = _acc(convert_quantized(eq, calib), ev)
    assert acc >= float_acc - 0.01 > by_method["minmax"][1]


def test_equalize_on_tf_keras_keeps_outputs(digits_tfkeras_dir):
    from edgekit.compress import equalize

    loaded = load_model(digits_tfkeras_dir / "model.h5")
    ev = load_data(digits_tfkeras_dir / "eval.npz", "eval")
    eq, details = equalize.apply(loaded, equalize.Config(), None, 0)
    assert len(details["pairs"]) == 3  # conv→conv, conv→(flatten)→dense, dense→dense
    assert np.abs(run_keras(eq.model, ev.x) - run_keras(loaded.model, ev.x)).max() < 1e-4
    from edgekit.compress import bias_correct

    bc, details = bias_correct.apply(eq, bias_correct.Config(samples=64), load_data(digits_tfkeras_dir / "calib.npz", "calib"), 0)
    assert bc.kind == "tf_keras" and len(details["layers"]) == 4
    assert accuracy(run_keras(bc.model, ev.x), ev.y) >= accuracy(run_keras(loaded.model, ev.x), ev.y) - 0.02


def test_bias_correct_needs_calibration_and_moves_biases(data, by_method):
    from edgekit.compress import bias_correct

    loaded, calib, ev, float_acc = data
    with pytest.raises(InputError, match="calibration data"):
        bias_correct.apply(loaded, bias_correct.Config(), None, 0)
    bc, details = bias_correct.apply(loaded, bias_correct.Config(), calib, 0)
    assert [r["layer"] for r in details["layers"]] == [lyr.name for lyr in loaded.model.layers if lyr.weights]
    assert all(r["max_abs_shift"] > 0 for r in details["layers"])
    # the float model moves by the measured shifts, a little
    assert accuracy(run_keras(bc.model, ev.x), ev.y) >= float_acc - 0.03


def test_equalize_recipe_brings_int8_within_1_point_of_float(data, by_method):
    from edgekit.compress import apply_recipe
    from edgekit.recipe import Recipe

    loaded, calib, ev, float_acc = data
    res = apply_recipe(loaded, Recipe.load("equalize"), train=None, calib=calib)
    assert [s["name"] for s in res.stages] == ["equalize", "bias_correct"]
    acc = _acc(convert_quantized(res.model, calib), ev)
    assert acc >= float_acc - 0.01 > by_method["minmax"][1]
