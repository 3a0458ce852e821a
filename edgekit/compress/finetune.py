"""The one fine-tuning loop every compression stage uses (both Keras kinds).

The model is compiled with Adam and the loss of the data's task
(:attr:`edgekit.data.Dataset.task`): sparse categorical cross-entropy for
classification (on probabilities when the model ends in softmax, on logits
otherwise), binary cross-entropy for binary (on the sigmoid's probability, or
on a logit), mean squared error against ``y`` for regression and against the
input itself for anomaly (an autoencoder learns to reconstruct its input);
it is trained seeded and silently.
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
    """Refuse labels that do not fit the model's output (a shape mismatch would otherwise surface as a TF traceback)."""
    out = tuple(model.outputs[0].shape[1:])
    if train.task == "regression" and train.y is not None and tuple(train.y.shape[1:]) not in (out, (1,) if out == () else out, ()):
        raise InputError(f"{train.path}: regression targets y have shape {tuple(train.y.shape[1:])} per sample, "
                         f"but the model outputs {out}")
    if train.task != "classification":
        return
    classes = int(out[-1])
    top = int(train.y.max()) if len(train.y) else 0
    if classes > 1 and (top >= classes or int(train.y.min()) < 0):
        raise InputError(f"{train.path}: labels go up to {top}, but the model has {classes} outputs",
                         f"stage {stage} trains with sparse categorical cross-entropy; y must be class ids 0..{classes - 1}")


def task_loss(model, task: str):
    """The loss fine-tuning uses for ``task`` (see the module docstring)."""
    from edgekit.task import keras_head

    k = keras_of(model)
    if task == "binary":
        return k.losses.BinaryCrossentropy(from_logits=keras_head(model).activation != "sigmoid")
    if task in ("regression", "anomaly"):
        return k.losses.MeanSquaredError()
    return k.losses.SparseCategoricalCrossentropy(from_logits=not ends_in_softmax(model))


def compile_for_labels(model, learning_rate: float, task: str = "classification", loss: Any = None) -> str:
    """Compile ``model`` with Adam and ``loss`` (the model's own), else the loss of ``task``; return which loss, for reports.

    Accuracy is tracked for classification and binary.
    """
    from edgekit.model_loss import loss_name

    k = keras_of(model)
    metrics = ["accuracy"] if task in ("classification", "binary") else []
    chosen = loss if loss is not None else task_loss(model, task)
    model.compile(optimizer=k.optimizers.Adam(learning_rate), loss=chosen, metrics=metrics)
    source = "the model's compiled loss" if loss is not None else f"the {task} task's loss"
    return f"{loss_name(chosen)} ({source})"


def targets(train: Dataset) -> np.ndarray:
    """What the model is fitted to: the inputs for anomaly (reconstruction), else the labels."""
    if train.task == "anomaly":
        return train.x.astype(np.float32)
    if train.task == "binary":
        return train.y.astype(np.float32).reshape(len(train.y), 1)
    return train.y


def fine_tune(model, train: Dataset, *, epochs: int, learning_rate: float, batch_size: int, seed: int,
              stage: str, callbacks: Sequence[Any] = (), loss: Any = None) -> dict[str, Any]:
    """Train ``model`` in place on ``train`` for ``epochs``; return loss and train accuracy per epoch.

    ``loss`` is the model's own compiled loss (:attr:`edgekit.load.LoadedModel.loss`); None uses the task's.
    """
    k = keras_of(model)
    check_labels(model, train, stage)
    k.utils.set_random_seed(seed)
    used = compile_for_labels(model, learning_rate, train.task, loss)
    hist = model.fit(train.x, targets(train), epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True, callbacks=list(callbacks))
    return {
        "epochs": epochs,
        "task": train.task,
        "loss_function": used,
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
