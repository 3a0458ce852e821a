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
    several = len(model.outputs) > 1
    for j, (task, y) in enumerate(zip(train.tasks, train.ys)):
        name = f"y{j}" if several else "y"
        if task == "anomaly":
            continue
        if y is None:
            if not several:
                continue
            raise InputError(f"{train.path}: stage {stage} fine-tunes on labels, and the data has no array {name}"
                             + (f" for output {j}" if several else ""), "add the labels to --train")
        out = tuple(model.outputs[j].shape[1:])
        if task == "regression" and tuple(y.shape[1:]) not in (out, (1,) if out == () else out, ()):
            raise InputError(f"{train.path}: regression targets {name} have shape {tuple(y.shape[1:])} per sample, "
                             f"but the model outputs {out}")
        if task != "classification":
            continue
        classes = int(out[-1])
        top = int(y.max()) if len(y) else 0
        if classes > 1 and (top >= classes or int(y.min()) < 0):
            raise InputError(f"{train.path}: labels {name} go up to {top}, but the model has {classes} outputs"
                             + (f" in output {j}" if several else ""),
                             f"stage {stage} trains with sparse categorical cross-entropy; {name} must be class ids 0..{classes - 1}")


def task_loss(model, task: str | tuple[str, ...]):
    """The loss fine-tuning uses for ``task`` (see the module docstring); a list of losses for one task per output."""
    from edgekit.task import keras_head

    k = keras_of(model)
    if isinstance(task, tuple):
        return [_output_loss(k, model, t, j) for j, t in enumerate(task)]
    if task == "binary":
        return k.losses.BinaryCrossentropy(from_logits=keras_head(model).activation != "sigmoid")
    if task in ("regression", "anomaly"):
        return k.losses.MeanSquaredError()
    return k.losses.SparseCategoricalCrossentropy(from_logits=not ends_in_softmax(model))


def _output_loss(k, model, task: str, j: int):
    from edgekit.task import keras_head

    head = keras_head(model, j)
    if task == "binary":
        return k.losses.BinaryCrossentropy(from_logits=head.activation != "sigmoid")
    if task in ("regression", "anomaly"):
        return k.losses.MeanSquaredError()
    return k.losses.SparseCategoricalCrossentropy(from_logits=head.activation != "softmax")


def compile_for_labels(model, learning_rate: float, task: str = "classification", loss: Any = None) -> str:
    """Compile ``model`` with Adam and ``loss`` (the model's own), else the loss of ``task``; return which loss, for reports.

    Accuracy is tracked for classification and binary.
    """
    from edgekit.model_loss import loss_name

    k = keras_of(model)
    metrics = ["accuracy"] if task in ("classification", "binary") else []
    chosen = loss if loss is not None else task_loss(model, task)
    model.compile(optimizer=k.optimizers.Adam(learning_rate), loss=chosen, metrics=metrics)
    what = "/".join(task) + " tasks' losses" if isinstance(task, tuple) else f"{task} task's loss"
    source = "the model's compiled loss" if loss is not None else f"the {what}"
    return f"{loss_name(chosen)} ({source})"


def targets(train: Dataset) -> np.ndarray | list[np.ndarray]:
    """What the model is fitted to: the inputs for anomaly (reconstruction), else the labels; a list for several outputs."""
    if train.multi_io and isinstance(train.task, tuple):
        return [_target(t, y, train) for t, y in zip(train.tasks, train.ys)]
    return _target(train.task, train.y, train)


def _target(task: str, y: np.ndarray | None, train: Dataset) -> np.ndarray:
    if task == "anomaly":  # y, if any, flags anomalies: the target is the input itself
        return train.xs[0].astype(np.float32)
    if task == "binary":
        return y.astype(np.float32).reshape(len(y), 1)
    return y


def fine_tune(model, train: Dataset, *, epochs: int, learning_rate: float, batch_size: int, seed: int,
              stage: str, callbacks: Sequence[Any] = (), loss: Any = None) -> dict[str, Any]:
    """Train ``model`` in place on ``train`` for ``epochs``; return loss and train accuracy per epoch.

    ``loss`` is the model's own compiled loss (:attr:`edgekit.load.LoadedModel.loss`); None uses the task's.
    """
    k = keras_of(model)
    check_labels(model, train, stage)
    k.utils.set_random_seed(seed)
    used = compile_for_labels(model, learning_rate, train.task, loss)
    hist = model.fit(train.keras_x, targets(train), epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True, callbacks=list(callbacks))
    return {
        "epochs": epochs,
        "task": train.task if isinstance(train.task, str) else list(train.task),
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
