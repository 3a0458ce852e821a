"""Loading and validating the user's data files.

Formats (see the README): ``.npz`` with an array ``x`` (inputs, first axis =
samples) and an optional ``y``, or ``.npy`` holding inputs only. What ``y``
holds depends on the task (:mod:`edgekit.task`): integer class ids or one-hot
/ score rows whose argmax is the label (``classification``), 0/1 (``binary``;
1 = positive), real targets in output units (``regression``), 0/1 flags with
1 = anomalous (``anomaly``). Every problem is an
:class:`~edgekit.errors.InputError` that names the file.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from edgekit.errors import InputError


@dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` (float32, ``[N, ...]``) and optional labels ``y`` from ``path``.

    ``y`` is int64 ``[N]`` for classification, binary and anomaly (class ids,
    0/1, 0/1 = normal/anomalous) and float32 ``[N, ...]`` targets for regression;
    ``task`` says which.
    """

    x: np.ndarray
    y: np.ndarray | None
    path: Path
    task: str = "classification"

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def has_labels(self) -> bool:
        """True when the file carried labels."""
        return self.y is not None


def load_data(path: str | Path, role: str = "data", task: str = "classification") -> Dataset:
    """Read ``.npz``/``.npy`` data; ``role`` (calib, eval, train) only words the error messages; ``task`` says what ``y`` is."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: {role} file not found")
    if p.is_dir():
        raise InputError(f"{p}: {role} must be a .npz or .npy file, not a folder")
    suffix = p.suffix.lower()
    if suffix in (".tflite", ".keras", ".h5", ".hdf5"):
        raise InputError(f"{p}: this is a model file, but {role} data was expected", "pass a .npz with array x (and y) or a .npy")
    if suffix not in (".npz", ".npy"):
        raise InputError(f"{p}: unsupported {role} format {suffix or '(no suffix)'}", "pass a .npz with array x (and optional y) or a .npy of inputs")
    try:
        if suffix == ".npy":
            x, y = np.load(p, allow_pickle=False), None
        else:
            with np.load(p, allow_pickle=False) as z:
                if "x" not in z.files:
                    raise InputError(f"{p}: no array named 'x' (found: {', '.join(z.files) or 'none'})", "save with np.savez(path, x=inputs, y=labels)")
                x = z["x"]
                y = z["y"] if "y" in z.files else None
    except InputError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{p}: cannot read {role} data ({type(exc).__name__}: {exc})".rstrip()) from None
    return _validate(x, y, p, role, task)


def _validate(x: np.ndarray, y: np.ndarray | None, p: Path, role: str, task: str = "classification") -> Dataset:
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise InputError(f"{p}: {role} inputs have dtype {x.dtype}; numbers are expected")
    if x.ndim == 0 or x.shape[0] == 0:
        raise InputError(f"{p}: {role} data is empty (x has shape {x.shape})")
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            first = int(np.argwhere(bad.reshape(len(x), -1).any(axis=1))[0][0])
            raise InputError(f"{p}: {role} inputs contain {int(bad.sum())} NaN or infinite values (first in sample {first})")
    if y is not None:
        if y.shape[0] != x.shape[0]:
            raise InputError(f"{p}: {role} has {x.shape[0]} inputs but {y.shape[0]} labels")
        y = _labels(y, p, role, task)
    return Dataset(x=x.astype(np.float32) if not np.issubdtype(x.dtype, np.integer) else x, y=y, path=p, task=task)


def _labels(y: np.ndarray, p: Path, role: str, task: str) -> np.ndarray:
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise InputError(f"{p}: {role} labels y have dtype {y.dtype}; numbers are expected")
    if task == "regression":
        y = y.astype(np.float32)
        if not np.isfinite(y).all():
            raise InputError(f"{p}: {role} regression targets y contain NaN or infinite values")
        return y
    if task in ("binary", "anomaly"):
        flat = y.reshape(len(y), -1)
        if flat.shape[1] != 1 or not np.isin(flat, (0, 1)).all():
            what = "1 = positive" if task == "binary" else "1 = anomalous, 0 = normal"
            raise InputError(f"{p}: {role} labels y of a {task} model must be 0 or 1 per sample ({what})")
        return flat[:, 0].astype(np.int64)
    if y.ndim == 2:
        y = y.argmax(axis=1)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) and not np.all(np.mod(y, 1) == 0):
        raise InputError(f"{p}: {role} labels y must be integer class ids [N] or one-hot rows [N, classes]",
                         "for regression targets or anomaly flags pass --task regression / anomaly")
    return y.astype(np.int64)


def check_against_input(ds: Dataset, input_shape: Sequence[int | None], role: str = "data") -> None:
    """Refuse data whose per-sample shape does not match the model's input shape (batch axis excluded)."""
    from edgekit.sequences import calls_per_sequence

    want = tuple(int(d) if d is not None else None for d in input_shape[1:])
    got = tuple(ds.x.shape[1:])
    ok = len(want) == len(got) and all(w is None or w == g for w, g in zip(want, got))
    ok = ok or calls_per_sequence(ds.x.shape, input_shape) is not None  # [N, T, ...]: N sequences of T calls
    if not ok:
        shown = "x".join("?" if w is None else str(w) for w in want) or "scalar"
        raise InputError(
            f"{ds.path}: {role} samples have shape {'x'.join(map(str, got)) or 'scalar'}, "
            f"but the model expects {shown}",
            "x must be [N, *model input shape without the batch axis], or [N, T, *that shape] for sequences of calls",
        )


def take(ds: Dataset, n: int | None) -> Dataset:
    """The first ``n`` samples (all when ``n`` is None)."""
    if n is None or n >= len(ds):
        return ds
    return replace(ds, x=ds.x[:n], y=None if ds.y is None else ds.y[:n])
