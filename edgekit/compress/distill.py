"""Knowledge distillation: train a smaller student to imitate the user's model (the teacher).

The student is a narrower copy of the teacher (every Conv2D / DepthwiseConv2D
/ SeparableConv2D / Dense width times ``width``, except the last one, which
produces the classes) built fresh from the teacher's configuration, or a model
the user passes (``student``: a .keras/.h5 path). The loss is

    alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(y, s)
    + feature_weight * MSE(P(student feature), teacher feature)

with t, s the logits (for a model ending in softmax, log-probabilities, which
give the same softened distribution), T the ``temperature``; the optional
feature term matches the output of the layer named ``feature_layer`` in both
models through a learned linear projection P (dropped after training).
``alpha = 0`` trains the same student on the labels alone: the baseline
distillation is judged against. ``mixup > 0`` trains on mixed pairs of
images (mixing weight drawn from Beta(mixup, mixup) per batch) that the
teacher labels as it goes ("function matching"); with ``alpha = 0`` the
mixed images get the mixed labels.

``teachers`` lists more teacher models (.keras/.h5): the teacher is then the
ensemble of the input model and those, its output the average of theirs
(of the probabilities for classifiers: t = log(mean softmax)).

For the other tasks (:mod:`edgekit.task`) the loss is
``alpha * L(s, t) + (1 - alpha) * L(s, y)`` with L the task's loss: MSE on the
outputs for regression and anomaly (where y is the input itself), binary
cross-entropy on the probability for binary. It is trained as L against the
blended target ``alpha * t + (1 - alpha) * y``, which has the same gradient.

Works natively on both Keras kinds (the student is built with the teacher's
Keras); no tfmot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgekit.compress.base import check_params, count_params, ends_in_softmax, require_labels, same_kind
from edgekit.data import Dataset
from edgekit.errors import ConversionError, InputError
from edgekit.load import LoadedModel, keras_module, load_model

NAME = "distill"

WIDTH_KEYS = ("filters", "units", "depth_multiplier")


@dataclass(frozen=True)
class Config:
    """Distillation settings (see the module docstring for the loss)."""

    width: float = 0.5
    student: str | None = None
    # alpha 0.3, T 2: the only setting that beat labels-only in both bench scenarios (bench/bench_qat_distill.py)
    temperature: float = 2.0
    alpha: float = 0.3
    epochs: int = 10
    learning_rate: float = 3e-3
    batch_size: int = 32
    feature_layer: str | None = None
    feature_weight: float = 0.0
    mixup: float = 0.0
    teachers: list[str] | None = None

    def __post_init__(self):
        if self.teachers is not None and (not isinstance(self.teachers, list) or not all(isinstance(t, str) for t in self.teachers)):
            raise InputError(f"stage distill: teachers must be a list of model paths, not {self.teachers!r}")
        if self.teachers and (self.mixup > 0 or self.feature_layer):
            raise InputError("stage distill: an ensemble of teachers works without mixup and feature_layer (not supported together yet)")
        if not isinstance(self.width, (int, float)) or not 0 < self.width <= 1:
            raise InputError(f"stage distill: width must be in (0, 1], not {self.width!r}")
        if not isinstance(self.temperature, (int, float)) or self.temperature <= 0:
            raise InputError(f"stage distill: temperature must be > 0, not {self.temperature!r}")
        if not isinstance(self.alpha, (int, float)) or not 0 <= self.alpha <= 1:
            raise InputError(f"stage distill: alpha must be in [0, 1], not {self.alpha!r}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise InputError(f"stage distill: epochs must be an integer >= 1, not {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"stage distill: batch_size must be an integer >= 1, not {self.batch_size!r}")
        if not isinstance(self.learning_rate, (int, float)) or not 0 < self.learning_rate < 1:
            raise InputError(f"stage distill: learning_rate must be in (0, 1), not {self.learning_rate!r}")
        if not isinstance(self.feature_weight, (int, float)) or self.feature_weight < 0:
            raise InputError(f"stage distill: feature_weight must be >= 0, not {self.feature_weight!r}")
        if not isinstance(self.mixup, (int, float)) or self.mixup < 0:
            raise InputError(f"stage distill: mixup must be >= 0 (0 = off), not {self.mixup!r}")
        if self.feature_weight > 0 and not self.feature_layer:
            raise InputError("stage distill: feature_weight > 0 needs feature_layer", "name the layer whose output the student should match")

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> "Config":
        """The config from a recipe's TOML table; unknown keys raise :class:`InputError`."""
        return check_params(cls, dict(params), NAME)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _scalable(layer_cfg: dict[str, Any]) -> str | None:
    for key in ("filters", "units"):
        if key in layer_cfg:
            return key
    return None


def narrow_copy(model, width: float, seed: int):
    """A freshly initialised copy of ``model`` whose Conv/Dense widths are ``round(width * n)`` (at least 1), the last one kept.

    Depthwise layers follow their input automatically. Residual ADDs stay
    consistent because every branch is scaled by the same rule.
    """
    keras = _keras_of(model)
    keras.utils.set_random_seed(seed)
    config = model.get_config()
    layers = config["layers"]

    def inner(entry):
        return entry["config"]

    indices = [i for i, entry in enumerate(layers) if _scalable(inner(entry))]
    if not indices:
        raise InputError("distill: the model has no Conv2D or Dense layer to narrow", "pass a student model (student = \"path.keras\")")
    for entry in layers:
        entry.pop("build_config", None)  # stale input shapes once the widths change
    for i in indices[:-1]:
        c = inner(layers[i])
        key = _scalable(c)
        c[key] = max(1, int(round(c[key] * width)))
    try:
        return type(model).from_config(config)
    except Exception as exc:  # Keras raises many types when a layer (e.g. a fixed Reshape) no longer fits
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"distill: cannot build a width-{width} copy of the model ({first[:200]})",
                              'pass a student model instead (student = "student.keras")') from None


def _keras_of(model):
    mod = type(model).__module__
    if mod.startswith("tf_keras"):
        import tf_keras

        return tf_keras
    import keras

    return keras


def _logits(out, probs: bool):
    import tensorflow as tf

    return tf.math.log(tf.clip_by_value(out, 1e-12, 1.0)) if probs else out


def apply(loaded: LoadedModel, cfg: Config, train: Dataset | None, seed: int) -> tuple[LoadedModel, dict]:
    """Train the student (narrow copy or ``cfg.student``) against the teacher ``loaded`` on ``train``; return it and the losses.

    Raises :class:`InputError` without labelled data, for an unknown
    ``feature_layer``, or a student whose outputs differ from the teacher's.
    """
    import tensorflow as tf

    train = require_labels(train, NAME)
    if not loaded.is_keras:
        raise InputError(f"{loaded.path}: a {loaded.kind} model cannot be a teacher", "pass a .keras or .h5 model")
    teacher = loaded.model
    if cfg.student:
        student_loaded = load_model(cfg.student)
        if not student_loaded.is_keras:
            raise InputError(f"{cfg.student}: the student must be a Keras model (.keras or .h5)")
        student, kind = student_loaded.model, student_loaded.kind
    else:
        student, kind = narrow_copy(teacher, cfg.width, seed), loaded.kind
    if tuple(student.outputs[0].shape[1:]) != tuple(teacher.outputs[0].shape[1:]):
        raise InputError(
            f"student outputs {tuple(student.outputs[0].shape[1:])} but the teacher outputs {tuple(teacher.outputs[0].shape[1:])}",
            "the student must predict the same classes",
        )
    ensemble = [teacher, *_extra_teachers(cfg.teachers or [], teacher)]
    if train.task != "classification":
        return _distill_outputs(ensemble, student, kind, loaded, cfg, train, seed)
    keras = keras_module(kind)
    keras.utils.set_random_seed(seed)
    t_probs, s_probs = ends_in_softmax(teacher), ends_in_softmax(student)
    x = train.x.astype(np.float32)
    y = train.y.astype(np.int64)
    T = float(cfg.temperature)

    feat = cfg.feature_layer if cfg.feature_weight > 0 else None
    if feat:
        for m, who in ((teacher, "teacher"), (student, "student")):
            if feat not in [layer.name for layer in m.layers]:
                raise InputError(f"distill: feature_layer {feat!r} not found in the {who}", f"layers: {', '.join(layer.name for layer in m.layers)}")
        t_run = _keras_of(teacher).Model(teacher.inputs, [teacher.outputs[0], teacher.get_layer(feat).output])
        t_out, t_feat = t_run.predict(x, batch_size=256, verbose=0)
        run = keras.Model(student.inputs, [student.outputs[0], student.get_layer(feat).output])
        s_dim = int(student.get_layer(feat).output.shape[-1])
        proj = tf.Variable(np.random.default_rng(seed).normal(0, 1 / np.sqrt(s_dim), (s_dim, t_feat.shape[-1])).astype(np.float32))
    else:
        t_run, run, proj = teacher, student, None
        t_out, t_feat = teacher.predict(x, batch_size=256, verbose=0), None

    t_logits = np.asarray(_logits(tf.constant(t_out), t_probs))
    if len(ensemble) > 1:
        t_logits = ensemble_logits(ensemble, x)
    mix = cfg.mixup > 0
    opt = keras.optimizers.Adam(cfg.learning_rate)
    variables = list(student.trainable_variables) + ([proj] if proj is not None else [])

    @tf.function(autograph=False)  # plain Python branches on constants; no source re-parsing
    def step(xb, yb, tb, fb, lam, perm):
        if mix:  # mixup: the teacher labels the mixed images it is shown (function matching)
            xb = lam * xb + (1.0 - lam) * tf.gather(xb, perm)
            t = t_run(xb, training=False)
            tb, fb = (_logits(t[0], t_probs), t[1]) if proj is not None else (_logits(t, t_probs), fb)
        with tf.GradientTape() as tape:
            outs = run(xb, training=True)
            out, sf = (outs[0], outs[1]) if proj is not None else (outs, None)
            s_log = _logits(out, s_probs)
            hard = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=s_log))
            if mix:
                other = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.gather(yb, perm), logits=s_log))
                hard = lam * hard + (1.0 - lam) * other
            p_t = tf.nn.softmax(tb / T)
            soft = tf.reduce_mean(tf.reduce_sum(p_t * (tf.math.log(p_t + 1e-12) - tf.nn.log_softmax(s_log / T)), axis=-1)) * T * T
            loss = cfg.alpha * soft + (1.0 - cfg.alpha) * hard
            fl = tf.constant(0.0)
            if proj is not None:
                fl = tf.reduce_mean(tf.square(tf.tensordot(sf, proj, axes=1) - fb))
                loss = loss + cfg.feature_weight * fl
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))
        return loss, soft, hard, fl

    rng = np.random.default_rng(seed)
    history: dict[str, list[float]] = {"loss": [], "soft": [], "hard": [], "feature": []}
    dummy = np.zeros((len(x), 1), np.float32)
    fdata = t_feat if t_feat is not None else dummy
    for _ in range(cfg.epochs):
        order = rng.permutation(len(x))
        sums = np.zeros(4)
        batches = 0
        for b in range(0, len(x), cfg.batch_size):
            sel = order[b : b + cfg.batch_size]
            lam = np.float32(rng.beta(cfg.mixup, cfg.mixup)) if mix else np.float32(1.0)
            perm = rng.permutation(len(sel)).astype(np.int32)
            vals = step(x[sel], y[sel], t_logits[sel], fdata[sel], lam, perm)
            sums += [float(v) for v in vals]
            batches += 1
        for key, v in zip(history, sums / batches):
            history[key].append(round(float(v), 6))
    if proj is None:
        history.pop("feature")
    details = {
        "stage": NAME,
        "student": cfg.student or f"narrow copy, width {cfg.width}",
        "teacher_params": count_params(teacher),
        "student_params": count_params(student),
        "temperature": T,
        "alpha": cfg.alpha,
        "feature_layer": feat,
        "mixup": cfg.mixup,
        "epochs": cfg.epochs,
        "teachers": len(ensemble),
        **history,
    }
    return same_kind(LoadedModel(kind, loaded.path, input_shape=loaded.input_shape), student), details


def _extra_teachers(paths: list[str], teacher) -> list:
    """The Keras models of ``paths``, each checked to predict what ``teacher`` predicts."""
    out = []
    for path in paths:
        extra = load_model(path)
        if not extra.is_keras:
            raise InputError(f"{path}: a teacher must be a Keras model (.keras or .h5), not a {extra.kind} model")
        if tuple(extra.model.outputs[0].shape[1:]) != tuple(teacher.outputs[0].shape[1:]):
            raise InputError(f"{path}: this teacher outputs {tuple(extra.model.outputs[0].shape[1:])}, "
                             f"the input model {tuple(teacher.outputs[0].shape[1:])}", "every teacher must predict the same outputs")
        out.append(extra.model)
    return out


def ensemble_logits(teachers: list, x: np.ndarray) -> np.ndarray:
    """log of the teachers' mean class probabilities on ``x`` (each teacher's logits go through softmax first)."""
    probs = []
    for m in teachers:
        out = np.asarray(m.predict(x, batch_size=256, verbose=0), dtype=np.float64)
        if not ends_in_softmax(m):
            out = np.exp(out - out.max(axis=-1, keepdims=True))
            out /= out.sum(axis=-1, keepdims=True)
        probs.append(out)
    return np.log(np.clip(np.mean(probs, axis=0), 1e-12, 1.0)).astype(np.float32)


def _distill_outputs(teachers: list, student, kind: str, loaded: LoadedModel, cfg: Config, train: Dataset,
                     seed: int) -> tuple[LoadedModel, dict]:
    """Distillation for binary, regression and anomaly models: the task's loss against the blended target (module docstring)."""
    from edgekit.compress.finetune import compile_for_labels, targets
    from edgekit.task import keras_head

    if cfg.mixup > 0 or cfg.feature_layer:
        raise InputError(f"stage distill: mixup and feature_layer work for classification only, not {train.task}")
    keras = keras_module(kind)
    keras.utils.set_random_seed(seed)
    x = train.x.astype(np.float32)
    outs = []
    for m in teachers:
        out = np.asarray(m.predict(x, batch_size=256, verbose=0), dtype=np.float32)
        if train.task == "binary" and keras_head(m).activation != "sigmoid":
            out = 1.0 / (1.0 + np.exp(-out))  # a logit: binary cross-entropy's target is a probability
        outs.append(out)
    t = np.mean(outs, axis=0)
    goal = targets(train).astype(np.float32).reshape(t.shape)
    compile_for_labels(student, cfg.learning_rate, train.task)
    hist = student.fit(x, cfg.alpha * t + (1.0 - cfg.alpha) * goal, epochs=cfg.epochs, batch_size=cfg.batch_size,
                       verbose=0, shuffle=True)
    details = {
        "stage": NAME,
        "task": train.task,
        "student": cfg.student or f"narrow copy, width {cfg.width}",
        "teacher_params": count_params(teachers[0]),
        "student_params": count_params(student),
        "alpha": cfg.alpha,
        "epochs": cfg.epochs,
        "teachers": len(teachers),
        "loss": [round(float(v), 6) for v in hist.history.get("loss", [])],
    }
    return same_kind(LoadedModel(kind, loaded.path, input_shape=loaded.input_shape), student), details
