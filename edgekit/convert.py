"""Keras / SavedModel → TFLite: the float reference model and the full-int8 model.

Both Keras kinds go through ``TFLiteConverter.from_keras_model`` (the
converted model has a batch of 1, as microcontrollers need static shapes);
plain SavedModels go through ``from_saved_model``. Full-int8 uses the user's calibration samples as the
``representative_dataset`` and refuses to run without them.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from edgekit.data import Dataset
from edgekit.errors import ConversionError, InputError
from edgekit.load import LoadedModel
from edgekit.quiet import quiet

MAX_CALIB_SAMPLES = 500  # more rarely moves the ranges; the converter runs each sample


def keras_converter(loaded: LoadedModel):
    """A fresh ``TFLiteConverter`` for ``loaded`` (Keras either kind, or a SavedModel), not yet configured."""
    import tensorflow as tf

    if loaded.kind == "saved_model":
        return tf.lite.TFLiteConverter.from_saved_model(str(loaded.path))
    if not loaded.is_keras:
        raise ValueError(f"cannot convert a {loaded.kind} model")
    # from_keras_model freezes the variables of both Keras kinds; a tf.function
    # over a Keras 3 model leaves READ_VARIABLE ops that break calibration.
    return tf.lite.TFLiteConverter.from_keras_model(loaded.model)


def _run(converter, what: str, loaded: LoadedModel) -> bytes:
    try:
        with quiet():
            return bytes(converter.convert())
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"{loaded.path}: {what} conversion failed: {first[:300]}") from None


def convert_float(loaded: LoadedModel) -> bytes:
    """The float32 TFLite model: the size and accuracy reference."""
    return _run(keras_converter(loaded), "float TFLite", loaded)


def samples_of(x: np.ndarray):
    """A ``representative_dataset``-style generator factory: one float32 sample per step, batch 1."""
    arr = x.astype(np.float32)

    def gen() -> Iterator[list[np.ndarray]]:
        for i in range(len(arr)):
            yield [arr[i : i + 1]]

    return gen


def int8_converter(loaded: LoadedModel, calib_x: np.ndarray, *, int8_io: bool = True):
    """A ``TFLiteConverter`` set up for full-int8 quantization calibrated on ``calib_x`` (not yet run)."""
    import tensorflow as tf

    conv = keras_converter(loaded)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = samples_of(calib_x)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv


def convert_int8(loaded: LoadedModel, calib: Dataset | None, *, int8_io: bool = True) -> bytes:
    """Full-int8 post-training quantization calibrated on ``calib``.

    With ``int8_io`` the model's input and output are int8 too (what TFLM and
    edgekit's runners expect); otherwise they stay float32.
    """
    if calib is None:
        raise InputError(
            f"{loaded.path}: full-int8 quantization needs calibration data",
            "pass --calib DATA (a few hundred representative inputs), or --eval DATA to calibrate on the eval set",
        )
    conv = int8_converter(loaded, calib.x[:MAX_CALIB_SAMPLES], int8_io=int8_io)
    return _run(conv, "full-int8", loaded)
