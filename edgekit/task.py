"""What a model's output means: ``classification``, ``binary``, ``regression`` or ``anomaly``.

The task decides what the labels ``y`` are, which metrics the report gives,
what ``--max-metric-drop`` bounds, and which loss fine-tuning uses. ``--task``
sets it; otherwise it is inferred from the model's head, only where that is
safe:

- output shape equal to the input shape: ``anomaly`` (an autoencoder that
  reconstructs its input);
- a softmax head: ``classification``;
- one sigmoid unit: ``binary``;
- one linear unit: ``regression``;
- anything else (e.g. a linear head of several units, which may be logits or
  several regressed values): ``classification``, edgekit's behaviour before
  tasks existed, and the report says it was a default, not an inference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgekit.errors import InputError

TASKS = ("classification", "binary", "regression", "anomaly")


@dataclass(frozen=True)
class Task:
    """The task and where it came from (``--task``, or the model feature it was inferred from)."""

    name: str
    source: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Head:
    """The facts about a model's output that the inference reads."""

    activation: str  # "softmax", "sigmoid", "linear" or another activation's name
    units: int  # size of the output's last axis
    same_shape_as_input: bool


def infer(head: Head) -> Task:
    """The task ``head`` implies (see the module docstring)."""
    if head.same_shape_as_input:
        return Task("anomaly", "inferred: output shape equals input shape (autoencoder)")
    if head.activation == "softmax":
        return Task("classification", "inferred: softmax head")
    if head.activation == "sigmoid" and head.units == 1:
        return Task("binary", "inferred: one sigmoid unit")
    if head.activation == "linear" and head.units == 1:
        return Task("regression", "inferred: one linear unit")
    return Task("classification", f"default: {head.units}-unit {head.activation} head (pass --task if it is not a classifier)")


def _keras_activation(model, output: int = 0) -> str:
    last = model.layers[-1]
    if len(model.outputs) > 1:
        from edgekit.load import keras_io_names

        last = model.get_layer(keras_io_names(model)[1][output])
    while hasattr(last, "layer") and not hasattr(last, "activation"):  # tfmot wrappers hold the real layer
        last = last.layer
    kind = type(last).__name__
    if kind in ("Softmax", "ReLU", "LeakyReLU"):
        return kind.lower()
    if kind == "Activation":
        act = last.get_config().get("activation")
        return act if isinstance(act, str) else "other"
    act = getattr(last, "activation", None)
    return getattr(act, "__name__", "linear") if act is not None else "linear"


def keras_head(model, output: int = 0) -> Head:
    """The :class:`Head` of a Keras model (either kind): of its output number ``output``."""
    out = tuple(model.outputs[output].shape[1:])
    same = len(model.inputs) == 1 and out == tuple(model.inputs[0].shape[1:])
    return Head(_keras_activation(model, output), int(out[-1]) if out and out[-1] else 1, same)


def tflite_head(info) -> Head:
    """The :class:`Head` of a converted model (:class:`~edgekit.tflite_model.ModelInfo`), from its last op."""
    last = info.operators[-1].op if info.operators else ""
    if last in ("QUANTIZE", "DEQUANTIZE") and len(info.operators) > 1:
        last = info.operators[-2].op
    act = {"SOFTMAX": "softmax", "LOGISTIC": "sigmoid", "FULLY_CONNECTED": "linear"}.get(last, last.lower())
    out, inp = tuple(info.outputs[0].shape[1:]), tuple(info.inputs[0].shape[1:])
    return Head(act, int(out[-1]) if out else 1, out == inp)


def report_section(per_output: tuple[Task, ...], output_names: tuple[str, ...]) -> dict:
    """The report's ``task`` section: the task of a one-output model, or ``outputs`` with each output's task."""
    if len(per_output) == 1:
        return per_output[0].to_dict()
    return {"name": "per output", "source": "one task per output, see outputs",
            "outputs": [{"output": n, "index": j, **t.to_dict()} for j, (n, t) in enumerate(zip(output_names, per_output))]}


def choose_per_output(requested: str | None, loaded, info=None) -> tuple[Task, ...]:
    """The task of each output of ``loaded``: ``requested`` is one task for all, or one per output separated by commas."""
    n = len(loaded.output_names) or 1
    if n == 1:
        return (choose(requested, loaded, info),)
    if requested:
        names = [t.strip() for t in requested.split(",")]
        if len(names) not in (1, n):
            raise InputError(f"--task {requested!r}: the model has {n} outputs ({', '.join(loaded.output_names)})",
                             "give one task for all outputs or one per output, separated by commas")
        return tuple(choose(t, loaded, info) for t in (names * n if len(names) == 1 else names))
    if loaded.is_keras:
        return tuple(infer(keras_head(loaded.model, j)) for j in range(n))
    return tuple(Task("classification", "default: the heads of a several-output .tflite are not read (pass --task)")
                 for _ in range(n))


def choose(requested: str | None, loaded, info=None) -> Task:
    """The build's task: ``requested`` (``--task``) when given, else inferred from the Keras model or the ``.tflite``."""
    if requested:
        if requested not in TASKS:
            raise InputError(f"--task {requested!r}: unknown task", f"valid: {', '.join(TASKS)}")
        return Task(requested, "--task")
    if loaded.is_keras:
        return infer(keras_head(loaded.model))
    if info is not None:
        return infer(tflite_head(info))
    return Task("classification", "default: the model's head was not read")
