"""Structured (channel) pruning: remove whole filters from the graph, then fine-tune.

Filters of Conv1D/Conv2D/SeparableConv2D/Dense layers are ranked by the L1 or
L2 norm of their weights, or by a first-order Taylor (gradient × weight)
score on a batch of training data, and the lowest ``ratio`` of each layer's
channels are removed for real: the model is rebuilt from its config with
fewer ``filters``/``units`` and the kept weights are copied in, so the
converted ``.tflite`` has smaller kernels and activations.

Channels are tracked through the graph as (group, index) tokens so the
rewrite stays consistent:

- BatchNormalization, DepthwiseConv2D (depth multiplier 1), activations,
  pooling, padding and dropout pass channels through (their per-channel
  weights are sliced);
- Add / Subtract / Multiply / Average / Maximum / Minimum tie their inputs'
  channels into one group, which is pruned as a unit (scores summed over its
  producers), so residual connections stay aligned;
- Concatenate (last axis) and Flatten (channels-last) map positions;
- channels that reach a model output or any other layer (Reshape, Permute,
  custom layers ...) are never pruned.

Works on the model config and weights only, so Keras 3 and tf_keras models go
through the same code (no tfmot).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.compress.base import StageConfig, count_params, require_labels, same_kind
from edgekit.compress.finetune import fine_tune
from edgekit.data import Dataset
from edgekit.errors import ConversionError, InputError
from edgekit.load import LoadedModel, recurrent_layers

NAME = "structured"

CRITERIA = ("l1", "l2", "taylor")
PRODUCERS = ("Conv1D", "Conv2D", "SeparableConv2D", "Dense")
PASS_THROUGH = (
    "BatchNormalization", "DepthwiseConv2D", "ReLU", "Activation", "LeakyReLU", "ELU", "Dropout", "SpatialDropout1D",
    "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D",
    "AveragePooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D", "UpSampling1D", "UpSampling2D", "Identity",
)
ELEMENTWISE = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


@dataclass(frozen=True)
class Config(StageConfig):
    """Remove ``ratio`` of the channels of each prunable layer (kept count rounded up to a multiple of ``round_to``), ranked by ``criterion``; fine-tune ``epochs`` (0: no fine-tuning, no training data needed)."""

    STAGE = NAME

    ratio: float = 0.5
    criterion: str = "l1"
    epochs: int = 2
    learning_rate: float = 1e-3
    batch_size: int = 32
    round_to: int = 1
    min_channels: int = 1
    layers: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._check(isinstance(self.ratio, (int, float)) and 0 <= self.ratio < 1, f"ratio (fraction of channels removed) must be in [0, 1), not {self.ratio!r}")
        self._check(self.criterion in CRITERIA, f"criterion must be one of {', '.join(CRITERIA)}, not {self.criterion!r}")
        self._check(isinstance(self.epochs, int) and self.epochs >= 0, f"epochs must be an integer >= 0, not {self.epochs!r}")
        self._check(isinstance(self.batch_size, int) and self.batch_size >= 1, f"batch_size must be an integer >= 1, not {self.batch_size!r}")
        self._check(isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1, f"learning_rate must be in (0, 1), not {self.learning_rate!r}")
        self._check(isinstance(self.round_to, int) and self.round_to >= 1, f"round_to must be an integer >= 1, not {self.round_to!r}")
        self._check(isinstance(self.min_channels, int) and self.min_channels >= 1, f"min_channels must be an integer >= 1, not {self.min_channels!r}")
        self._check(isinstance(self.layers, list) and all(isinstance(x, str) for x in self.layers), "layers must be a list of layer names")


# ---------------------------------------------------------------- graph walk


class _Groups:
    """Union-find over channel groups; a group is frozen (never pruned) when any member is."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.frozen: dict[int, str] = {}
        self.producers: dict[int, list[str]] = {}

    def new(self, size: int, producer: str | None = None, frozen: str | None = None) -> int:
        g = len(self.parent)
        self.parent.append(g)
        self.size.append(size)
        self.producers[g] = [producer] if producer else []
        if frozen:
            self.frozen[g] = frozen
        return g

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        self.parent[rb] = ra
        self.producers[ra] += self.producers.pop(rb)
        if self.size[ra] != self.size[rb]:
            self.frozen.setdefault(ra, "joined channel groups of different sizes")
        if rb in self.frozen:
            self.frozen.setdefault(ra, self.frozen[rb])

    def freeze(self, g: int, why: str) -> None:
        self.frozen.setdefault(self.find(g), why)

    def frozen_reason(self, g: int) -> str | None:
        return self.frozen.get(self.find(g))


@dataclass
class _Tokens:
    """The channels of one tensor: position k holds channel ``idx[k]`` of group ``grp[k]``."""

    grp: np.ndarray
    idx: np.ndarray

    @classmethod
    def fresh(cls, g: int, n: int) -> "_Tokens":
        return cls(np.full(n, g, np.int64), np.arange(n, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.grp)


def _history_names(node: Any) -> list[str]:
    """Inbound layer names of one serialized node, in argument order (both config formats)."""
    out: list[str] = []
    if isinstance(node, dict):
        hist = node.get("config", {}).get("keras_history") if node.get("class_name") == "__keras_tensor__" else None
        if hist is not None:
            if hist[2] != 0:
                raise ConversionError(f"structured pruning does not handle multi-output layer {hist[0]!r}")
            return [hist[0]]
        for key in ("args", "kwargs"):
            if key in node:
                out += _history_names(node[key])
        return out
    if isinstance(node, (list, tuple)):
        if len(node) == 4 and isinstance(node[0], str) and isinstance(node[1], int) and isinstance(node[3], dict):  # tf_keras
            if node[2] != 0:
                raise ConversionError(f"structured pruning does not handle multi-output layer {node[0]!r}")
            return [node[0]]
        for v in node:
            out += _history_names(v)
    return out


def _graph(model, cfg: dict) -> list[tuple[dict, list[str]]]:
    """(layer entry, inbound layer names) in topological order, for Sequential and functional configs."""
    entries = cfg["layers"]
    if "input_layers" not in cfg:  # Sequential
        result, prev = [], None
        for e in entries:
            if e["class_name"] == "InputLayer":
                prev = e["config"]["name"]
                result.append((e, []))
                continue
            result.append((e, [prev] if prev else []))
            prev = e["config"]["name"]
        if not entries or entries[0]["class_name"] != "InputLayer":
            raise ConversionError("structured pruning needs a Sequential model that starts with an Input")
        return result
    out = []
    for e in entries:
        nodes = e.get("inbound_nodes") or []
        if len(nodes) > 1:
            raise ConversionError(f"layer {e['config']['name']!r} is called {len(nodes)} times; structured pruning needs each layer used once")
        out.append((e, _history_names(nodes[0]) if nodes else []))
    return out


def _output_names(model, cfg: dict, graph) -> list[str]:
    if "output_layers" in cfg:
        outs = cfg["output_layers"]
        outs = [outs] if outs and isinstance(outs[0], str) else outs
        return [o[0] for o in outs]
    return [graph[-1][0]["config"]["name"]]


def analyse(model) -> tuple[dict, list, _Groups, dict[str, _Tokens], dict[str, _Tokens]]:
    """Walk the model config; return (config, graph, groups, input tokens per layer, output tokens per layer)."""
    cfg = model.get_config()
    graph = _graph(model, cfg)
    groups = _Groups()
    out_tok: dict[str, _Tokens] = {}
    in_tok: dict[str, _Tokens] = {}
    for entry, inbound in graph:
        name, cls, lc = entry["config"]["name"], entry["class_name"], entry["config"]
        missing = [n for n in inbound if n not in out_tok]
        if missing:
            raise ConversionError(f"layer {name!r}: input {missing[0]!r} comes later in the config; cannot order the graph")
        ins = [out_tok[n] for n in inbound]
        if ins:
            in_tok[name] = ins[0]
        if cls == "InputLayer":
            shape = lc.get("batch_shape") or lc.get("batch_input_shape")
            out_tok[name] = _Tokens.fresh(groups.new(int(shape[-1]), frozen="model input"), int(shape[-1]))
            continue
        if cls in PRODUCERS and len(ins) == 1 and int(lc.get("groups", 1)) == 1 and int(lc.get("depth_multiplier", 1)) == 1:
            n = int(lc["units"] if cls == "Dense" else lc["filters"])
            out_tok[name] = _Tokens.fresh(groups.new(n, producer=name), n)
            continue
        rank = len(model.get_layer(name).output.shape)
        if cls in PASS_THROUGH and len(ins) == 1 and int(lc.get("depth_multiplier", 1)) == 1 and _last_axis(lc, rank):
            out_tok[name] = ins[0]
            continue
        if cls in ELEMENTWISE and len(ins) >= 2 and all(len(t) == len(ins[0]) for t in ins):
            for other in ins[1:]:
                for g0, i0, g1, i1 in zip(ins[0].grp, ins[0].idx, other.grp, other.idx):
                    if i0 != i1:
                        groups.freeze(int(g0), f"{name} adds misaligned channels")
                        groups.freeze(int(g1), f"{name} adds misaligned channels")
                    groups.union(int(g0), int(g1))
            out_tok[name] = ins[0]
            continue
        if cls == "Concatenate" and len(ins) >= 2 and _last_axis(lc, rank):
            out_tok[name] = _Tokens(np.concatenate([t.grp for t in ins]), np.concatenate([t.idx for t in ins]))
            continue
        if cls == "Flatten" and len(ins) == 1:
            spatial = int(np.prod(model.get_layer(name).input.shape[1:-1]))
            out_tok[name] = _Tokens(np.tile(ins[0].grp, spatial), np.tile(ins[0].idx, spatial))
            continue
        # anything else: its inputs keep every channel, its output is a new frozen group
        for t in ins:
            for g in set(t.grp.tolist()):
                groups.freeze(g, f"feeds {cls} layer {name!r}")
        n = int(model.get_layer(name).output.shape[-1])
        out_tok[name] = _Tokens.fresh(groups.new(n, frozen=f"output of {cls} layer {name!r}"), n)
    for o in _output_names(model, cfg, graph):
        for g in set(out_tok[o].grp.tolist()):
            groups.freeze(g, "reaches the model output")
    return cfg, graph, groups, in_tok, out_tok


def _last_axis(lc: dict, rank: int) -> bool:
    """True when a layer works on the last (channel) axis of a rank-``rank`` input."""
    if lc.get("data_format", "channels_last") != "channels_last":
        return False
    axis = lc.get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    return isinstance(axis, int) and axis % rank == rank - 1


# ---------------------------------------------------------------- scoring


def _out_kernels(layer) -> np.ndarray:
    """The weights that produce each output channel, as [..., out]."""
    if type(layer).__name__ == "SeparableConv2D":
        return np.asarray(layer.pointwise_kernel.numpy())
    return np.asarray(layer.kernel.numpy())


def _scores(model, groups: _Groups, criterion: str, train: Dataset | None, seed: int) -> dict[int, np.ndarray]:
    """A score per channel of every prunable root group (higher = more important), summed over the group's producers."""
    grads: dict[str, np.ndarray] = {}
    if criterion == "taylor":
        grads = _kernel_grads(model, [p for g in groups.producers for p in groups.producers[g]], train, seed)
    out: dict[int, np.ndarray] = {}
    for root, names in groups.producers.items():
        if groups.find(root) != root or groups.frozen_reason(root) or not names:
            continue
        total = np.zeros(groups.size[root])
        for n in names:
            w = _out_kernels(model.get_layer(n))
            flat = w.reshape(-1, w.shape[-1])
            if criterion == "l1":
                s = np.abs(flat).sum(axis=0)
            elif criterion == "l2":
                s = np.sqrt((flat**2).sum(axis=0))
            else:
                s = np.abs((flat * grads[n].reshape(flat.shape)).sum(axis=0))
            total += s / (s.max() if s.max() > 0 else 1.0) if len(names) > 1 else s
        out[root] = total
    return out


def _kernel_grads(model, names: list[str], train: Dataset | None, seed: int, n: int = 256) -> dict[str, np.ndarray]:
    """dLoss/dKernel of the named layers, accumulated over up to ``n`` training samples."""
    import tensorflow as tf

    from edgekit.compress.base import ends_in_softmax

    train = require_labels(train, f"{NAME} (criterion taylor)")
    if train.task != "classification":
        raise InputError(f"stage {NAME}: criterion taylor ranks channels by the cross-entropy gradient; "
                         f"it does not handle the {train.task} task yet", "use criterion = \"l1\"")
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(train))[:n]
    x, y = tf.constant(train.x[pick]), tf.constant(train.y[pick])
    layers = [model.get_layer(nm) for nm in names]
    variables = [lyr.pointwise_kernel if type(lyr).__name__ == "SeparableConv2D" else lyr.kernel for lyr in layers]
    loss_fn = tf.keras.losses.sparse_categorical_crossentropy
    with tf.GradientTape() as tape:
        pred = model(x, training=False)
        loss = tf.reduce_mean(loss_fn(y, pred, from_logits=not ends_in_softmax(model)))
    gs = tape.gradient(loss, variables)
    return {nm: np.asarray(g) for nm, g in zip(names, gs)}


def _keep_count(c: int, cfg: Config) -> int:
    keep = max(cfg.min_channels, int(round(c * (1.0 - cfg.ratio))))
    keep = int(math.ceil(keep / cfg.round_to) * cfg.round_to)
    return min(c, keep)


# ---------------------------------------------------------------- rebuild


def _slice(w: np.ndarray, axis: int, keep: np.ndarray | None) -> np.ndarray:
    return w if keep is None else np.take(w, keep, axis=axis)


def _new_weights(layer, cls: str, old: list[np.ndarray], kin: np.ndarray | None, kout: np.ndarray | None) -> list[np.ndarray]:
    if cls in ("Conv1D", "Conv2D", "Dense"):
        return [_slice(_slice(old[0], -2, kin), -1, kout), *[_slice(b, 0, kout) for b in old[1:]]]
    if cls == "SeparableConv2D":
        dw = _slice(old[0], 2, kin)
        pw = _slice(_slice(old[1], 2, kin), 3, kout)
        return [dw, pw, *[_slice(b, 0, kout) for b in old[2:]]]
    if cls == "DepthwiseConv2D":
        return [_slice(old[0], 2, kin), *[_slice(b, 0, kin) for b in old[1:]]]
    if cls == "BatchNormalization":
        return [_slice(w, 0, kin) for w in old]
    return old


def apply(loaded: LoadedModel, cfg: Config, train: Dataset | None, seed: int) -> tuple[LoadedModel, dict]:
    """Remove the lowest-ranked channels, rebuild the model, fine-tune; details list channels kept per layer and why others were left whole."""
    if cfg.epochs > 0:
        train = require_labels(train, NAME)
    model = loaded.model
    known = {lyr.name for lyr in model.layers}
    missing = [n for n in cfg.layers if n not in known]
    if missing:
        raise InputError(f"stage {NAME}: no layer named {missing[0]!r} in {loaded.path}", f"layers: {', '.join(sorted(known))}")

    mcfg, graph, groups, in_tok, out_tok = analyse(model)
    if cfg.layers:
        for root, names in groups.producers.items():
            if names and not set(names) & set(cfg.layers):
                groups.freeze(root, "not listed in layers")
    scores = _scores(model, groups, cfg.criterion, train, seed)
    kept: dict[int, np.ndarray] = {}
    for root, s in scores.items():
        keep = _keep_count(len(s), cfg)
        kept[root] = np.sort(np.argsort(-s, kind="stable")[:keep])

    # kept_table[group, channel]: whether that channel survives (every channel of a group that is not pruned)
    width = max(groups.size) if groups.size else 0
    kept_table = np.ones((len(groups.size), width), bool)
    for g in range(len(groups.size)):
        root = groups.find(g)
        if root in kept:
            kept_table[g] = False
            kept_table[g, kept[root]] = True

    def positions(t: _Tokens | None) -> np.ndarray | None:
        """Indices of the surviving positions of a tensor's channels (None: all survive)."""
        if t is None:
            return None
        mask = kept_table[t.grp, t.idx]
        return None if mask.all() else np.flatnonzero(mask)

    new_cfg = dict(mcfg)
    new_cfg["layers"] = []
    per_layer: list[dict[str, Any]] = []
    for entry, _ in graph:
        e = {k: v for k, v in entry.items() if k != "build_config"}
        e["config"] = dict(entry["config"])
        name, cls = e["config"]["name"], e["class_name"]
        if name in out_tok and cls in PRODUCERS and name in {p for ps in groups.producers.values() for p in ps}:
            root = groups.find(int(out_tok[name].grp[0]))
            key = "units" if cls == "Dense" else "filters"
            before = int(e["config"][key])
            if root in kept:
                e["config"][key] = int(len(kept[root]))
            per_layer.append({"layer": name, "type": cls, "channels_before": before, "channels_after": int(e["config"][key]),
                              **({"kept_whole": groups.frozen_reason(root)} if root not in kept else {})})
        new_cfg["layers"].append(e)
    try:
        rebuilt = type(model).from_config(new_cfg)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"{loaded.path}: cannot rebuild the model with fewer channels: {first[:300]}") from None
    for layer in rebuilt.layers:
        old_layer = model.get_layer(layer.name)
        old = old_layer.get_weights()
        if not old:
            continue
        cls = type(old_layer).__name__
        new = _new_weights(old_layer, cls, old, positions(in_tok.get(layer.name)), positions(out_tok.get(layer.name)))
        want = [tuple(w.shape) for w in layer.get_weights()]
        if [w.shape for w in new] != want:
            raise ConversionError(f"layer {layer.name!r}: sliced weights {[w.shape for w in new]} do not fit the rebuilt layer {want}")
        layer.set_weights(new)

    details: dict[str, Any] = {
        "criterion": cfg.criterion,
        "ratio": cfg.ratio,
        "params_before": count_params(model),
        "params_after": count_params(rebuilt),
        "per_layer": per_layer,
    }
    rnn = recurrent_layers(model)
    if rnn:  # analyse() keeps their inputs and outputs whole; say so
        details["skipped"] = {name: "recurrent layer: its units and its input channels are kept (removing them would "
                                    "reshape its gates)" for name in rnn}
    if cfg.epochs > 0:
        details["fine_tune"] = fine_tune(rebuilt, train, epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                                         batch_size=cfg.batch_size, seed=seed, stage=NAME, loss=loaded.loss)
    return same_kind(loaded, rebuilt), details
