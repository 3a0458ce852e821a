"""The one fine-tuning loop every compression stage uses (both Keras kinds).

The model is compiled with sparse categorical cross-entropy on the labels,
on probabilities when it ends in softmax and on logits otherwise, with Adam,
and trained seeded and silently.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from edgekit.compress.base import ends_in_softmax
from edgekit.data import Dataset
from edgekit.errors import InputError


def keras_of(model):
    """``keras`` (3) or ``tf_keras``, whichever built ``model``."""
    if any(c.__module__.startswith("tf_keras") for c in type(model).__mro__):
        import tf_keras

        return tf_keras
    import keras

    return keras


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps in one epoch over ``n`` samples."""
    return max(1, math.ceil(n / batch_size))


def check_labels(model, train: Dataset, stage: str) -> None:
    """Refuse labels outside the model's output classes (a shape mismatch would otherwise surface as a TF traceback)."""
    classes = int(model.outputs[0].shape[-1])
    top = int(train.y.max()) if len(train.y) else 0
    if classes > 1 and (top >= classes or int(train.y.min()) < 0):
        raise InputError(f"{train.path}: labels go up to {top}, but the model has {classes} outputs",
                         f"stage {stage} trains with sparse categorical cross-entropy; y must be class ids 0..{classes - 1}")


def compile_for_labels(model, learning_rate: float) -> None:
    """Compile ``model`` with Adam and the cross-entropy that matches its output (softmax or logits)."""
    k = keras_of(model)
    loss = k.losses.SparseCategoricalCrossentropy(from_logits=not ends_in_softmax(model))
    model.compile(optimizer=k.optimizers.Adam(learning_rate), loss=loss, metrics=["accuracy"])


def fine_tune(model, train: Dataset, *, epochs: int, learning_rate: float, batch_size: int, seed: int,
              stage: str, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train ``model`` in place on ``train`` for ``epochs``; return loss and train accuracy per epoch."""
    k = keras_of(model)
    check_labels(model, train, stage)
    k.utils.set_random_seed(seed)
    compile_for_labels(model, learning_rate)
    hist = model.fit(train.x, train.y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True, callbacks=list(callbacks))
    return {
        "epochs": epochs,
        "loss": [round(float(v), 6) for v in hist.history.get("loss", [])],
        "train_accuracy": [round(float(v), 6) for v in hist.history.get("accuracy", [])],
    }


def copy_model(model):
    """An independent copy of a Keras model (new layers, same weights), so stages never mutate their input."""
    k = keras_of(model)
    clone = k.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def evaluate(model, ds: Dataset, batch_size: int = 256) -> float:
    """Top-1 accuracy of a Keras model on a labelled dataset."""
    pred = model.predict(ds.x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(pred, axis=-1) == ds.y))
