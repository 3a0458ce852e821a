"""Empirical bias correction: undo the mean output shift that int8 weights cause, on the calibration set, no labels.

Rounding a layer's weights to int8 (symmetric, per output channel, as the
converter does) changes ``W`` to ``Wq``; on real inputs ``x`` the layer's
pre-activation output then moves by ``E[(Wq - W) x]`` per channel, a bias
that adds up through the network (Nagel et al. 2019, section 4.2). This stage
measures that shift on the calibration inputs (the float model's activations
at each layer's input) and subtracts it from the layer's bias. The float
model changes slightly (by exactly that shift); the int8 model's per-channel
means move back to the float model's.

Conv2D, DepthwiseConv2D and Dense layers with a bias are corrected; layers
without one are listed as skipped. Receives the calibration set (``--calib``,
or ``--eval`` without it), not ``--train``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.compress.base import StageConfig, same_kind
from edgekit.compress.finetune import copy_model, keras_of
from edgekit.data import Dataset
from edgekit.errors import InputError
from edgekit.load import LoadedModel

NAME = "bias_correct"
DATA = "calib"  # apply() receives the calibration set instead of --train
LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")


@dataclass(frozen=True)
class Config(StageConfig):
    """``samples``: calibration inputs used to measure the shift."""

    STAGE = NAME

    samples: int = 256

    def __post_init__(self):
        self._check(isinstance(self.samples, int) and self.samples >= 8, f"samples must be an integer >= 8, not {self.samples!r}")


def int8_weights(k: np.ndarray, channel_axis: int) -> np.ndarray:
    """``k`` rounded as the converter stores it: symmetric int8 per channel along ``channel_axis``, dequantized."""
    axes = tuple(i for i in range(k.ndim) if i != channel_axis % k.ndim)
    scale = np.abs(k).max(axis=axes, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    return (np.clip(np.round(k / scale), -127, 127) * scale).astype(k.dtype)


def _shift(layer, x: np.ndarray, dk: np.ndarray) -> np.ndarray:
    """Mean pre-activation output of ``layer`` with kernel ``dk`` and no bias, per output channel."""
    import tensorflow as tf

    cfg = layer.get_config()
    kind = type(layer).__name__
    if kind == "Dense":
        y = np.tensordot(x, dk, axes=[[-1], [0]])
    else:
        strides = tuple(cfg.get("strides", (1, 1)))
        dil = tuple(cfg.get("dilation_rate", (1, 1)))
        pad = str(cfg.get("padding", "valid")).upper()
        if kind == "DepthwiseConv2D":
            y = tf.nn.depthwise_conv2d(x, dk, strides=(1, *strides, 1), padding=pad, dilations=dil).numpy()
        else:
            y = tf.nn.convolution(x, dk, strides=strides, padding=pad, dilations=dil).numpy()
    return y.reshape(-1, y.shape[-1]).mean(axis=0)


def apply(loaded: LoadedModel, cfg: Config, calib: Dataset | None, seed: int) -> tuple[LoadedModel, dict]:
    """Correct every eligible layer's bias; details give the largest shift removed per layer."""
    if calib is None:
        raise InputError(f"stage {NAME} measures the weight-rounding shift on calibration data, and none was given",
                         "pass --calib DATA (or --eval DATA)")
    model = copy_model(loaded.model)
    k = keras_of(model)
    x = calib.x[: cfg.samples].astype(np.float32)
    rows, skipped = [], []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in LAYERS:
            continue
        w = layer.get_weights()
        if len(w) < 2:
            skipped.append({"layer": layer.name, "reason": "no bias"})
            continue
        if kind == "DepthwiseConv2D" and w[0].shape[-1] != 1:
            skipped.append({"layer": layer.name, "reason": "depthwise multiplier != 1"})
            continue
        # the input as the float model (corrected so far) computes it
        inp = k.Model(model.inputs, layer.input).predict(x, batch_size=64, verbose=0)
        axis = 2 if kind == "DepthwiseConv2D" else -1
        dk = int8_weights(w[0], axis) - w[0]
        shift = _shift(layer, inp, dk)
        w[1] = (w[1] - shift).astype(w[1].dtype)
        layer.set_weights(w)
        rows.append({"layer": layer.name, "max_abs_shift": round(float(np.abs(shift).max()), 8)})
    return same_kind(loaded, model), {"layers": rows, "skipped": skipped, "samples": int(len(x))}
