"""Loading and validating the user's data files.

Formats (see the README): ``.npz`` with an array ``x`` (inputs, first axis =
samples) and an optional ``y``, or ``.npy`` holding inputs only. A model with
several inputs takes one array per input, ``x0``, ``x1``, ... in the model's
input order or ``x_<input name>``; a model with several outputs takes labels
per output, ``y0``, ``y1``, ... or ``y_<output name>`` (each optional). What ``y``
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

    For a model with several inputs ``x`` is a tuple of arrays, one per input
    in the model's order; for several outputs ``y`` is a tuple with one entry
    per output (None where the file has no labels for it) and ``task`` a tuple
    of tasks. :attr:`xs`, :attr:`ys` and :attr:`tasks` always give tuples.
    """

    x: np.ndarray | tuple[np.ndarray, ...]
    y: np.ndarray | tuple[np.ndarray | None, ...] | None
    path: Path
    task: str | tuple[str, ...] = "classification"

    def __len__(self) -> int:
        return int(self.xs[0].shape[0])

    @property
    def has_labels(self) -> bool:
        """True when the file carried labels (for at least one output)."""
        return any(y is not None for y in self.ys)

    @property
    def xs(self) -> tuple[np.ndarray, ...]:
        """The inputs, one array per model input."""
        return self.x if isinstance(self.x, tuple) else (self.x,)

    @property
    def ys(self) -> tuple[np.ndarray | None, ...]:
        """The labels, one entry per model output (None where there are none)."""
        if isinstance(self.y, tuple):
            return self.y
        return (self.y,) * len(self.tasks) if self.y is None else (self.y,)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The task of each output."""
        return self.task if isinstance(self.task, tuple) else (self.task,)

    @property
    def keras_x(self) -> np.ndarray | list[np.ndarray]:
        """The inputs as a Keras model takes them: the array, or a list of arrays for several inputs."""
        return list(self.xs) if isinstance(self.x, tuple) else self.x

    @property
    def multi_io(self) -> bool:
        """True for data of a model with several inputs or outputs."""
        return isinstance(self.x, tuple) or isinstance(self.y, tuple) or isinstance(self.task, tuple)


def array_names(kind: str, names: Sequence[str]) -> list[tuple[str, str]]:
    """The two accepted array names per tensor: (``x0``, ``x_<name>``) for ``kind`` ``x``, likewise ``y``."""
    return [(f"{kind}{i}", f"{kind}_{n}") for i, n in enumerate(names)]


def single_io(ds: Dataset, what: str) -> Dataset:
    """``ds`` when it belongs to a one-input, one-output model; InputError naming ``what`` (a feature) otherwise."""
    if ds.multi_io:
        raise InputError(f"{ds.path}: {what} handles models with one input and one output; this data has "
                         f"{len(ds.xs)} input(s) and {len(ds.tasks)} output(s)")
    return ds


def load_data(path: str | Path, role: str = "data", task: str | Sequence[str] = "classification",
              input_names: Sequence[str] = (), output_names: Sequence[str] = ()) -> Dataset:
    """Read ``.npz``/``.npy`` data; ``role`` (calib, eval, train) only words the error messages; ``task`` says what ``y`` is.

    With more than one of ``input_names`` (the model's inputs, in order) the
    file must hold ``x0``... or ``x_<name>`` per input; with more than one of
    ``output_names``, ``task`` is one task per output and labels are read per
    output (see the module docstring).
    """
    multi_in, multi_out = len(input_names) > 1, len(output_names) > 1
    if multi_out and not multi_in and Path(path).suffix.lower() == ".npy":  # inputs only: no labels to split per output
        ds = load_data(path, role, "classification")
        tasks = (task,) * len(output_names) if isinstance(task, str) else tuple(task)
        return Dataset(x=ds.x, y=(None,) * len(output_names), path=ds.path, task=tasks)
    if multi_in or multi_out:
        return _load_multi(Path(path), role, task, input_names, output_names)
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


def _open(p: Path, role: str):
    if not p.exists():
        raise InputError(f"{p}: {role} file not found")
    if p.suffix.lower() != ".npz" or p.is_dir():
        raise InputError(f"{p}: a model with several inputs or outputs takes {role} data as a .npz with one array per tensor",
                         "save with np.savez(path, x0=..., x1=..., y0=..., y1=...)")
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{p}: cannot read {role} data ({type(exc).__name__}: {exc})".rstrip()) from None


def _pick(z, names: tuple[str, str], p: Path, role: str, what: str, required: bool) -> np.ndarray | None:
    found = [n for n in names if n in z.files]
    if len(found) > 1:
        raise InputError(f"{p}: {role} data holds both {found[0]} and {found[1]} for {what}; keep one")
    if not found:
        if required:
            raise InputError(f"{p}: no array {names[0]} (or {names[1]}) for {what} (found: {', '.join(z.files) or 'none'})",
                             "save one array per model input: np.savez(path, x0=..., x1=...)")
        return None
    try:
        return z[found[0]]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{p}: cannot read array {found[0]} ({type(exc).__name__})") from None


def _load_multi(p: Path, role: str, task, input_names: Sequence[str], output_names: Sequence[str]) -> Dataset:
    tasks = (task,) * max(1, len(output_names)) if isinstance(task, str) else tuple(task)
    with _open(p, role) as z:
        if len(input_names) > 1:
            if "x" in z.files:
                raise InputError(f"{p}: the model has {len(input_names)} inputs ({', '.join(input_names)}), but the {role} data "
                                 "holds one array x", "save one array per input: x0, x1, ... or x_<input name>")
            xs = [_pick(z, names, p, role, f"input {i} ({n})", True)
                  for i, (names, n) in enumerate(zip(array_names("x", input_names), input_names))]
        else:
            xs = [_pick(z, ("x", "x0"), p, role, "the input", True)]
        if len(output_names) > 1:
            if "y" in z.files:
                raise InputError(f"{p}: the model has {len(output_names)} outputs ({', '.join(output_names)}); "
                                 "one array y is ambiguous", "save labels per output: y0, y1, ... or y_<output name>")
            ys = [_pick(z, names, p, role, f"output {j} ({n})", False)
                  for j, (names, n) in enumerate(zip(array_names("y", output_names), output_names))]
        else:
            ys = [z["y"] if "y" in z.files else None]
    checked = [_validate(x, None, p, role, name=name).x
               for x, name in zip(xs, [f"x{i}" for i in range(len(xs))] if len(xs) > 1 else ["x"])]
    n = len(checked[0])
    for i, x in enumerate(checked):
        if len(x) != n:
            raise InputError(f"{p}: {role} input x{i} has {len(x)} samples, but x0 has {n}")
    labels = []
    for j, (y, t) in enumerate(zip(ys, tasks)):
        if y is None:
            labels.append(None)
            continue
        name = f"y{j}" if len(ys) > 1 else "y"
        if y.ndim == 0 or y.shape[0] != n:
            raise InputError(f"{p}: {role} has {n} inputs but {y.shape[0] if y.ndim else 0} labels in {name}")
        labels.append(_labels(y, p, role, t, name))
    x_out = tuple(checked) if len(input_names) > 1 else checked[0]
    if len(output_names) > 1:
        return Dataset(x=x_out, y=tuple(labels), path=p, task=tasks)
    return Dataset(x=x_out, y=labels[0], path=p, task=tasks[0])


def _validate(x: np.ndarray, y: np.ndarray | None, p: Path, role: str, task: str = "classification", name: str = "x") -> Dataset:
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise InputError(f"{p}: {role} inputs {name} have dtype {x.dtype}; numbers are expected" if name != "x" else
                         f"{p}: {role} inputs have dtype {x.dtype}; numbers are expected")
    if x.ndim == 0 or x.shape[0] == 0:
        raise InputError(f"{p}: {role} data is empty ({name} has shape {x.shape})")
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            first = int(np.argwhere(bad.reshape(len(x), -1).any(axis=1))[0][0])
            where = f" {name}" if name != "x" else ""
            raise InputError(f"{p}: {role} inputs{where} contain {int(bad.sum())} NaN or infinite values (first in sample {first})")
    if y is not None:
        if y.shape[0] != x.shape[0]:
            raise InputError(f"{p}: {role} has {x.shape[0]} inputs but {y.shape[0]} labels")
        y = _labels(y, p, role, task)
    return Dataset(x=x.astype(np.float32) if not np.issubdtype(x.dtype, np.integer) else x, y=y, path=p, task=task)


def _labels(y: np.ndarray, p: Path, role: str, task: str, name: str = "y") -> np.ndarray:
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise InputError(f"{p}: {role} labels {name} have dtype {y.dtype}; numbers are expected")
    if task == "regression":
        y = y.astype(np.float32)
        if not np.isfinite(y).all():
            raise InputError(f"{p}: {role} regression targets {name} contain NaN or infinite values")
        return y
    if task in ("binary", "anomaly"):
        flat = y.reshape(len(y), -1)
        if flat.shape[1] != 1 or not np.isin(flat, (0, 1)).all():
            what = "1 = positive" if task == "binary" else "1 = anomalous, 0 = normal"
            raise InputError(f"{p}: {role} labels {name} of a {task} model must be 0 or 1 per sample ({what})")
        return flat[:, 0].astype(np.int64)
    if y.ndim == 2:
        y = y.argmax(axis=1)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) and not np.all(np.mod(y, 1) == 0):
        raise InputError(f"{p}: {role} labels {name} must be integer class ids [N] or one-hot rows [N, classes]",
                         "for regression targets or anomaly flags pass --task regression / anomaly")
    return y.astype(np.int64)


def check_against_input(ds: Dataset, input_shape: Sequence[int | None], role: str = "data",
                        input_shapes: Sequence[Sequence[int | None]] = (), input_names: Sequence[str] = ()) -> None:
    """Refuse data whose per-sample shape does not match the model's input shape (batch axis excluded).

    ``input_shapes`` (with ``input_names``) check each array of a several-input model.
    Data of a one-input model may also be ``[N, T, *input shape]``: N sequences of T calls
    (:mod:`edgekit.sequences`); sequences are refused for models with several inputs or outputs.
    """
    from edgekit.sequences import calls_per_sequence

    shapes = list(input_shapes) if len(input_shapes) > 1 else [input_shape]
    for i, (x, shape) in enumerate(zip(ds.xs, shapes)):
        want = tuple(int(d) if d is not None else None for d in shape[1:])
        got = tuple(x.shape[1:])
        ok = len(want) == len(got) and all(w is None or w == g for w, g in zip(want, got))
        if not ok and calls_per_sequence(x.shape, shape) is not None:  # [N, T, ...]: N sequences of T calls
            if not ds.multi_io:
                continue
            raise InputError(f"{ds.path}: {role} holds sequences of calls [N, T, ...], which edgekit runs only for "
                             f"models with one input and one output; this model has {len(ds.xs)} input(s) and "
                             f"{len(ds.tasks)} output(s)", "give one call per row: [N, *input shape]")
        if not ok:
            shown = "x".join("?" if w is None else str(w) for w in want) or "scalar"
            if len(shapes) > 1:
                name = input_names[i] if i < len(input_names) else str(i)
                raise InputError(f"{ds.path}: {role} array x{i} (input {name}) has samples of shape "
                                 f"{'x'.join(map(str, got)) or 'scalar'}, but the model expects {shown}",
                                 f"x{i} must be [N, *shape of input {name} without the batch axis]")
            raise InputError(
                f"{ds.path}: {role} samples have shape {'x'.join(map(str, got)) or 'scalar'}, "
                f"but the model expects {shown}",
                "x must be [N, *model input shape without the batch axis], or [N, T, *that shape] for sequences of calls",
            )


def take(ds: Dataset, n: int | None) -> Dataset:
    """The first ``n`` samples (all when ``n`` is None)."""
    if n is None or n >= len(ds):
        return ds
    return subset(ds, slice(0, n))


def subset(ds: Dataset, rows) -> Dataset:
    """The samples ``rows`` (a slice or index array) of every input and label array."""
    x = tuple(a[rows] for a in ds.x) if isinstance(ds.x, tuple) else ds.x[rows]
    if isinstance(ds.y, tuple):
        y = tuple(None if a is None else a[rows] for a in ds.y)
    else:
        y = None if ds.y is None else ds.y[rows]
    return replace(ds, x=x, y=y)
