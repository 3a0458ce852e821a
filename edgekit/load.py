"""Load a model file: the one place that decides between Keras 3, tf_keras and TFLite.

- ``.keras``: a Keras zip; its ``metadata.json`` says which Keras wrote it
  (3.x → Keras 3, 2.x → tf_keras).
- ``.h5`` / ``.hdf5`` and SavedModel folders with Keras metadata: tf_keras.
- A SavedModel folder without Keras metadata: kept as a SavedModel (converted
  directly, not compressible).
- ``.tflite``: kept as bytes; compression is skipped.

Nothing else in edgekit imports ``keras`` or ``tf_keras`` to load a model,
and tfmot is never imported here (it flips ``TF_USE_LEGACY_KERAS`` for the
whole process).
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.errors import InputError
from edgekit.model_check import check_regular_file, read_model_file

KINDS = ("keras3", "tf_keras", "saved_model", "tflite")


@dataclass
class LoadedModel:
    """A model and what kind it is.

    ``kind`` is one of ``keras3``, ``tf_keras``, ``saved_model``, ``tflite``;
    ``model`` is the Keras model object (None for ``saved_model``/``tflite``);
    ``tflite`` holds the bytes of a ``.tflite`` input; ``input_shape``
    includes the batch axis (``None`` when dynamic); ``loss`` is the loss
    the model was compiled with, when the recipe runner found one
    (:mod:`edgekit.model_loss`; fine-tuning uses it). ``input_names``,
    ``input_shapes`` and ``output_names`` list every input and output in the
    model's own order (Keras' for a Keras model); ``input_shape`` is the
    first input's.
    """

    kind: str
    path: Path
    model: Any = None
    tflite: bytes | None = None
    input_shape: tuple[int | None, ...] = ()
    input_dtype: str = "float32"
    loss: Any = None
    input_names: tuple[str, ...] = ()
    input_shapes: tuple[tuple[int | None, ...], ...] = ()
    output_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.input_shapes and self.input_shape:
            self.input_shapes = (tuple(self.input_shape),)

    @property
    def is_keras(self) -> bool:
        """True for Keras 3 and tf_keras models (the ones edgekit can compress)."""
        return self.kind in ("keras3", "tf_keras")


def keras_module(kind: str):
    """The Keras package matching ``kind``: ``keras`` (3) or ``tf_keras`` (2)."""
    if kind in ("keras3", "tf_keras"):
        from edgekit.quiet import import_quietly

        return import_quietly("keras" if kind == "keras3" else "tf_keras")
    raise ValueError(f"not a Keras kind: {kind!r}")


def _keras_zip_version(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("metadata.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as exc:
        raise InputError(f"{path}: not a valid .keras model file ({type(exc).__name__})", "re-save it with model.save('model.keras')") from None
    return str(meta.get("keras_version", "3"))


def _is_keras_saved_model(path: Path) -> bool:
    return (path / "keras_metadata.pb").is_file()


def detect_kind(path: Path) -> str:
    """Which kind of model ``path`` holds, from its suffix and metadata."""
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise InputError(f"{path}: folder is not a SavedModel (no saved_model.pb)")
        return "tf_keras" if _is_keras_saved_model(path) else "saved_model"
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return "tflite"
    if suffix in (".h5", ".hdf5"):
        return "tf_keras"
    if suffix == ".keras":
        return "keras3" if _keras_zip_version(path).startswith("3") else "tf_keras"
    if suffix in (".npz", ".npy"):
        raise InputError(f"{path}: this is a data file, but a model was expected", "pass .keras, .h5, a SavedModel folder or .tflite")
    raise InputError(f"{path}: unsupported model format {suffix or '(no suffix)'}", "pass .keras, .h5, a SavedModel folder or .tflite")


def _tflite_model(p: Path, buf: bytes) -> LoadedModel:
    from edgekit.tflite_model import read_model

    info = read_model(buf, name=str(p))
    shapes = tuple(tuple(t.shape) for t in info.inputs)
    return LoadedModel("tflite", p, tflite=buf, input_shape=shapes[0] if shapes else (),
                       input_dtype=info.inputs[0].dtype if info.inputs else "float32",
                       input_names=tuple(t.name for t in info.inputs), input_shapes=shapes,
                       output_names=tuple(t.name for t in info.outputs))


def keras_io_names(model) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A Keras model's input and output names (either Keras kind), in the model's order."""
    def plain(t) -> str:
        name = getattr(t, "name", "") or ""
        return name.split(":")[0]

    ins = tuple(getattr(model, "input_names", None) or [plain(t) for t in model.inputs])
    outs = tuple(getattr(model, "output_names", None) or [plain(t) for t in model.outputs])
    return ins, outs


def keras_model(kind: str, path: Path, model: Any, **extra: Any) -> LoadedModel:
    """A :class:`LoadedModel` for the Keras ``model`` with its inputs' and outputs' names and shapes read from it."""
    shapes = tuple(tuple(None if d is None else int(d) for d in t.shape) for t in model.inputs)
    ins, outs = keras_io_names(model)
    return LoadedModel(kind, path, model=model, input_shape=shapes[0], input_shapes=shapes, input_names=ins,
                       output_names=outs, **extra)


_LAMBDA = re.compile(rb'"class_name":\s*"Lambda"')


def _keras_configs(path: Path) -> list[bytes]:
    """The Keras model configs (JSON bytes) stored in an ``.h5`` file or a tf_keras SavedModel folder."""
    if path.is_dir():
        return [(path / "keras_metadata.pb").read_bytes()]
    try:
        import h5py

        with h5py.File(path, "r") as f:
            cfg = f.attrs.get("model_config")
    except OSError as exc:
        raise InputError(f"{path}: cannot load the model ({str(exc)[:160]})", "is the file complete and saved by Keras?") from None
    if cfg is None:
        return []
    return [cfg if isinstance(cfg, bytes) else str(cfg).encode()]


def _refuse_code(path: Path, kind: str) -> None:
    """Raise InputError when loading ``path`` would run code stored in it (Lambda layers in ``.h5``/SavedModel).

    ``.keras`` files are loaded with Keras' ``safe_mode``, which refuses them itself.
    """
    if kind != "tf_keras" or path.suffix.lower() == ".keras":
        return
    if any(_LAMBDA.search(cfg) for cfg in _keras_configs(path)):
        raise InputError(f"{path}: the model has a Lambda layer, whose stored Python code would run on loading",
                         "rebuild it without Lambda layers, or pass --unsafe-deserialization if you trust the file")


def load_model(path: str | Path, custom_objects: dict[str, Any] | None = None, unsafe_deserialization: bool = False,
               max_bytes: int | None = None) -> LoadedModel:
    """Load ``path`` into a :class:`LoadedModel`, or raise an :class:`InputError` naming the file.

    Code stored in a model (Lambda layers, unregistered custom objects) is never
    run unless ``unsafe_deserialization``. A model file must be a regular file
    of at most ``max_bytes`` (default: :func:`edgekit.model_check.size_limit`).
    ``custom_objects`` (:func:`edgekit.custom_objects.load_custom_objects`) are the
    user's classes and functions the Keras model refers to.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: model file not found")
    if not p.is_dir():
        check_regular_file(p, max_bytes)
    kind = detect_kind(p)
    if kind == "tflite":
        return _tflite_model(p, read_model_file(p, max_bytes))
    if kind == "saved_model":
        return LoadedModel("saved_model", p, input_shape=_saved_model_input_shape(p))
    if not unsafe_deserialization:
        _refuse_code(p, kind)
    keras = keras_module(kind)
    try:
        model = keras.models.load_model(p, compile=False, custom_objects=custom_objects, safe_mode=not unsafe_deserialization)
    except Exception as exc:  # Keras raises many types for corrupt files
        from edgekit.custom_objects import missing_class

        missing = missing_class(str(exc))
        if missing:
            raise InputError(f"{p}: the model uses {missing!r}, which is not part of Keras",
                             "pass --custom-objects FILE.py (or module:attr) that defines it") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{p}: cannot load the model ({first[:200]})", "is the file complete and saved by Keras?") from None
    if not getattr(model, "inputs", None):
        raise InputError(f"{p}: the model has no input tensor", "save a functional or built Sequential model")
    return keras_model(kind, p, model)


def _saved_model_input_shape(path: Path) -> tuple[int | None, ...]:
    from edgekit.quiet import import_quietly

    tf = import_quietly("tensorflow")

    try:
        loaded = tf.saved_model.load(str(path))
        fn = loaded.signatures["serving_default"]
    except Exception as exc:
        raise InputError(f"{path}: cannot load the SavedModel ({type(exc).__name__})") from None
    specs = list(fn.structured_input_signature[1].values())
    if len(specs) != 1:
        raise InputError(f"{path}: edgekit handles models with one input tensor; this one has {len(specs)}")
    return tuple(None if d is None else int(d) for d in specs[0].shape)


def recurrent_layers(model) -> list[str]:
    """Names of the recurrent layers (LSTM, GRU, SimpleRNN, RNN wrappers) in a Keras model, outermost first."""
    found = []
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ in ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM2D"):
            found.append(layer.name)
        elif getattr(layer, "layers", None):
            found += recurrent_layers(layer)
    return found
