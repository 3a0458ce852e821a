"""``--custom-objects``: a model with a custom layer builds; without the flag, one line names the class."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgekit.cli import main

LAYER = textwrap.dedent('''
    import keras


    class Scale(keras.layers.Layer):
        """Multiplies by a fixed factor (a custom layer with a config)."""

        def __init__(self, k=2.0, **kwargs):
            super().__init__(**kwargs)
            self.k = k

        def call(self, x):
            return x * self.k

        def get_config(self):
            return {**super().get_config(), "k": self.k}
''')


@pytest.fixture(scope="module")
def custom_model(tmp_path_factory) -> Path:
    """layers.py (the custom layer), model.keras using it, eval.npz."""
    import importlib.util

    import keras

    d = tmp_path_factory.mktemp("custom")
    (d / "layers.py").write_text(LAYER)
    spec = importlib.util.spec_from_file_location("user_layers", d / "layers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.Input((4,)), mod.Scale(3.0), keras.layers.Dense(3, activation="softmax")])
    m.save(d / "model.keras")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    np.savez(d / "eval.npz", x=x, y=m.predict(x, verbose=0).argmax(axis=1))
    return d


def test_missing_custom_class_is_one_line_naming_it(tmp_path, capsys, custom_model):
    rc = main(["build", str(custom_model / "model.keras"), "-t", "cortex-m4", "--eval", str(custom_model / "eval.npz"),
               "-o", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "model.keras: the model uses 'Scale', which is not part of Keras" in err and "--custom-objects" in err
    assert "Traceback" not in err and not (tmp_path / "b").exists()


@pytest.mark.parametrize("spec", ["layers.py", "layers.py:Scale"])
def test_custom_objects_file_loads_and_builds(tmp_path, capsys, custom_model, spec):
    rc = main(["build", str(custom_model / "model.keras"), "-t", "cortex-m4", "--eval", str(custom_model / "eval.npz"),
               "--custom-objects", str(custom_model / spec), "-o", str(tmp_path / "b"), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rep = json.loads(captured.out)
    assert rep["accuracy"]["float"] == 1.0  # labels are the float model's own predictions
    assert rep["accuracy"]["int8_tflm"] > 0.9


def test_bad_custom_objects_spec(tmp_path, capsys, custom_model):
    rc = main(["build", str(custom_model / "model.keras"), "-t", "cortex-m4", "--eval", str(custom_model / "eval.npz"),
               "--custom-objects", f"{custom_model / 'layers.py'}:Nope", "-o", str(tmp_path / "b")])
    assert rc == 2 and "layers.py has no attribute 'Nope'" in capsys.readouterr().err
