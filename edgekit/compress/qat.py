"""Quantization-aware training (tfmot ``quantize_model``) as a compression stage.

Use it when post-training int8 loses too much accuracy: the model is wrapped
with fake-quant ops, fine-tuned on the training labels, and the learned
ranges become the int8 model's quantization parameters when
:func:`edgekit.convert.convert_int8` converts it (the calibration set is then
only used for tensors without a learned range).

tfmot understands tf_keras (Keras 2) models only. A Keras 3 model is rebuilt
layer by layer as an equivalent tf_keras model (same layers, copied weights,
see :func:`to_tf_keras`); the stage then returns a **tf_keras** model, so the
:class:`~edgekit.load.LoadedModel` coming out of this stage has kind
``tf_keras`` whatever came in. ``details["rebuilt_from"]`` records it.

``preserve`` picks tfmot's collaborative schemes: ``"cluster"`` keeps the
weight clusters of a clustered model (cluster-preserving QAT), ``"sparsity"``
keeps the zeros of a pruned model (pruning-preserving QAT).

tfmot is imported inside functions only: importing it sets
``TF_USE_LEGACY_KERAS=1`` for the whole process.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from edgekit.compress.base import check_params, ends_in_softmax, require_labels
from edgekit.compress.finetune import check_labels
from edgekit.data import Dataset
from edgekit.errors import ConversionError, InputError
from edgekit.load import LoadedModel

NAME = "qat"

PRESERVE = ("none", "cluster", "sparsity")


@dataclass(frozen=True)
class Config:
    """QAT settings: fine-tuning ``epochs``, ``learning_rate`` (Adam), ``batch_size``; ``preserve`` a previous stage's structure.

    ``init_ranges`` starts the activation ranges from the float model's
    observed ranges instead of tfmot's [-6, 6] (its moving average moves them
    by 0.1% a step, too slowly for a short fine-tune). ``layer_error`` adds,
    for the input model, the per-layer error of post-training int8 (from
    :func:`edgekit.quant_debug.layer_errors` on 64 training samples), so the
    report shows which layer made QAT necessary.

    QAT is never silently worse than plain post-training int8: the last
    ``holdout`` fraction of ``--train`` is kept out of the fine-tuning, and on
    it the stage measures the deployed int8 accuracy (LiteRT reference kernels)
    of post-training int8 of its input model and of its own result. When QAT
    is worse, the stage returns its input model unchanged and says so in
    ``details["verdict"]``; ``strict = true`` keeps the QAT model anyway (and
    still says so).
    """

    epochs: int = 2
    learning_rate: float = 1e-3
    batch_size: int = 32
    preserve: str = "none"
    init_ranges: bool = True
    layer_error: bool = True
    strict: bool = False
    holdout: float = 0.1

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise InputError(f"stage qat: epochs must be an integer >= 1, not {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"stage qat: batch_size must be an integer >= 1, not {self.batch_size!r}")
        if not isinstance(self.learning_rate, (int, float)) or not 0 < self.learning_rate < 1:
            raise InputError(f"stage qat: learning_rate must be in (0, 1), not {self.learning_rate!r}")
        if self.preserve not in PRESERVE:
            raise InputError(f"stage qat: preserve must be one of {', '.join(PRESERVE)}, not {self.preserve!r}")
        if not isinstance(self.strict, bool):
            raise InputError(f"stage qat: strict must be true or false, not {self.strict!r}")
        if not isinstance(self.holdout, (int, float)) or not 0 < self.holdout < 0.5:
            raise InputError(f"stage qat: holdout must be in (0, 0.5), not {self.holdout!r}")

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> "Config":
        """The config from a recipe's TOML table; unknown keys raise :class:`InputError`."""
        return check_params(cls, dict(params), NAME)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tfmot():
    """Import tfmot (this sets TF_USE_LEGACY_KERAS=1 for the process, which is why it happens only here)."""
    import tensorflow_model_optimization as tfmot_mod

    return tfmot_mod


# ---------------------------------------------------------------- Keras 3 -> tf_keras


def _clean_config(value: Any) -> Any:
    """Keras 3 layer config → tf_keras: serialized objects lose ``module``/``registered_name``, dtype policies become names."""
    if isinstance(value, dict):
        if value.get("class_name") == "DTypePolicy" or value.get("class_name") == "FloatDTypePolicy":
            return value.get("config", {}).get("name", "float32")
        if "class_name" in value and "config" in value:
            return {"class_name": value["class_name"], "config": _clean_config(value["config"])}
        return {k: _clean_config(v) for k, v in value.items() if k not in ("module", "registered_name", "build_config")}
    if isinstance(value, list):
        return [_clean_config(v) for v in value]
    return value


def _tf_keras_layer(layer, tfk):
    """A fresh tf_keras layer with the configuration of Keras 3 ``layer``."""
    cls = getattr(tfk.layers, type(layer).__name__, None)
    if cls is None:
        raise ConversionError(
            f"layer {layer.name!r}: Keras 3 layer {type(layer).__name__} has no tf_keras counterpart",
            "tfmot needs a tf_keras model; save the model with tf_keras or use standard layers",
        )
    # Weights are copied afterwards, so initializers (whose configs differ between the two Kerases) are dropped.
    cfg = {k: v for k, v in _clean_config(layer.get_config()).items() if not k.endswith("_initializer")}
    for _ in range(16):  # drop Keras 3-only keys (lora_rank, quantization_config, ...) one at a time
        try:
            return cls.from_config(cfg)
        except TypeError as exc:
            m = re.search(r"keyword argument '(\w+)'", str(exc)) or re.search(r"not understood:', '(\w+)'", str(exc))
            if not m or m.group(1) not in cfg:
                raise ConversionError(f"layer {layer.name!r}: cannot rebuild {type(layer).__name__} in tf_keras ({exc})") from None
            del cfg[m.group(1)]
    raise ConversionError(f"layer {layer.name!r}: cannot rebuild {type(layer).__name__} in tf_keras")


def to_tf_keras(model):
    """Rebuild a Keras 3 model (Sequential or functional, standard layers, no shared layers) as tf_keras with the same weights.

    Raises :class:`ConversionError` naming the first layer that cannot be rebuilt.
    The result computes the same function (checked in the tests to 1e-5).
    """
    import keras
    import tf_keras as tfk

    pairs: list[tuple[Any, Any]] = []
    if isinstance(model, keras.Sequential):
        new_layers = [tfk.Input(shape=tuple(model.inputs[0].shape[1:]), dtype=model.inputs[0].dtype)]
        for layer in model.layers:
            new = _tf_keras_layer(layer, tfk)
            pairs.append((layer, new))
            new_layers.append(new)
        rebuilt = tfk.Sequential(new_layers, name=model.name)
    else:
        tensors: dict[int, Any] = {}
        new_inputs = []
        for t in model.inputs:
            ti = tfk.Input(shape=tuple(t.shape[1:]), dtype=t.dtype, name=t.name)
            tensors[id(t)] = ti
            new_inputs.append(ti)
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if isinstance(layer, keras.Model):
                raise ConversionError(f"layer {layer.name!r}: nested models cannot be rebuilt for tfmot", "flatten the model into one functional graph")
            nodes = [n for n in layer._inbound_nodes if all(id(t) in tensors for t in n.arguments.keras_tensors)]
            if len(nodes) != 1:
                raise ConversionError(f"layer {layer.name!r} is called {len(layer._inbound_nodes)} times; shared layers cannot be rebuilt for tfmot")
            node = nodes[0]
            new = _tf_keras_layer(layer, tfk)
            swap = lambda v: tensors[id(v)] if isinstance(v, keras.KerasTensor) else v  # noqa: E731
            args = keras.tree.map_structure(swap, node.arguments.args)
            kwargs = keras.tree.map_structure(swap, node.arguments.kwargs)
            out = new(*args, **kwargs)
            for k3, tk in zip(keras.tree.flatten(node.outputs), _flatten(out)):
                tensors[id(k3)] = tk
            pairs.append((layer, new))
        outputs = [tensors[id(t)] for t in model.outputs]
        rebuilt = tfk.Model(new_inputs, outputs[0] if len(outputs) == 1 else outputs, name=model.name)
    for old, new in pairs:
        weights = old.get_weights()
        shapes_old = [w.shape for w in weights]
        shapes_new = [tuple(w.shape) for w in new.get_weights()]
        if shapes_old != shapes_new:
            raise ConversionError(f"layer {old.name!r}: weight shapes differ after rebuilding ({shapes_old} vs {shapes_new})")
        new.set_weights(weights)
    return rebuilt


def _flatten(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def as_tf_keras(loaded: LoadedModel) -> tuple[Any, str | None]:
    """The tf_keras model of ``loaded`` (rebuilt when it is Keras 3) and the kind it was rebuilt from."""
    if loaded.kind == "tf_keras":
        return loaded.model, None
    if loaded.kind == "keras3":
        return to_tf_keras(loaded.model), "keras3"
    raise InputError(f"{loaded.path}: a {loaded.kind} model cannot be trained", "pass a .keras or .h5 model to compress it")


# ---------------------------------------------------------------- the stage


def _quantize(model, preserve: str):
    tm = tfmot()
    q = tm.quantization.keras
    try:
        if preserve == "none":
            return q.quantize_model(model)
        annotated = q.quantize_annotate_model(model)
        if preserve == "cluster":
            from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
                default_8bit_cluster_preserve_quantize_scheme as cps,
            )

            return q.quantize_apply(annotated, cps.Default8BitClusterPreserveQuantizeScheme())
        return q.quantize_apply(annotated, tm.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
    except (RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"QAT cannot wrap this model: {first[:300]}", "tfmot supports Conv2D, DepthwiseConv2D, Dense, BatchNorm, pooling, Add, Concatenate, ReLU") from None


def init_ranges(qat_model, base, x: np.ndarray) -> None:
    """Set the activation/output ranges of ``qat_model`` to the ranges ``base`` shows on ``x`` (0 always inside)."""
    import tf_keras as tfk

    targets = []
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", None)
        if type(layer).__name__ == "QuantizeLayer":
            targets.append((layer, "quantize_layer", None))
            continue
        if inner is None:
            continue
        for w in layer.weights:
            short = w.name.split("/")[-1].split(":")[0]
            if short in ("post_activation_min", "output_min"):
                targets.append((layer, short[:-4], inner.name))
    names = sorted({n for _, _, n in targets if n is not None})
    probe = tfk.Model(base.inputs, [base.get_layer(n).output for n in names])
    outs = probe.predict(x.astype(np.float32), verbose=0, batch_size=64)
    outs = outs if isinstance(outs, list) else [outs]
    seen = {n: (float(min(0.0, o.min())), float(max(0.0, o.max()))) for n, o in zip(names, outs)}
    seen[None] = (float(min(0.0, x.min())), float(max(0.0, x.max())))
    for layer, key, src in targets:
        lo, hi = seen[src]
        for w in layer.weights:
            short = w.name.split("/")[-1].split(":")[0]
            if short.endswith("_min") and short.startswith(key):
                w.assign(np.full(w.shape, lo, np.float32))
            elif short.endswith("_max") and short.startswith(key):
                w.assign(np.full(w.shape, hi, np.float32))


def _ptq_layer_error(loaded: LoadedModel, train: Dataset) -> dict[str, Any]:
    """Per-layer error of post-training int8 on the input model; a debugger failure is recorded, not raised."""
    from edgekit.errors import EdgekitError
    from edgekit.quant_debug import layer_errors

    sample = Dataset(train.x[:64], None, train.path)
    try:
        report = layer_errors(loaded, sample, sample, max_samples=64)
    except EdgekitError as exc:
        return {"error": exc.one_line()}
    worst = report.worst()
    return {
        "samples": report.samples,
        "worst": worst.name if worst else None,
        "layers": [{"op": r.op, "name": r.name, "rmse_over_scale": round(r.rmse_over_scale, 4)} for r in report.layers],
    }


def fit_wrapped(wrapped, base, train: Dataset, *, epochs: int, learning_rate: float, batch_size: int, seed: int, stage: str) -> dict[str, Any]:
    """Fine-tune a tfmot-wrapped tf_keras model; the loss follows ``base``'s output (the wrapper hides its softmax)."""
    import tf_keras as tfk

    check_labels(base, train, stage)
    tfk.utils.set_random_seed(seed)
    loss = tfk.losses.SparseCategoricalCrossentropy(from_logits=not ends_in_softmax(base))
    wrapped.compile(optimizer=tfk.optimizers.Adam(learning_rate), loss=loss, metrics=["accuracy"])
    hist = wrapped.fit(train.x, train.y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
    return {
        "epochs": epochs,
        "loss": [round(float(v), 6) for v in hist.history.get("loss", [])],
        "train_accuracy": [round(float(v), 6) for v in hist.history.get("accuracy", [])],
    }


def layer_ranges(qat_model) -> list[dict[str, Any]]:
    """The ranges a QAT model learned, per layer: input/activation ``[min, max]`` and per-channel kernel extremes."""
    rows = []
    for layer in qat_model.layers:
        found: dict[str, np.ndarray] = {}
        for w in layer.weights:
            short = w.name.split("/")[-1].split(":")[0]
            if short.endswith(("_min", "_max")) and "optimizer_step" not in short:
                found[short] = np.asarray(w.numpy())
        if not found:
            continue
        name = getattr(getattr(layer, "layer", None), "name", layer.name)
        row: dict[str, Any] = {"layer": name}
        for key in sorted({k[:-4] for k in found}):
            lo, hi = found.get(key + "_min"), found.get(key + "_max")
            if lo is None or hi is None:
                continue
            if type(layer).__name__ == "QuantizeLayer":
                key = "quantize_layer"
            label = {"quantize_layer": "input", "post_activation": "activation", "pre_activation": "activation", "output": "output"}.get(key, key)
            if lo.ndim == 0:
                row[label] = [round(float(lo), 6), round(float(hi), 6)]
            else:
                row[label] = [round(float(lo.min()), 6), round(float(hi.max()), 6)]
                row[label + "_channels"] = int(lo.size)
        rows.append(row)
    return rows


def apply(loaded: LoadedModel, cfg: Config, train: Dataset | None, seed: int) -> tuple[LoadedModel, dict]:
    """Wrap the model for QAT and fine-tune it on ``train``; return the tf_keras QAT model and the learned ranges.

    Raises :class:`InputError` without labelled training data, :class:`ConversionError` when tfmot cannot wrap a layer.
    """
    train = require_labels(train, NAME)
    if train.task != "classification":
        raise InputError(f"stage qat: the {train.task} task is not supported yet (its guard compares top-1 accuracy)",
                         "use post-training int8 (--quant int8/int16x8) or the prune / structured stages")
    n_hold = max(1, int(round(cfg.holdout * len(train))))
    if len(train) - n_hold < 1:
        raise InputError(f"stage qat: {train.path} has {len(train)} samples; QAT needs more than one (some are held out to check it)")
    held = replace(train, x=train.x[-n_hold:], y=train.y[-n_hold:])
    train = replace(train, x=train.x[:-n_hold], y=train.y[:-n_hold])
    ptq_error = _ptq_layer_error(loaded, train) if cfg.layer_error else None
    base, rebuilt_from = as_tf_keras(loaded)
    import tf_keras as tfk

    tfk.utils.set_random_seed(seed)
    qat_model = _quantize(base, cfg.preserve)
    if cfg.init_ranges:
        init_ranges(qat_model, base, train.x[:256])
    hist = fit_wrapped(qat_model, base, train, epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size, seed=seed, stage=NAME)
    details = {
        "stage": NAME,
        "backend": "tfmot",
        "rebuilt_from": rebuilt_from,
        "preserve": cfg.preserve,
        **hist,
        "ranges": layer_ranges(qat_model),
    }
    if ptq_error is not None:
        details["ptq_layer_error"] = ptq_error
    result = LoadedModel("tf_keras", loaded.path, model=qat_model, input_shape=loaded.input_shape)
    check = versus_ptq(loaded, result, train, held)
    details["versus_ptq"] = check
    if check["qat_int8_accuracy"] >= check["ptq_int8_accuracy"]:
        details["verdict"] = "kept QAT: its int8 model is at least as accurate as post-training int8"
        return result, details
    lost = 100 * (check["ptq_int8_accuracy"] - check["qat_int8_accuracy"])
    if cfg.strict:
        details["verdict"] = details["warning"] = f"QAT int8 is {lost:.1f} points below post-training int8 on the held-out samples; kept QAT (strict = true)"
        return result, details
    details["verdict"] = details["warning"] = (f"QAT int8 is {lost:.1f} points below post-training int8 on the held-out samples; "
                                               "kept the input model (set strict = true in the recipe to keep QAT)")
    details["kept"] = "input model (post-training int8)"
    return loaded, details


def versus_ptq(before: LoadedModel, after: LoadedModel, calib: Dataset, held: Dataset) -> dict[str, Any]:
    """Deployed int8 accuracy on ``held`` of post-training int8 of ``before`` and of the QAT model ``after`` (LiteRT reference kernels)."""
    from edgekit.convert import MAX_CALIB_SAMPLES, convert_int8
    from edgekit.quant_debug import tflite_accuracy

    cal = Dataset(calib.x[:MAX_CALIB_SAMPLES], None, calib.path)
    ptq = tflite_accuracy(convert_int8(before, cal), held.x, held.y)
    qat = tflite_accuracy(convert_int8(after, cal), held.x, held.y)
    return {"held_out_samples": int(len(held)), "ptq_int8_accuracy": round(ptq, 6), "qat_int8_accuracy": round(qat, 6),
            "runtime": "litert-ref (LiteRT reference kernels)"}
