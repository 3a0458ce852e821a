"""The numbers users judge a build by: accuracy, agreement, bit-exactness."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def is_classifier(outputs: np.ndarray) -> bool:
    """True when outputs are score rows (last axis > 1), where top-1 means something."""
    return outputs.ndim >= 2 and outputs.shape[-1] > 1


def top1(outputs: np.ndarray) -> np.ndarray:
    """Predicted class per sample: argmax over each sample's scores (``[N, C]`` or ``[N, 1, 1, C]``)."""
    return outputs.reshape(len(outputs), -1).argmax(axis=1)


def accuracy(outputs: np.ndarray, labels: np.ndarray | None) -> float | None:
    """Top-1 accuracy, or None without labels or for non-classifier outputs."""
    if labels is None or not is_classifier(outputs):
        return None
    return float((top1(outputs) == labels).mean())


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float | None:
    """Fraction of samples whose top-1 class is the same in ``a`` and ``b``."""
    if not (is_classifier(a) and is_classifier(b)):
        return None
    return float((top1(a) == top1(b)).mean())


def bit_exact_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of output elements that are identical (bit patterns for floats)."""
    if a.shape != b.shape:
        return 0.0
    if np.issubdtype(a.dtype, np.floating):
        a, b = a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}")
    return float((a == b).mean()) if a.size else 1.0


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference (in raw units: LSBs for integer outputs)."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0


@dataclass(frozen=True)
class ByteAgreement:
    """Two runs' raw outputs compared byte for byte (one row per input)."""

    bit_exact: float  # fraction of output bytes that are identical
    max_abs_diff: float  # in raw units (LSB for integer outputs); inf when shapes or dtypes differ
    mismatched_inputs: int  # inputs with at least one differing byte


def byte_agreement(a: np.ndarray, b: np.ndarray) -> ByteAgreement:
    """Compare ``a`` with ``b`` byte for byte; different shapes or dtypes agree nowhere."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return ByteAgreement(0.0, float("inf"), len(a))
    equal = np.ascontiguousarray(a).view(np.uint8).reshape(len(a), -1) == np.ascontiguousarray(b).view(np.uint8).reshape(len(b), -1)
    return ByteAgreement(
        bit_exact=float(equal.mean()) if equal.size else 1.0,
        max_abs_diff=max_abs_diff(a, b),
        mismatched_inputs=int((~equal.all(axis=1)).sum()),
    )
