"""Data for models that keep state between calls: sequences of calls.

A streaming model (SVDF, or resource variables updated on every call) gives an
output per call that depends on the calls before it. Its data holds sequences:
``x`` of shape ``[N, T, *model input shape without the batch axis]`` is N
sequences of T calls each; every runtime resets the model's state (variable
tensors, resource variables) before each sequence and not within one. Labels
``y`` are one per sequence (``[N]``, or ``[N, *output shape]``) and are scored
on the output of the sequence's last call; bit-exactness compares every call's
output. Data of shape ``[N, *input shape]`` is N independent calls, with a reset
before each (so an LSTM, whose state TFLite keeps in variable tensors, never
leaks one sample's state into the next).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np


def calls_per_sequence(x_shape: Sequence[int], input_shape: Sequence[int | None]) -> int | None:
    """T when ``x_shape`` is ``[N, T, *input_shape[1:]]`` (sequences of T calls); None for ``[N, *input_shape[1:]]``."""
    want = tuple(input_shape[1:])
    got = tuple(x_shape[1:])
    if len(got) != len(want) + 1 or got[0] < 1:
        return None
    if all(w is None or w == g for w, g in zip(want, got[1:])):
        return int(got[0])
    return None


def flatten_calls(x: np.ndarray, calls: int | None) -> np.ndarray:
    """``[N, T, ...]`` -> ``[N*T, ...]``, one row per call in order (unchanged when ``calls`` is None)."""
    return x if calls is None else x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def last_calls(outputs: np.ndarray, calls: int | None) -> np.ndarray:
    """Per-call outputs ``[N*T, ...]`` -> each sequence's last call ``[N, ...]`` (unchanged when ``calls`` is None)."""
    if calls is None:
        return outputs
    return outputs.reshape(len(outputs) // calls, calls, *outputs.shape[1:])[:, -1]


def flatten_dataset(ds, input_shape: Sequence[int | None]):
    """A Dataset of sequences as one call per row (for calibration, which only needs representative calls).

    Data of a several-input/output model is returned unchanged (``data.check_against_input`` refuses sequences for it).
    """
    if ds.multi_io:
        return ds
    calls = calls_per_sequence(ds.x.shape, input_shape)
    if calls is None:
        return ds
    y = None if ds.y is None else np.repeat(ds.y, calls, axis=0)
    return replace(ds, x=flatten_calls(ds.x, calls), y=y)
