"""Magnitude pruning: unstructured (a target sparsity) or m:n (e.g. 2:4) along input channels.

The sparsity rises from 0 to the target on tfmot's polynomial decay schedule
(power 3) over the first three quarters of the fine-tuning steps; the last
quarter fine-tunes at the final sparsity, then the masks are baked into the
weights (``strip_pruning``). m:n pruning fixes its mask on the first step, as
tfmot does, and fine-tunes the rest.

- tf_keras models go through tfmot (``prune_low_magnitude`` with
  ``PolynomialDecay`` or ``sparsity_m_by_n``, ``UpdatePruningStep``,
  ``strip_pruning``).
- Keras 3 models are pruned natively with the same schedule and mask rule
  (:class:`MagnitudeMasks`, a Keras callback): tfmot refuses Keras 3 layers.

Zeros alone do not shrink a ``.tflite``; this stage is for sparse kernels and
gzip/compressed storage. ``structured`` removes channels for real.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.compress.base import PRUNABLE, StageConfig, kernel_of, layer_sparsity, require_labels, same_kind
from edgekit.compress.finetune import copy_model, fine_tune, keras_of, steps_per_epoch
from edgekit.data import Dataset
from edgekit.errors import ConversionError
from edgekit.load import LoadedModel, recurrent_layers

NAME = "prune"


@dataclass(frozen=True)
class Config(StageConfig):
    """``sparsity`` (fraction of zeroed kernel weights per layer) or ``pattern = "2:4"``; fine-tuning settings; ``layers`` limits which layers (default: every Conv2D/DepthwiseConv2D/Dense)."""

    STAGE = NAME

    sparsity: float | None = None
    pattern: str = "unstructured"
    epochs: int = 2
    learning_rate: float = 1e-3
    batch_size: int = 32
    layers: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._check(isinstance(self.epochs, int) and self.epochs >= 1, f"epochs must be an integer >= 1 (pruning fine-tunes), not {self.epochs!r}")
        self._check(isinstance(self.batch_size, int) and self.batch_size >= 1, f"batch_size must be an integer >= 1, not {self.batch_size!r}")
        self._check(isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1, f"learning_rate must be in (0, 1), not {self.learning_rate!r}")
        self._check(isinstance(self.layers, list) and all(isinstance(x, str) for x in self.layers), "layers must be a list of layer names")
        if self.pattern == "unstructured":
            s = 0.5 if self.sparsity is None else self.sparsity
            self._check(isinstance(s, (int, float)) and 0 < s < 1, f"sparsity must be between 0 and 1 (exclusive), not {self.sparsity!r}")
        else:
            m, n = self.m_by_n
            if self.sparsity is not None:
                self._check(abs(self.sparsity - m / n) < 1e-9, f"pattern {self.pattern} means sparsity {m / n}; drop sparsity = {self.sparsity}")

    @property
    def m_by_n(self) -> tuple[int, int]:
        """``(m, n)``: m zeros in every n consecutive input-channel weights."""
        try:
            m, n = (int(v) for v in self.pattern.split(":"))
        except ValueError:
            m = n = 0
        self._check(0 < m < n, f"pattern must be \"unstructured\" or \"M:N\" with 0 < M < N (e.g. \"2:4\"), not {self.pattern!r}")
        return m, n

    @property
    def target(self) -> float:
        """The final fraction of zeros in each pruned kernel."""
        if self.pattern != "unstructured":
            m, n = self.m_by_n
            return m / n
        return 0.5 if self.sparsity is None else float(self.sparsity)


def schedule(total_steps: int) -> tuple[int, int]:
    """``(end_step, frequency)``: masks update every ``frequency`` steps from step 0 until ``end_step`` (a multiple of it)."""
    end = max(1, int(total_steps * 0.75))
    freq = max(1, end // 10)
    return freq * max(1, end // freq), freq


def polynomial_sparsity(step: int, target: float, end_step: int, power: int = 3) -> float:
    """tfmot's PolynomialDecay from 0 to ``target`` at ``end_step``."""
    p = min(1.0, step / end_step)
    return target * (1.0 - (1.0 - p) ** power)


RECURRENT_SKIP = "recurrent layer: left dense (edgekit prunes Conv2D, DepthwiseConv2D and Dense kernels)"


def eligible(layer, cfg: Config) -> str | None:
    """Why ``layer`` is not pruned (None when it is)."""
    if type(layer).__name__ not in PRUNABLE or kernel_of(layer) is None:
        return "not a Conv2D/DepthwiseConv2D/Dense layer"
    if cfg.layers and layer.name not in cfg.layers:
        return "not listed in layers"
    if cfg.pattern != "unstructured":
        if type(layer).__name__ == "DepthwiseConv2D":
            return "m:n pruning applies to Conv2D and Dense kernels"
        n_in = int(kernel_of(layer).shape[-2])
        if n_in % cfg.m_by_n[1]:
            return f"{n_in} input channels are not a multiple of {cfg.m_by_n[1]}"
    return None


def magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """1.0 where ``|w|`` is among the largest ``1 - sparsity`` of the kernel, 0.0 for the rest (ties broken by index)."""
    k = int(round(sparsity * w.size))
    mask = np.ones(w.size, dtype=np.float32)
    if k > 0:
        order = np.argsort(np.abs(w).reshape(-1), kind="stable")
        mask[order[:k]] = 0.0
    return mask.reshape(w.shape)


def m_by_n_mask(w: np.ndarray, m: int, n: int) -> np.ndarray:
    """Zero the ``m`` smallest of every ``n`` consecutive weights along the input-channel axis (axis -2), as tfmot/TFLite do."""
    moved = np.moveaxis(w, -2, -1)  # [..., out, in]
    groups = moved.reshape(-1, n)
    order = np.argsort(np.abs(groups), axis=1, kind="stable")
    mask = np.ones_like(groups, dtype=np.float32)
    np.put_along_axis(mask, order[:, :m], 0.0, axis=1)
    return np.moveaxis(mask.reshape(moved.shape), -1, -2)


def _make_callback_base(model):
    return keras_of(model).callbacks.Callback


def native_masks_callback(model, layers: list, cfg: Config, end_step: int, freq: int):
    """A Keras callback that keeps the kernels of ``layers`` masked, raising the sparsity on the polynomial schedule."""
    base = _make_callback_base(model)

    class MagnitudeMasks(base):
        def __init__(self):
            super().__init__()
            self.step = 0
            self.masks = {id(lyr): np.ones(tuple(kernel_of(lyr).shape), np.float32) for lyr in layers}

        def update_masks(self) -> None:
            for lyr in layers:
                w = np.asarray(kernel_of(lyr).numpy())
                if cfg.pattern == "unstructured":
                    self.masks[id(lyr)] = magnitude_mask(w, polynomial_sparsity(self.step, cfg.target, end_step))
                else:
                    self.masks[id(lyr)] = m_by_n_mask(w, *cfg.m_by_n)

        def apply_masks(self) -> None:
            for lyr in layers:
                k = kernel_of(lyr)
                k.assign(np.asarray(k.numpy()) * self.masks[id(lyr)])

        def on_train_batch_begin(self, batch, logs=None):
            self.step += 1
            due = self.step == 1 if cfg.pattern != "unstructured" else (self.step <= end_step and self.step % freq == 0)
            if due:
                self.update_masks()
            self.apply_masks()

        def on_train_end(self, logs=None):
            if cfg.pattern == "unstructured":
                self.step = max(self.step, end_step)
                self.update_masks()
            self.apply_masks()

    return MagnitudeMasks()


def _prune_native(model, cfg: Config, train: Dataset, seed: int, skipped: dict, loss: Any = None) -> tuple[Any, dict]:
    pruned = copy_model(model)
    layers = [lyr for lyr in pruned.layers if eligible(lyr, cfg) is None]
    total = steps_per_epoch(len(train), cfg.batch_size) * cfg.epochs
    end, freq = schedule(total)
    cb = native_masks_callback(pruned, layers, cfg, end, freq)
    hist = fine_tune(pruned, train, epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size, seed=seed, stage=NAME, callbacks=[cb], loss=loss)
    return pruned, {"backend": "native (Keras 3 callback)", "end_step": end, "frequency": freq, **hist}


def _prune_tfmot(model, cfg: Config, train: Dataset, seed: int, loss: Any = None) -> tuple[Any, dict]:
    import tensorflow_model_optimization as tfmot  # sets TF_USE_LEGACY_KERAS=1: tf_keras models only
    import tf_keras as tfk

    sp = tfmot.sparsity.keras
    base = copy_model(model)
    total = steps_per_epoch(len(train), cfg.batch_size) * cfg.epochs
    end, freq = schedule(total)
    if cfg.pattern == "unstructured":
        sched = sp.PolynomialDecay(0.0, cfg.target, begin_step=0, end_step=end, frequency=freq)
        kwargs: dict[str, Any] = {"pruning_schedule": sched}
    else:
        kwargs = {"pruning_schedule": sp.ConstantSparsity(cfg.target, begin_step=0, frequency=1), "sparsity_m_by_n": cfg.m_by_n}

    def wrap(layer):
        return sp.prune_low_magnitude(layer, **kwargs) if eligible(layer, cfg) is None else layer

    try:
        wrapped = tfk.models.clone_model(base, clone_function=wrap)
    except (ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"tfmot cannot prune this model: {first[:300]}", "list prunable layers with layers = [...]") from None
    hist = fine_tune(wrapped, train, epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size, seed=seed,
                     stage=NAME, callbacks=[sp.UpdatePruningStep()], loss=loss)
    # strip_pruning reuses layer objects already called in other graphs; a clone gives layers with one inbound node each
    return copy_model(sp.strip_pruning(wrapped)), {"backend": "tfmot", "end_step": end, "frequency": freq, **hist}


def apply(loaded: LoadedModel, cfg: Config, train: Dataset | None, seed: int) -> tuple[LoadedModel, dict]:
    """Prune and fine-tune a copy of ``loaded.model``; details hold the per-layer sparsity and the skipped layers with reasons."""
    train = require_labels(train, NAME)
    model = loaded.model
    skipped = {lyr.name: why for lyr in model.layers if (why := eligible(lyr, cfg)) is not None and kernel_of(lyr) is not None}
    skipped_recurrent = {name: RECURRENT_SKIP for name in recurrent_layers(model)}
    missing = [n for n in cfg.layers if n not in {lyr.name for lyr in model.layers}]
    if missing:
        from edgekit.errors import InputError

        raise InputError(f"stage {NAME}: no layer named {missing[0]!r} in {loaded.path}", f"layers: {', '.join(lyr.name for lyr in model.layers)}")
    if len(skipped) == len([lyr for lyr in model.layers if kernel_of(lyr) is not None]):
        raise ConversionError(f"stage {NAME}: no layer of {loaded.path} can be pruned with pattern {cfg.pattern}", "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    if loaded.kind == "tf_keras":
        pruned, info = _prune_tfmot(model, cfg, train, seed, loaded.loss)
    else:
        pruned, info = _prune_native(model, cfg, train, seed, skipped, loaded.loss)
    per_layer = layer_sparsity(pruned)
    pruned_names = {lyr.name for lyr in model.layers if kernel_of(lyr) is not None and lyr.name not in skipped}
    total_w = sum(r["weights"] for r in per_layer if r["layer"] in pruned_names)
    zeros = sum(r["weights"] * r["sparsity"] for r in per_layer if r["layer"] in pruned_names)
    details = {
        "pattern": cfg.pattern,
        "target_sparsity": cfg.target,
        "achieved_sparsity": round(zeros / total_w, 6) if total_w else 0.0,
        "per_layer": per_layer,
        "skipped": skipped | skipped_recurrent,
        **info,
    }
    return same_kind(loaded, pruned), details
