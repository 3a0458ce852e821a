"""The loss the user compiled a Keras model with, read back from the model file.

edgekit loads models with ``compile=False`` (no optimizer state, no custom
metrics needed), so the compiled loss is read from the file's own record:
``config.json`` → ``compile_config.loss`` in a ``.keras`` zip, the
``training_config`` attribute of an ``.h5``. It is rebuilt with the model's
Keras (``losses.get``, which deserializes in Keras' safe mode); a loss that
cannot be rebuilt (a custom function) gives None, and fine-tuning falls back
to the task's loss (:func:`edgekit.compress.finetune.task_loss`). A model with
several outputs compiled with one loss per output (a list, or a dict by output
name) gets the list of rebuilt losses in its output order.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any


def _loss_record(path: Path) -> Any:
    suffix = path.suffix.lower()
    try:
        if suffix == ".keras" and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                config = json.loads(z.read("config.json"))
            return (config.get("compile_config") or {}).get("loss")
        if suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("training_config")
            if raw is None:
                return None
            return json.loads(raw.decode() if isinstance(raw, bytes) else raw).get("loss")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return None


def compiled_loss(loaded) -> Any | None:
    """The loss ``loaded`` (a Keras :class:`~edgekit.load.LoadedModel`) was compiled with, or None."""
    from edgekit.load import keras_module

    if not loaded.is_keras:
        return None
    record = _loss_record(Path(loaded.path))
    if not record:
        return None
    per_output = isinstance(record, list) or isinstance(record, dict) and "class_name" not in record
    if per_output:
        names = list(loaded.output_names)
        records = record if isinstance(record, list) else [record.get(n) for n in names]
        if len(names) < 2 or len(records) != len(names) or any(r is None for r in records):
            return None
    else:
        records = [record]
    try:
        losses = [keras_module(loaded.kind).losses.get(r) for r in records]
    except Exception:  # Keras raises many types for an unknown or custom loss; the task's loss is used then
        return None
    return losses if per_output else losses[0]


def loss_name(loss: Any) -> str:
    """A short name for a loss object or function (or a list of them, one per output), for reports."""
    if isinstance(loss, (list, tuple)):
        return ", ".join(loss_name(x) for x in loss)
    fn = getattr(loss, "fn", None)  # Keras' LossFunctionWrapper
    return getattr(loss, "name", None) or getattr(fn or loss, "__name__", None) or type(loss).__name__
