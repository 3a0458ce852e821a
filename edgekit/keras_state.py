"""The state settings of a Keras model's recurrent layers: which layers keep state, and the same model with other settings.

A streaming Keras model keeps its state in a stateful recurrent layer
(``SimpleRNN``/``GRU``/``LSTM`` with ``stateful=True``) and takes one call of a
fixed batch of 1 at a time: the layer's state variables are assigned on every
call and carry to the next. Conversion and compression need the same layers
and weights with other settings (:func:`with_state_settings`): unrolled over
the call's fixed timesteps for conversion (no WHILE loop), stateless with a
free batch and time axis for fine-tuning (:mod:`edgekit.compress.stateful_twin`).
Works on the model config and weights, tf_keras models only.
"""

from __future__ import annotations

from typing import Any, Collection

RNN_CLASSES = ("SimpleRNN", "GRU", "LSTM")


def stateful_layers(model) -> list[str]:
    """Names of the layers of a Keras model that keep state across calls (``stateful=True``), in model order."""
    found = []
    for layer in getattr(model, "layers", []):
        if getattr(layer, "stateful", False):
            found.append(layer.name)
        elif getattr(layer, "layers", None):
            found += stateful_layers(layer)
    return found


def streaming_input_shape(path, model, input_shape) -> tuple[int, ...]:
    """The input shape of a streaming model, ``[1, timesteps, features...]`` with every dimension fixed.

    Raises InputError naming the first stateful layer otherwise: the model takes one call of a batch of 1 at a time.
    """
    from edgekit.errors import InputError

    shape = tuple(input_shape)
    if len(shape) < 3 or shape[0] != 1 or any(d is None for d in shape):
        raise InputError(f"{path}: stateful layer '{stateful_layers(model)[0]}' needs a fixed input shape with a batch "
                         f"of 1 and a time axis, [1, timesteps, features...] (one call at a time); the model's input is "
                         f"{list(shape)}", "build it with keras.Input(batch_shape=(1, timesteps, features))")
    return shape


def keras3_refusal(path, layer: str):
    """The ConversionError for a Keras 3 streaming model: its state would not survive conversion.

    Exported like a tf_keras one, a Keras 3 stateful GRU lost its state's initializer (no CALL_ONCE) and its
    outputs were NaN on LiteRT (Keras 3.x, TF 2.21).
    """
    from edgekit.errors import ConversionError

    return ConversionError(f"{path}: Keras 3 stateful layer '{layer}' is not converted (edgekit keeps the state of "
                           "tf_keras streaming models only)", "build the streaming model with tf_keras (Keras 2)")


def with_state_settings(model, *, stateful: bool | Collection[str], batch_shape: tuple[int | None, ...],
                        unroll: bool | None = None, template: Any = None):
    """A new model with ``model``'s weights whose recurrent layers have ``stateful`` (and ``unroll`` unless None) and
    whose input has ``batch_shape``. ``stateful`` is one setting for every recurrent layer, or the names of the
    layers that keep state.

    The layers come from ``template``'s config (default ``model``): a compressed twin whose layers have fewer units
    gives its config and weights back to the streaming model this way.
    """
    source = template if template is not None else model
    cfg = source.get_config()
    for entry in cfg["layers"]:
        c = entry["config"]
        if entry["class_name"] == "InputLayer":
            c.pop("batch_shape", None)
            c["batch_input_shape"] = tuple(batch_shape)
        elif entry["class_name"] in RNN_CLASSES:
            c["stateful"] = stateful if isinstance(stateful, bool) else c["name"] in stateful
            if unroll is not None:
                c["unroll"] = unroll
    rebuilt = type(source).from_config(cfg)
    rebuilt.set_weights(source.get_weights())
    return rebuilt


def run_calls(model, x, calls: int):
    """Float outputs of a stateful Keras model run one call per row of ``x`` (``[N*T, *input shape]``), one row per call.

    The state is reset before every ``calls`` rows (a sequence, :mod:`edgekit.sequences`) and carries within one.
    """
    import numpy as np
    import tensorflow as tf

    step = tf.function(lambda frame: model(frame, training=False))
    out = []
    for i, frame in enumerate(np.asarray(x, np.float32)):
        if i % calls == 0:
            model.reset_states()
        out.append(np.asarray(step(frame[None]))[0])
    model.reset_states()
    return np.stack(out)
