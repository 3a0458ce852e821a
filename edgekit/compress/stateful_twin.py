"""Compressing a streaming Keras model through its stateless training twin.

A streaming model (stateful recurrent layers, a fixed batch of 1, one call at a
time) cannot be fitted on sequences ``[N, T, ...]`` directly. Its twin has the
same layers and weights with ``stateful=False`` and a free batch and time axis:
the T calls of a sequence become T x k timesteps of one sample (k timesteps per
call), so the twin's output on a whole sequence is the streaming model's output
on the sequence's last call, where the labels are scored
(:mod:`edgekit.sequences`). That is checked on the training sequences (seeded
random ones without training data) before anything is compressed. The recipe's stages prune and fine-tune the twin with
the model's loss; :func:`put_back` gives its layers and weights back to a
stateful batch-1 model for conversion.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edgekit.data import Dataset
from edgekit.errors import ConversionError, InputError
from edgekit.keras_state import keras3_refusal, run_calls, stateful_layers, streaming_input_shape, with_state_settings
from edgekit.load import LoadedModel
from edgekit.sequences import calls_per_sequence, flatten_calls

STAGES = ("prune", "structured")  # the stages tested on streaming models (both fine-tune through finetune.py)
CHECK_SEQUENCES = 8  # training sequences the twin must reproduce
TOLERANCE = 1e-4  # float32 difference allowed between the twin and the call-by-call model


@dataclass(frozen=True)
class Twin:
    """The stateless twin of a streaming model and the training sequences as the twin takes them."""

    model: LoadedModel
    train: Dataset | None
    layers: tuple[str, ...]  # the streaming model's stateful layers
    max_difference: float  # measured between the twin and the call-by-call model on the check sequences

    def to_dict(self) -> dict:
        return {"stateful_layers": list(self.layers), "trained_as": "stateless twin (each sequence of calls as one "
                "sample of consecutive timesteps), weights put back into the stateful batch-1 model",
                "twin_vs_streaming_max_difference": self.max_difference}


def make_twin(loaded: LoadedModel, stages: list[str], train: Dataset | None) -> Twin:
    """The twin of the streaming ``loaded`` and ``train`` (sequences) reshaped for it.

    InputError when a stage is not one of :data:`STAGES`, the model has no time axis in its input, or ``train``
    is not sequences; ConversionError for a Keras 3 model and when the twin does not reproduce the model.
    """
    model, where = loaded.model, str(loaded.path)
    layers = tuple(stateful_layers(model))
    other = [s for s in stages if s not in STAGES]
    if other:
        raise InputError(f"{where}: stage {other[0]} does not handle streaming models (stateful layer '{layers[0]}')",
                         f"stages that do: {', '.join(STAGES)}")
    if loaded.kind != "tf_keras":
        raise keras3_refusal(loaded.path, layers[0])
    shape = streaming_input_shape(loaded.path, model, loaded.input_shape)
    twin = with_state_settings(model, stateful=False, batch_shape=(None, None, *shape[2:]), unroll=False)
    seq_train = None
    # without training data (structured with epochs = 0) the twin is checked on seeded random sequences of 4 calls
    check_x = np.random.default_rng(0).normal(size=(CHECK_SEQUENCES, 4, *shape[1:])).astype(np.float32)
    if train is not None:
        calls = calls_per_sequence(train.x.shape, shape)
        if train.multi_io or calls is None:
            raise InputError(f"{train.path}: fine-tuning streaming model {where} needs sequences of calls "
                             f"x [N, T, {', '.join(map(str, shape[1:]))}], not x {list(train.x.shape)}",
                             "give each training sample as the T calls of one sequence (edgekit.sequences)")
        seq_train = replace(train, x=as_timesteps(train.x))
        check_x = train.x[:CHECK_SEQUENCES]
    diff = _check(model, twin, check_x, int(check_x.shape[1]), where)
    return Twin(LoadedModel(loaded.kind, loaded.path, model=twin, input_shape=(None, None, *shape[2:]),
                            loss=loaded.loss, input_names=loaded.input_names, output_names=loaded.output_names),
                seq_train, layers, diff)


def as_timesteps(x: np.ndarray) -> np.ndarray:
    """Sequences ``[N, T, k, ...]`` of calls of k timesteps -> ``[N, T*k, ...]``, one sample per sequence."""
    return x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:]).astype(np.float32)


def _check(model, twin, x: np.ndarray, calls: int, where: str) -> float:
    """The largest difference between the twin on whole sequences and ``model`` on their last calls; ConversionError past :data:`TOLERANCE`."""
    streamed = run_calls(model, flatten_calls(x, calls), calls)
    last = streamed.reshape(len(x), calls, *streamed.shape[1:])[:, -1]
    whole = np.asarray(twin.predict(as_timesteps(x), verbose=0))
    diff = float(np.max(np.abs(whole - last))) if whole.shape == last.shape else float("inf")
    if not diff <= TOLERANCE:
        raise ConversionError(f"{where}: the stateless twin of the streaming model does not reproduce its last calls "
                              f"(max difference {diff:.3g}), so it cannot be fine-tuned in its place",
                              "streaming models compress when every layer works per timestep and the last recurrent "
                              "layer returns its final state (return_sequences=False)")
    return round(diff, 9)


def put_back(loaded: LoadedModel, twin: Twin, compressed: LoadedModel) -> LoadedModel:
    """The streaming model with the compressed twin's layers and weights: stateful, batch 1, as ``loaded``."""
    model = with_state_settings(loaded.model, stateful=twin.layers, batch_shape=tuple(loaded.input_shape),
                                template=compressed.model)
    return replace(loaded, model=model)
