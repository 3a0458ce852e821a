"""Knowledge distillation on both Keras kinds: the narrow student's shape, the losses, feature distillation, refused inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.compress import distill
from edgekit.compress.base import count_params
from edgekit.data import Dataset, load_data
from edgekit.errors import InputError
from edgekit.load import load_model


def _widths(model) -> list[int]:
    return [layer.get_config().get("filters", layer.get_config().get("units")) for layer in model.layers if type(layer).__name__ in ("Conv2D", "Dense")]


@pytest.mark.parametrize("kind", ["keras3", "tf_keras"])
def test_narrow_copy_halves_every_width_but_the_classes(kind, digits_dir, digits_tfkeras_dir):
    loaded = load_model(digits_dir / "model.keras") if kind == "keras3" else load_model(digits_tfkeras_dir / "model.h5")
    student = distill.narrow_copy(loaded.model, 0.5, seed=0)
    assert _widths(loaded.model) == [16, 32, 32, 10]
    assert _widths(student) == [8, 16, 16, 10]
    assert type(student).__module__.split(".")[0] == type(loaded.model).__module__.split(".")[0]
    # every hidden width halved: about a quarter of the teacher's weights
    assert count_params(loaded.model) == 70698 and count_params(student) == 17818


def test_config_is_strict():
    with pytest.raises(InputError, match="unknown parameter 'temp'"):
        distill.Config.from_dict({"temp": 3})
    with pytest.raises(InputError, match="alpha must be in"):
        distill.Config.from_dict({"alpha": 1.5})
    with pytest.raises(InputError, match="feature_weight > 0 needs feature_layer"):
        distill.Config.from_dict({"feature_weight": 0.5})


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["keras3", "tf_keras"])
def test_distilled_student_learns_from_the_teacher(kind, digits_dir, digits_tfkeras_dir):
    d = digits_dir if kind == "keras3" else digits_tfkeras_dir
    loaded = load_model(d / ("model.keras" if kind == "keras3" else "model.h5"))
    train, ev = load_data(d / "train.npz"), load_data(d / "eval.npz")
    out, det = distill.apply(loaded, distill.Config(width=0.5, epochs=3, temperature=4.0, alpha=0.7), train, seed=0)
    json.dumps(det)  # the report stores it as is
    assert out.kind == kind and out.model is not loaded.model
    assert det["student_params"] == 17818 and det["teacher_params"] == 70698
    assert det["loss"][-1] < det["loss"][0] / 2 and det["soft"][-1] < det["soft"][0]
    # agreement with the teacher on held-out data, and accuracy
    t = loaded.model.predict(ev.x, verbose=0).argmax(1)
    s = out.model.predict(ev.x, verbose=0).argmax(1)
    assert np.mean(s == t) > 0.85 and np.mean(s == ev.y) > 0.85
    # same seed, same student
    again, det2 = distill.apply(loaded, distill.Config(width=0.5, epochs=3, temperature=4.0, alpha=0.7), train, seed=0)
    assert det2["loss"] == det["loss"]


@pytest.mark.slow
def test_feature_distillation_on_a_named_layer(digits_dir):
    loaded = load_model(digits_dir / "model.keras")
    train = load_data(digits_dir / "train.npz")
    feat = [layer.name for layer in loaded.model.layers if type(layer).__name__ == "Dense"][0]
    out, det = distill.apply(loaded, distill.Config(epochs=2, feature_layer=feat, feature_weight=1.0), train, seed=1)
    assert det["feature_layer"] == feat and len(det["feature"]) == 2 and det["feature"][1] < det["feature"][0]
    with pytest.raises(InputError, match="feature_layer 'nope' not found in the teacher"):
        distill.apply(loaded, distill.Config(epochs=1, feature_layer="nope", feature_weight=1.0), train, seed=1)


def test_distill_refuses_unlabelled_data_and_a_mismatched_student(digits_dir, tmp_path):
    import keras

    loaded = load_model(digits_dir / "model.keras")
    train = load_data(digits_dir / "train.npz")
    with pytest.raises(InputError, match="has no labels"):
        distill.apply(loaded, distill.Config(epochs=1), Dataset(train.x, None, train.path), 0)
    wrong = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    path = tmp_path / "student.keras"
    wrong.save(path)
    with pytest.raises(InputError, match=r"student outputs \(3,\) but the teacher outputs \(10,\)"):
        distill.apply(loaded, distill.Config(epochs=1, student=str(path)), train, 0)


def test_narrow_copy_refuses_a_fixed_reshape():
    import keras

    from edgekit.errors import ConversionError

    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same"), keras.layers.Reshape((256,)), keras.layers.Dense(10)])
    with pytest.raises(ConversionError, match="cannot build a width-0.5 copy") as err:
        distill.narrow_copy(m, 0.5, seed=0)
    assert "student" in err.value.hint


@pytest.mark.parametrize("kind", ["keras3", "tf_keras"])
def test_narrow_copy_of_a_residual_graph_keeps_the_add_consistent(kind):
    if kind == "keras3":
        import keras as k
    else:
        import tf_keras as k
    i = k.Input((8, 8, 1))
    a = k.layers.BatchNormalization()(k.layers.Conv2D(16, 3, padding="same", activation="relu")(i))
    b = k.layers.Conv2D(16, 3, padding="same")(a)
    c = k.layers.DepthwiseConv2D(3, padding="same")(k.layers.Add()([a, b]))
    o = k.layers.Dense(10, activation="softmax")(k.layers.GlobalAveragePooling2D()(c))
    teacher = k.Model(i, o)
    student = distill.narrow_copy(teacher, 0.5, seed=0)
    assert [layer.get_config().get("filters") for layer in student.layers if type(layer).__name__ == "Conv2D"] == [8, 8]
    assert student.get_layer(index=-1).get_config()["units"] == 10
    assert student.predict(np.zeros((2, 8, 8, 1), np.float32), verbose=0).shape == (2, 10)
