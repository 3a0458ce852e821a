"""Integer data are values: uint8 pixels give the same int8 results as the same values as float32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgekit.cli import main
from edgekit.errors import InputError
from edgekit.tflite_model import TensorSpec
from edgekit.verify.inputs import quantize, to_input_domain

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "examples" / "digits"


@pytest.fixture(scope="module")
def pixels(tmp_path_factory) -> Path:
    """The digits CNN behind a Rescaling(1/255) layer, and its eval/calib data as uint8 and as float32 0..255."""
    import keras

    d = tmp_path_factory.mktemp("pixels")
    base = keras.models.load_model(DIGITS / "model.keras")
    inp = keras.Input((8, 8, 1))
    keras.Model(inp, base(keras.layers.Rescaling(1 / 255)(inp))).save(d / "model.keras")
    for name in ("eval", "calib"):
        with np.load(DIGITS / f"{name}.npz") as z:
            x8 = np.round(z["x"] * 255).astype(np.uint8)
            np.savez(d / f"{name}_u8.npz", x=x8, y=z["y"])
            np.savez(d / f"{name}_f32.npz", x=x8.astype(np.float32), y=np.eye(10, dtype=np.float32)[z["y"]])  # one-hot labels
    return d


def _report(d: Path, out: Path, kind: str) -> dict:
    rc = main(["build", str(d / "model.keras"), "--target", "cortex-m4", "--calib", str(d / f"calib_{kind}.npz"),
               "--eval", str(d / f"eval_{kind}.npz"), "--out", str(out)])
    assert rc == 0
    return json.loads((out / "report.json").read_text())


def test_uint8_data_gives_the_same_int8_accuracy_as_float32(pixels, tmp_path):
    u8, f32 = _report(pixels, tmp_path / "u8", "u8"), _report(pixels, tmp_path / "f32", "f32")
    assert u8["accuracy"]["float"] == f32["accuracy"]["float"] > 0.95
    for key in ("int8_tflite", "int8_tflite_ref", "int8_tflm"):
        assert u8["accuracy"][key] == f32["accuracy"][key]
        assert u8["accuracy"][key] > 0.95  # wrapping 128..255 to negative codes gave far less
    assert (tmp_path / "u8" / "model.tflite").read_bytes() == (tmp_path / "f32" / "model.tflite").read_bytes()


def test_integer_codes_pass_raw_only_when_said_or_when_the_model_takes_them():
    spec = TensorSpec(name="in", shape=(1, 3), dtype="int8", scale=2.0, zero_point=-10)
    x = np.array([[0, 100, 127]], dtype=np.int8)
    # values: 100 / 2 - 10 = 40, 127 / 2 = 63.5 -> 64 (half away from zero) - 10 = 54
    assert to_input_domain(x, spec).tolist() == [[-10, 40, 54]]
    assert to_input_domain(x, spec, data_is_quantized=True).tolist() == [[0, 100, 127]]
    assert to_input_domain(x, spec, source_dtype="int8").tolist() == [[0, 100, 127]]
    assert to_input_domain(x.astype(np.uint8), spec, source_dtype="int8").tolist() == [[-10, 40, 54]]
    assert quantize(np.array([[-3.0, 1000.0, 1.0]], np.float32), spec).tolist() == [[-12, 127, -9]]
    with pytest.raises(InputError, match="data.npz: --data-is-quantized, but the data is uint8 and the model's input is int8"):
        to_input_domain(x.astype(np.uint8), spec, data_is_quantized=True, path="data.npz")
