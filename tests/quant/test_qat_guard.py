"""The QAT stage is never silently worse than post-training int8 of its input model."""

from __future__ import annotations

import pytest

from edgekit.compress import qat
from edgekit.data import load_data
from edgekit.load import load_model


@pytest.fixture(scope="module")
def train(outlier_dir):
    return load_data(outlier_dir / "train.npz", "train")


def test_diverged_qat_is_replaced_by_its_input_model(outlier_dir, train):
    loaded = load_model(outlier_dir / "model_clean.keras")
    out, details = qat.apply(loaded, qat.Config(epochs=1, learning_rate=0.5, layer_error=False), train, 0)
    check = details["versus_ptq"]
    assert check["held_out_samples"] == 120  # 10 % of the 1200 training samples, never fitted on
    assert check["qat_int8_accuracy"] < check["ptq_int8_accuracy"] - 0.2
    assert out is loaded and details["kept"].startswith("input model")
    assert "below post-training int8" in details["warning"] and "strict = true" in details["warning"]


def test_strict_keeps_the_worse_qat_model_and_says_so(outlier_dir, train):
    loaded = load_model(outlier_dir / "model_clean.keras")
    out, details = qat.apply(loaded, qat.Config(epochs=1, learning_rate=0.5, layer_error=False, strict=True), train, 0)
    assert out is not loaded and out.kind == "tf_keras"
    assert "kept QAT (strict = true)" in details["warning"]


def test_qat_on_the_outlier_model_beats_post_training_int8(outlier_dir, train):
    loaded = load_model(outlier_dir / "model.keras")
    out, details = qat.apply(loaded, qat.Config(epochs=1, layer_error=False), train, 0)
    check = details["versus_ptq"]
    assert check["ptq_int8_accuracy"] < 0.8  # min-max int8 of the outlier channels
    assert check["qat_int8_accuracy"] > check["ptq_int8_accuracy"] + 0.1
    assert out.kind == "tf_keras" and details["verdict"].startswith("kept QAT")
