"""Keras / SavedModel → TFLite: the float reference model and the quantized model.

Both Keras kinds are traced as a concrete function with a static batch of 1
(microcontrollers need static shapes) and frozen: with the batch fixed,
``Flatten`` and ``Reshape`` become one RESHAPE with a constant shape instead of
SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE computed at run time (three kernels a
TFLM build would carry for nothing). Plain SavedModels go through
``from_saved_model``, and so does a streaming tf_keras model (stateful recurrent
layers), whose state must stay a resource variable rather than be frozen
(:func:`_stateful_converter`).

Quantization schemes (``--quant``, :data:`SCHEMES`):

- ``int8``: full int8 (weights per channel, activations per tensor), int8 I/O;
- ``int16x8``: int16 activations, int8 weights (the converter's
  ``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``), int16 I/O;
- ``float16``: float16 weights, float32 compute and I/O (Linux targets only);
- ``dynamic``: dynamic-range int8 weights, float I/O (Linux targets only).

``int8`` and ``int16x8`` use the user's calibration samples as the
``representative_dataset`` and refuse to run without them; ``int8`` takes a
calibration method (:mod:`edgekit.calibrate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from edgekit.data import Dataset, take
from edgekit.errors import ConversionError, InputError
from edgekit.keras_state import keras3_refusal, stateful_layers, streaming_input_shape
from edgekit.load import LoadedModel, recurrent_layers
from edgekit.quiet import quiet

SCHEMES = ("int8", "int16x8", "float16", "dynamic")
CALIBRATED = ("int8", "int16x8")  # the schemes that need calibration data
MAX_CALIB_SAMPLES = 500  # more rarely moves the ranges; the converter runs each sample


def keras_converter(loaded: LoadedModel):
    """A fresh ``TFLiteConverter`` for ``loaded`` (Keras either kind, or a SavedModel), not yet configured.

    Every converter edgekit makes starts here, so float and every quantization
    scheme get the same batch-1 graph.
    """
    import tensorflow as tf

    if loaded.kind == "saved_model":
        return tf.lite.TFLiteConverter.from_saved_model(str(loaded.path))
    if not loaded.is_keras:
        raise ValueError(f"cannot convert a {loaded.kind} model")
    model = loaded.model
    if stateful_layers(model):
        if loaded.kind == "keras3":
            raise keras3_refusal(loaded.path, stateful_layers(model)[0])
        return _stateful_converter(loaded)
    if len(model.inputs) > 1 or len(model.outputs) > 1:
        return _multi_io_converter(model)
    specs = [tf.TensorSpec([1, *t.shape[1:]], tf.as_dtype(t.dtype)) for t in model.inputs]
    fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
    rnn = recurrent_layers(model)
    if rnn and loaded.kind == "keras3":
        raise ConversionError(
            f"{loaded.path}: Keras 3 recurrent layer '{rnn[0]}' converts to a WHILE loop that TensorFlow's int8 "
            "quantizer crashes on (TF 2.21)",
            "build the model with tf_keras (Keras 2): its LSTM converts to one UNIDIRECTIONAL_SEQUENCE_LSTM op")
    # No trackable_obj: the converter then freezes the variables into constants.
    # With one (the saved-model path) a Keras 3 model keeps VAR_HANDLE and
    # READ_VARIABLE ops, which break calibration. A tf_keras LSTM needs it: only the
    # saved-model path fuses it into UNIDIRECTIONAL_SEQUENCE_LSTM (the frozen path
    # keeps a WHILE loop, and its int8 quantization crashed the converter).
    with quiet():
        return tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function(*specs)], model if rnn else None)



def _stateful_converter(loaded: LoadedModel):
    """The converter of a streaming Keras model, its state kept in resource variables (never frozen into constants).

    Freezing would make the state a constant and drop its update: a streaming model
    would silently turn stateless. The model, its recurrent layers unrolled over
    the call's fixed timesteps (a WHILE loop crashes the int8 quantizer), is
    exported as a batch-1 function to a temporary SavedModel and converted like a
    ``tf.Module`` streaming model: the weights are frozen, the state stays
    VAR_HANDLE/READ_VARIABLE/ASSIGN_VARIABLE with a CALL_ONCE init (checked in
    :func:`_run`). The folder lives as long as the converter.
    """
    import tempfile

    import tensorflow as tf

    from edgekit.keras_state import with_state_settings

    model = loaded.model
    if len(model.inputs) > 1 or len(model.outputs) > 1:
        raise InputError(f"{loaded.path}: a stateful model with several inputs or outputs is not handled",
                         "give the streaming model one input and one output")
    shape = streaming_input_shape(loaded.path, model, loaded.input_shape)
    step = with_state_settings(model, stateful=True, batch_shape=shape, unroll=True)
    holder = tf.Module()
    holder.model = step
    holder.call = tf.function(lambda x: step(x, training=False),
                              input_signature=[tf.TensorSpec(shape, tf.as_dtype(model.inputs[0].dtype))])
    folder = tempfile.TemporaryDirectory(prefix="edgekit-stateful-")
    with quiet():
        tf.saved_model.save(holder, folder.name, signatures=holder.call)
        conv = tf.lite.TFLiteConverter.from_saved_model(folder.name)
    conv.edgekit_state = StateExport(folder, tuple(stateful_layers(model)))
    return conv


@dataclass(frozen=True)
class StateExport:
    """The temporary SavedModel a stateful Keras model is converted from, and its stateful layers' names."""

    folder: Any
    layers: tuple[str, ...]


def _multi_io_converter(model):
    """The converter of a several-input or several-output Keras model, carrying the names to map its I/O back by.

    The traced function takes named inputs and returns a dict keyed by Keras'
    output names; the converter orders outputs its own way (flattening sorts
    dict keys), so :func:`order_io` later puts both back in Keras' order by
    matching tensor names, never by position.
    """
    import tensorflow as tf

    from edgekit.load import keras_io_names

    in_names, out_names = keras_io_names(model)
    specs = [tf.TensorSpec([1, *t.shape[1:]], tf.as_dtype(t.dtype), name=n) for t, n in zip(model.inputs, in_names)]

    def call(*xs):
        ys = model(list(xs) if len(xs) > 1 else xs[0], training=False)
        ys = list(ys.values()) if isinstance(ys, dict) else list(ys) if isinstance(ys, (list, tuple)) else [ys]
        return dict(zip(out_names, ys))

    with quiet():
        cf = tf.function(call).get_concrete_function(*specs)
        conv = tf.lite.TFLiteConverter.from_concrete_functions([cf])
    traced = {k: v.name.split(":")[0] for k, v in cf.structured_outputs.items()}
    conv.edgekit_io = IoNames(inputs=tuple(in_names), outputs=tuple(out_names),
                              output_tensors=tuple(traced[n] for n in out_names))
    return conv


@dataclass(frozen=True)
class IoNames:
    """A multi-I/O model's Keras input and output names, and the traced tensor name of each output."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    output_tensors: tuple[str, ...]


def order_io(tflite: bytes, io: IoNames, where: str) -> bytes:
    """``tflite`` with its inputs and outputs in Keras' order, found by name, and its outputs named as in Keras.

    ConversionError (naming ``where``) when a Keras name has no tensor.
    """
    from tensorflow.lite.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(tflite))
    sg = model.subgraphs[0]

    def name(i: int) -> str:
        n = sg.tensors[i].name
        return n.decode() if isinstance(n, bytes) else str(n)

    def find(candidates, wanted: str, what: str) -> int:
        hits = [int(i) for i in candidates if name(int(i)) == wanted or name(int(i)).split(":")[0].endswith("_" + wanted)]
        if len(hits) != 1:
            raise ConversionError(f"{where}: the converted model has no single {what} tensor named {wanted!r} "
                                  f"(found: {', '.join(name(int(i)) for i in candidates)})")
        return hits[0]

    ins = [find(sg.inputs, n, "input") for n in io.inputs] if len(io.inputs) > 1 else list(sg.inputs)
    outs = [find(sg.outputs, t, "output") for t in io.output_tensors]
    sg.inputs = np.array(ins, dtype=np.int32)
    sg.outputs = np.array(outs, dtype=np.int32)
    for i, n in zip(outs, io.outputs):
        sg.tensors[i].name = n.encode()
    return bytes(fu.convert_object_to_bytearray(model))


def _run(converter, what: str, loaded: LoadedModel) -> bytes:
    try:
        with quiet():
            out = bytes(converter.convert())
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"{loaded.path}: {what} conversion failed: {first[:300]}") from None
    state = getattr(converter, "edgekit_state", None)
    if state is not None and not getattr(converter, "_experimental_calibrate_only", False):
        _check_state_kept(out, state, what, loaded)
    io = getattr(converter, "edgekit_io", None)
    if io is None or getattr(converter, "_experimental_calibrate_only", False):
        return out
    return order_io(out, io, str(loaded.path))


def _check_state_kept(tflite: bytes, state: StateExport, what: str, loaded: LoadedModel) -> None:
    """ConversionError unless the converted model keeps state in resource variables (assigned on every call)."""
    from edgekit.tflite_model import read_model

    ops = set(read_model(tflite, name=str(loaded.path)).ops)
    if not {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"} <= ops:
        raise ConversionError(f"{loaded.path}: the {what} model lost the state of stateful layer '{state.layers[0]}' "
                              "(no VAR_HANDLE/READ_VARIABLE/ASSIGN_VARIABLE ops); it would run stateless")


def convert_float(loaded: LoadedModel) -> bytes:
    """The float32 TFLite model: the size and accuracy reference."""
    return _run(keras_converter(loaded), "float TFLite", loaded)


def samples_of(x: np.ndarray | tuple[np.ndarray, ...]):
    """A ``representative_dataset``-style generator factory: one float32 sample per step, batch 1.

    ``x`` is one array, or a tuple with one array per model input (each step then yields one sample of each).
    """
    arrs = [a.astype(np.float32) for a in (x if isinstance(x, tuple) else (x,))]

    def gen() -> Iterator[list[np.ndarray]]:
        for i in range(len(arrs[0])):
            yield [a[i : i + 1] for a in arrs]

    return gen


def int8_converter(loaded: LoadedModel, calib_x: np.ndarray, *, int8_io: bool = True):
    """A ``TFLiteConverter`` set up for full-int8 quantization calibrated on ``calib_x`` (not yet run)."""
    import tensorflow as tf

    conv = keras_converter(loaded)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = samples_of(calib_x)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if loaded.kind == "saved_model" or getattr(conv, "edgekit_state", None) is not None:
        # state kept in tf.Variables between calls (a streaming model) becomes int8 resource variables;
        # without this the converter keeps them float32 behind QUANTIZE/DEQUANTIZE
        conv._experimental_variable_quantization = True
    if int8_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv


def check_scheme(quant: str) -> str:
    """``quant`` when it is one of :data:`SCHEMES`, else :class:`InputError`."""
    if quant not in SCHEMES:
        raise InputError(f"--quant {quant!r}: unknown quantization scheme", f"valid: {', '.join(SCHEMES)}")
    return quant


def scheme_converter(loaded: LoadedModel, quant: str, calib_x: np.ndarray | None):
    """A ``TFLiteConverter`` for scheme ``quant`` (see the module docstring), not yet run.

    ``int8`` and ``int16x8`` need ``calib_x``; their I/O has the activations' dtype.
    """
    import tensorflow as tf

    if quant == "int8":
        return int8_converter(loaded, calib_x)
    conv = keras_converter(loaded)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if quant == "int16x8":
        conv.representative_dataset = samples_of(calib_x)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        conv.inference_input_type = tf.int16
        conv.inference_output_type = tf.int16
    elif quant == "float16":
        conv.target_spec.supported_types = [tf.float16]
    elif quant != "dynamic":
        check_scheme(quant)
    return conv


def convert_quantized(loaded: LoadedModel, calib: Dataset | None, quant: str = "int8", calibration=None) -> bytes:
    """The deployed model: ``loaded`` quantized with scheme ``quant`` and (int8) calibration method ``calibration``.

    ``calibration`` is a :class:`edgekit.calibrate.Calibration` (default min-max).
    """
    from edgekit.calibrate import Calibration

    cal = calibration or Calibration()
    check_scheme(quant)
    if quant not in CALIBRATED:
        return _run(scheme_converter(loaded, quant, None), f"{quant}", loaded)
    if calib is None:
        raise InputError(
            f"{loaded.path}: {quant} quantization needs calibration data",
            "pass --calib DATA (a few hundred representative inputs), or --eval DATA to calibrate on the eval set",
        )
    x = take(calib, MAX_CALIB_SAMPLES).x
    if cal.method == "minmax":
        return _run(scheme_converter(loaded, quant, x), quant, loaded)
    if quant != "int8":
        raise InputError(f"--calibration {cal.label} works with --quant int8 only",
                         "int16 activations have 256 times int8's resolution: min-max ranges cost them little")
    return calibrate_int8(loaded, x, cal)


def calibrate_int8(loaded: LoadedModel, calib_x: np.ndarray, cal) -> bytes:
    """Full int8 through the calibrate-only path, with the activation ranges edited by ``cal`` in between."""
    import tensorflow as tf
    from tensorflow.lite.python import convert as tfl_convert

    from edgekit.calibrate import edit_ranges

    conv = int8_converter(loaded, calib_x)
    conv._experimental_calibrate_only = True
    calibrated = _run(conv, "calibration", loaded)
    io = getattr(conv, "edgekit_io", None)
    edited = edit_ranges(calibrated, calib_x, cal, io.inputs if io is not None else ())
    try:
        with quiet():  # the arguments the converter itself passes after calibrating (lite.py, _optimize_tflite_model)
            out = bytes(tfl_convert.mlir_quantize(edited, False, input_data_type=tf.int8, output_data_type=tf.int8))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"{loaded.path}: int8 quantization with {cal.label} ranges failed: {first[:300]}") from None
    return out if io is None else order_io(out, io, str(loaded.path))


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
    conv = int8_converter(loaded, take(calib, MAX_CALIB_SAMPLES).x, int8_io=int8_io)
    return _run(conv, "full-int8", loaded)
