"""Types and helpers shared by the compression stages.

A stage module exports ``NAME``, a frozen ``Config`` dataclass built from the
recipe's parameters (``Config.from_dict``; unknown keys refused) and
``apply(loaded, cfg, train, seed) -> (LoadedModel, details)``. Stages never
import tfmot at module level: importing it sets ``TF_USE_LEGACY_KERAS=1`` for
the whole process, so it happens inside functions and only for tf_keras models.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from edgekit.data import Dataset
from edgekit.errors import InputError
from edgekit.load import LoadedModel

PRUNABLE = ("Conv2D", "DepthwiseConv2D", "Dense")


@dataclass
class CompressResult:
    """The compressed model (a new Keras model in a :class:`LoadedModel`) and one dict per stage that ran."""

    model: LoadedModel
    stages: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"model_kind": self.model.kind, "stages": self.stages}


def check_params(cls, params: dict[str, Any], stage: str):
    """Build the dataclass ``cls`` from ``params``; unknown keys raise :class:`InputError` with the closest valid one."""
    valid = [f.name for f in fields(cls)]
    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(valid)}"
            raise InputError(f"stage {stage}: unknown parameter {key!r}", hint)
    try:
        return cls(**params)
    except TypeError as exc:
        raise InputError(f"stage {stage}: bad parameters ({exc})") from None


class StageConfig:
    """Mixin for stage configs: ``from_dict`` with strict keys, ``to_dict``, and small value checks."""

    STAGE = "?"

    @classmethod
    def from_dict(cls, params: dict[str, Any]):
        return check_params(cls, dict(params), cls.STAGE)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _check(self, ok: bool, what: str) -> None:
        if not ok:
            raise InputError(f"stage {self.STAGE}: {what}")


def require_labels(train: Dataset | None, stage: str) -> Dataset:
    """The training set, or an :class:`InputError` when it is missing or has no labels (an anomaly model's targets are its inputs)."""
    if train is not None and train.task == "anomaly":
        return train
    if train is None or not train.has_labels:
        where = "no training data was given" if train is None else f"{train.path} has no labels y"
        raise InputError(f"stage {stage} fine-tunes the model, but {where}; {stage} needs --train data with labels (y)",
                         "pass --train DATA.npz with arrays x and y, or set epochs = 0")
    return train


def ends_in_softmax(model) -> bool:
    """True when the model's last layer outputs probabilities (softmax activation or a Softmax layer)."""
    last = model.layers[-1]
    while hasattr(last, "layer") and not hasattr(last, "activation"):  # tfmot wrappers hold the real layer
        last = last.layer
    if type(last).__name__ == "Softmax":
        return True
    act = getattr(last, "activation", None)
    name = getattr(act, "__name__", str(act)) if act is not None else ""
    return name == "softmax" or (type(last).__name__ == "Activation" and last.get_config().get("activation") == "softmax")


def kernel_of(layer) -> Any | None:
    """The main weight variable of a prunable layer (``kernel`` or ``depthwise_kernel``), else None."""
    for attr in ("kernel", "depthwise_kernel"):
        v = getattr(layer, attr, None)
        if v is not None and type(layer).__name__ in PRUNABLE:
            return v
    return None


def layer_sparsity(model) -> list[dict[str, Any]]:
    """Per prunable layer: name, type, kernel size and the fraction of exactly-zero kernel weights."""
    rows = []
    for layer in model.layers:
        k = kernel_of(layer)
        if k is None:
            continue
        w = np.asarray(k.numpy() if hasattr(k, "numpy") else k)
        rows.append({"layer": layer.name, "type": type(layer).__name__, "weights": int(w.size), "sparsity": round(float(np.mean(w == 0)), 6)})
    return rows


def count_params(model) -> int:
    """Total number of weights (trainable and not) of a Keras model."""
    return int(sum(int(np.prod(w.shape)) for w in model.weights))


def same_kind(loaded: LoadedModel, model) -> LoadedModel:
    """A :class:`LoadedModel` of the same kind and path as ``loaded`` holding ``model``."""
    return LoadedModel(loaded.kind, loaded.path, model=model, input_shape=loaded.input_shape, input_dtype=loaded.input_dtype,
                       loss=loaded.loss, input_names=loaded.input_names, input_shapes=loaded.input_shapes,
                       output_names=loaded.output_names)
