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


def join_outputs(outs: tuple[np.ndarray, ...]) -> np.ndarray:
    """A model's outputs as one array to compare: the one output as it is, several as their bytes side by side per sample."""
    if len(outs) == 1:
        return outs[0]
    return np.concatenate([np.ascontiguousarray(o).view(np.uint8).reshape(len(o), -1) for o in outs], axis=1)


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


def auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for the 0/1 labels ``positive`` (ties count half); None with one class only."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos = np.asarray(positive).ravel().astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties (Mann-Whitney U)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(prob: np.ndarray, labels: np.ndarray | None) -> dict[str, float | None]:
    """Accuracy at threshold 0.5 and AUC of one-unit probabilities (real values, not int8 codes)."""
    p = np.asarray(prob, dtype=np.float64).reshape(len(prob), -1)[:, 0]
    if labels is None:
        return {"accuracy": None, "auc": None}
    return {"accuracy": float(((p >= 0.5) == (labels == 1)).mean()), "auc": auc(p, labels)}


def regression_metrics(pred: np.ndarray, target: np.ndarray | None) -> dict[str, float | None]:
    """MAE, RMSE and max |error| in output units (real values, not int8 codes)."""
    if target is None:
        return {"mae": None, "rmse": None, "max_error": None}
    err = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1) - np.asarray(target, dtype=np.float64).reshape(len(target), -1)
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean())), "max_error": float(np.abs(err).max())}


def reconstruction_errors(recon: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per-sample mean squared error between a reconstruction and its input (input units squared)."""
    d = np.asarray(recon, dtype=np.float64).reshape(len(recon), -1) - np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return (d**2).mean(axis=1)


def anomaly_metrics(recon: np.ndarray, x: np.ndarray, anomalous: np.ndarray | None) -> dict[str, float | None]:
    """Mean reconstruction error, and the AUC of the per-sample error as anomaly score when labels mark anomalies (1)."""
    e = reconstruction_errors(recon, x)
    return {"reconstruction_error": float(e.mean()), "auc": None if anomalous is None else auc(e, anomalous)}


# the number --max-metric-drop bounds, per task: (metric, higher is better, unit of the drop)
PRIMARY = {
    "classification": ("accuracy", True, "points"),
    "binary": ("accuracy", True, "points"),
    "regression": ("mae", False, "output units"),
    "anomaly": ("auc", True, "points"),
}


def task_metrics(task: str, outputs: np.ndarray, x: np.ndarray, labels: np.ndarray | None) -> dict[str, float | None]:
    """The task's metrics of real-valued ``outputs`` (dequantized) for inputs ``x`` (real values) and ``labels``."""
    if task == "binary":
        return binary_metrics(outputs, labels)
    if task == "regression":
        return regression_metrics(outputs, labels)
    if task == "anomaly":
        return anomaly_metrics(outputs, x, labels)
    return {"accuracy": accuracy(outputs, labels)}


def metric_drop(task: str, reference: dict[str, float | None], deployed: dict[str, float | None]) -> float | None:
    """How much worse the deployed model's primary metric is than the reference's (points, or output units for regression)."""
    name, higher, unit = PRIMARY[task]
    a, b = reference.get(name), deployed.get(name)
    if a is None or b is None:
        return None
    drop = (a - b) if higher else (b - a)
    return round(100 * drop if unit == "points" else drop, 6)
