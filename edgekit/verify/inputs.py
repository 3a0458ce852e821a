"""The one path from a user's data to a model's input tensor.

Integer data for a model with a float input is the values themselves (uint8
pixel 200 is 200.0); for a quantized input they are quantized with the
tensor's scale and zero point like TFLite's QUANTIZE op. Integer data is passed
to an integer input unchanged only when the user says it is already quantized,
or when the model they gave takes that integer type itself (an int8 ``.tflite``
with int8 data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.errors import InputError
from edgekit.tflite_model import TensorSpec


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Real values to the tensor's dtype as TFLite's QUANTIZE does: round half away from zero, add the zero point, saturate.

    Integer ``x`` are values, not codes (use :func:`to_input_domain` to pass codes through).
    Float tensors get the values as float32.
    """
    dtype = np.dtype(spec.dtype)
    if not np.issubdtype(dtype, np.integer):
        return x.astype(dtype)
    v = x.astype(np.float32) / np.float32(spec.scale)
    q = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)) + spec.zero_point
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


def is_raw(x: np.ndarray, spec: TensorSpec, *, data_is_quantized: bool = False, source_dtype: str | None = None) -> bool:
    """Whether ``x`` goes into the tensor unchanged (already in its integer type).

    ``source_dtype`` is the input dtype of the model the user gave (float32 for
    Keras): integer data of exactly that type is taken as already quantized.
    """
    if not np.issubdtype(x.dtype, np.integer) or not np.issubdtype(np.dtype(spec.dtype), np.integer):
        return False
    return data_is_quantized or (source_dtype is not None and np.dtype(source_dtype) == x.dtype)


def to_input_domain(x: np.ndarray, spec: TensorSpec, *, data_is_quantized: bool = False,
                    source_dtype: str | None = None, path: str | Path = "data") -> np.ndarray:
    """``x`` as the model's input tensor takes it; see the module docstring.

    With ``data_is_quantized`` the data must already have the tensor's integer
    dtype (InputError naming ``path`` otherwise).
    """
    want = np.dtype(spec.dtype)
    if data_is_quantized and x.dtype != want:
        raise InputError(f"{path}: --data-is-quantized, but the data is {x.dtype} and the model's input is {want}",
                         f"save the inputs as {want} codes, or drop --data-is-quantized to quantize the values")
    if is_raw(x, spec, data_is_quantized=data_is_quantized, source_dtype=source_dtype):
        return x.astype(want)
    return quantize(x, spec)
