"""Weight clustering to a few shared values, and the compact storage that makes it pay on a device.

Clustering alone does not shrink a ``.tflite``: every weight is still one int8
byte. It pays once the weights are stored as n-bit indices into a small table:

- :func:`pack_indices` / :func:`unpack_indices`: edgekit's own index format
  (for the AOT C runtime): indices LSB-first in a little-endian bit stream, one
  ``2**bits``-entry int8 table per output channel (or one per tensor);
- :func:`device_weight_bytes`: the weight bytes of an int8 ``.tflite`` stored
  plainly vs as indices + tables, tensor by tensor;
- :func:`tflm_compress`: TFLM's own LUT compression (``tflite_micro.compression``),
  which inserts DECODE operators; the TFLM library must be built with
  ``USE_TFLM_COMPRESSION=1`` (make) or ``--//:with_compression`` (Bazel).

Clustering itself (the stage): a tf_keras model goes through tfmot
``cluster_weights`` (k-means++ init) and ``strip_clustering``; a Keras 3 model
is clustered natively: 1-D k-means on each kernel, then fine-tuning where,
after every batch, each kernel is projected back onto its clusters (every
weight set to the mean of its cluster; assignments stay fixed).
``method = "native"`` forces the native path for tf_keras models too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgekit.compress.base import check_params, require_labels, same_kind
from edgekit.compress.finetune import copy_model, fine_tune
from edgekit.compress.qat import fit_wrapped, tfmot
from edgekit.data import Dataset
from edgekit.errors import ConversionError, InputError
from edgekit.load import LoadedModel, keras_module

NAME = "cluster"

METHODS = ("auto", "native", "tfmot")
CLUSTERED_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")


@dataclass(frozen=True)
class Config:
    """Clustering settings: ``clusters`` per layer kernel, fine-tuning ``epochs``/``learning_rate``/``batch_size``.

    Kernels with fewer than ``min_weights`` weights are left alone (their
    table would cost more than the indices save).
    """

    clusters: int = 16
    epochs: int = 2
    learning_rate: float = 1e-4
    batch_size: int = 32
    min_weights: int = 256
    method: str = "auto"

    def __post_init__(self):
        if not isinstance(self.clusters, int) or not 2 <= self.clusters <= 256:
            raise InputError(f"stage cluster: clusters must be an integer in 2..256, not {self.clusters!r}")
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise InputError(f"stage cluster: epochs must be an integer >= 0, not {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"stage cluster: batch_size must be an integer >= 1, not {self.batch_size!r}")
        if not isinstance(self.learning_rate, (int, float)) or not 0 < self.learning_rate < 1:
            raise InputError(f"stage cluster: learning_rate must be in (0, 1), not {self.learning_rate!r}")
        if not isinstance(self.min_weights, int) or self.min_weights < 0:
            raise InputError(f"stage cluster: min_weights must be an integer >= 0, not {self.min_weights!r}")
        if self.method not in METHODS:
            raise InputError(f"stage cluster: method must be one of {', '.join(METHODS)}, not {self.method!r}")

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> "Config":
        """The config from a recipe's TOML table; unknown keys raise :class:`InputError`."""
        return check_params(cls, dict(params), NAME)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- k-means and projection


def kmeans_1d(values: np.ndarray, k: int, iters: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic 1-D k-means: centroids start at evenly spaced quantiles. Returns (centroids [k], assignment)."""
    v = values.reshape(-1).astype(np.float64)
    k = min(k, len(np.unique(v)))
    cent = np.quantile(v, (np.arange(k) + 0.5) / k)
    for _ in range(iters):
        idx = _assign(v, cent)
        counts = np.bincount(idx, minlength=k)
        sums = np.bincount(idx, weights=v, minlength=k)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), cent)
        if np.allclose(new, cent):
            break
        cent = new
    cent = np.sort(cent)
    return cent.astype(np.float32), _assign(v, cent).reshape(values.shape)


def _assign(v: np.ndarray, cent: np.ndarray) -> np.ndarray:
    order = np.argsort(cent)
    sc = cent[order]
    mid = (sc[1:] + sc[:-1]) / 2
    return order[np.searchsorted(mid, v)]


def project(kernel: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """Every weight set to the mean of its cluster (the closest clustered kernel with these assignments)."""
    flat = idx.reshape(-1)
    counts = np.bincount(flat, minlength=k)
    sums = np.bincount(flat, weights=kernel.reshape(-1).astype(np.float64), minlength=k)
    cent = sums / np.maximum(counts, 1)
    return cent[flat].reshape(kernel.shape).astype(np.float32)


def _kernel_var(layer):
    return layer.depthwise_kernel if type(layer).__name__ == "DepthwiseConv2D" else layer.kernel


def clusterable(model, min_weights: int) -> list:
    """The layers whose kernels are clustered: Conv2D, DepthwiseConv2D, Dense with at least ``min_weights`` weights."""
    return [
        layer
        for layer in model.layers
        if type(layer).__name__ in CLUSTERED_LAYERS and int(np.prod(_kernel_var(layer).shape)) >= min_weights
    ]


def _native(loaded: LoadedModel, cfg: Config, train: Dataset, seed: int):
    keras = keras_module(loaded.kind)
    model = copy_model(loaded.model)
    layers = clusterable(model, cfg.min_weights)
    assign: dict[str, tuple[Any, np.ndarray, int]] = {}
    for layer in layers:
        var = _kernel_var(layer)
        cent, idx = kmeans_1d(np.asarray(var.numpy()), cfg.clusters)
        var.assign(cent[idx])
        assign[layer.name] = (var, idx, len(cent))

    def snap() -> None:
        for var, idx, k in assign.values():
            var.assign(project(np.asarray(var.numpy()), idx, k))

    class Snap(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            snap()

    hist: dict[str, Any] = {}
    if cfg.epochs:
        hist = fine_tune(model, train, epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size,
                         seed=seed, stage=NAME, callbacks=[Snap()], loss=loaded.loss)
    snap()
    return model, [layer.name for layer in layers], hist


def _tfmot(loaded: LoadedModel, cfg: Config, train: Dataset, seed: int):
    import tf_keras as tfk

    tfk.utils.set_random_seed(seed)
    cl = tfmot().clustering.keras
    names = [layer.name for layer in clusterable(loaded.model, cfg.min_weights)]

    def wrap(layer):
        if layer.name in names:
            return cl.cluster_weights(
                layer, number_of_clusters=cfg.clusters, cluster_centroids_init=cl.CentroidInitialization.KMEANS_PLUS_PLUS
            )
        return layer

    try:
        # cluster_weights wraps the layer object itself, so work on a copy: the input model stays as it was
        wrapped = tfk.models.clone_model(copy_model(loaded.model), clone_function=wrap)
    except (ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"{loaded.path}: tfmot cannot cluster this model: {first[:300]}", "try method = \"native\"") from None
    hist: dict[str, Any] = {}
    if cfg.epochs:
        hist = fit_wrapped(wrapped, loaded.model, train, epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size, seed=seed, stage=NAME)
    return cl.strip_clustering(wrapped), names, hist


def apply(loaded: LoadedModel, cfg: Config, train: Dataset | None, seed: int) -> tuple[LoadedModel, dict]:
    """Cluster every Conv2D/DepthwiseConv2D/Dense kernel to ``cfg.clusters`` values and fine-tune; same model kind out as in.

    Details: the method used and, per layer, the weights and distinct values after clustering.
    Raises :class:`InputError` without labelled data when ``epochs > 0``.
    """
    if not loaded.is_keras:
        raise InputError(f"{loaded.path}: a {loaded.kind} model cannot be clustered", "pass a .keras or .h5 model")
    if cfg.epochs:
        train = require_labels(train, NAME)
    method = cfg.method
    if method == "auto":
        method = "tfmot" if loaded.kind == "tf_keras" else "native"
    if method == "tfmot" and loaded.kind != "tf_keras":
        raise InputError(f"{loaded.path}: tfmot clustering needs a tf_keras model, this one is Keras 3", 'use method = "native" (the default for Keras 3)')
    model, names, hist = (_tfmot if method == "tfmot" else _native)(loaded, cfg, train, seed)
    layers = []
    for name in names:
        kernel = np.asarray(_kernel_var(model.get_layer(name)).numpy())
        layers.append({"layer": name, "weights": int(kernel.size), "distinct_values": int(len(np.unique(kernel)))})
    details = {"stage": NAME, "method": method, "clusters": cfg.clusters, "epochs": cfg.epochs, "layers": layers, **hist}
    return same_kind(loaded, model), details


# ---------------------------------------------------------------- index storage


def _table_axis(shape: tuple[int, ...], axis: int | None) -> int | None:
    if axis is None:
        return None
    if not -len(shape) <= axis < len(shape):
        raise InputError(f"axis {axis} is out of range for a tensor of shape {shape}")
    return axis % len(shape)


def pack_indices(weights_int8: np.ndarray, bits: int = 4, axis: int | None = 0) -> tuple[bytes, np.ndarray]:
    """Store int8 weights as ``bits``-bit indices plus value tables.

    Returns ``(packed, table)``. ``table`` is int8 ``[C, 2**bits]``: one row per
    slice along ``axis`` (C = ``shape[axis]``; TFLite's quantized dimension: 0
    for CONV_2D/FULLY_CONNECTED, 3 for DEPTHWISE_CONV_2D), or ``[1, 2**bits]``
    with ``axis=None``; each row holds its slice's distinct values ascending,
    unused entries 0. ``packed`` holds one index per weight in C order, as a
    little-endian bit stream (weight i in bits ``[i*bits, (i+1)*bits)``, LSB
    first; for 4 bits: weight 2j in the low nibble of byte j), zero-padded to
    a whole byte. Raises :class:`InputError` when a slice has more than
    ``2**bits`` distinct values.
    """
    w = np.asarray(weights_int8)
    if w.dtype != np.int8:
        raise InputError(f"pack_indices expects int8 weights, got {w.dtype}")
    if not 1 <= bits <= 8:
        raise InputError(f"bits must be in 1..8, not {bits}")
    ax = _table_axis(w.shape, axis)
    slices = [w] if ax is None else [np.take(w, c, axis=ax) for c in range(w.shape[ax])]
    table = np.zeros((len(slices), 2**bits), np.int8)
    idx = np.empty(w.shape, np.uint8)
    for c, s in enumerate(slices):
        values, inverse = np.unique(s, return_inverse=True)
        if len(values) > 2**bits:
            where = "the tensor" if ax is None else f"channel {c} (axis {ax})"
            raise InputError(f"{where} has {len(values)} distinct values; {bits}-bit indices hold {2**bits}", "cluster the weights first (stage cluster)")
        table[c, : len(values)] = values
        if ax is None:
            idx[...] = inverse.reshape(w.shape)
        else:
            sel = [slice(None)] * w.ndim
            sel[ax] = c
            idx[tuple(sel)] = inverse.reshape(s.shape)
    return _pack_bits(idx.reshape(-1), bits), table


def _pack_bits(idx: np.ndarray, bits: int) -> bytes:
    bitmat = ((idx[:, None].astype(np.uint16) >> np.arange(bits, dtype=np.uint16)) & 1).astype(np.uint8)
    return np.packbits(bitmat.reshape(-1), bitorder="little").tobytes()


def unpack_indices(packed: bytes, table: np.ndarray, shape: tuple[int, ...], bits: int = 4, axis: int | None = 0) -> np.ndarray:
    """The int8 weights of ``shape`` back from :func:`pack_indices`' ``(packed, table)``."""
    n = int(np.prod(shape))
    stream = np.unpackbits(np.frombuffer(packed, np.uint8), bitorder="little")[: n * bits]
    idx = (stream.reshape(n, bits).astype(np.uint16) << np.arange(bits, dtype=np.uint16)).sum(axis=1).reshape(shape)
    ax = _table_axis(tuple(shape), axis)
    if ax is None:
        return table[0][idx].astype(np.int8)
    chan = np.arange(shape[ax]).reshape([-1 if d == ax else 1 for d in range(len(shape))])
    return table[np.broadcast_to(chan, shape), idx].astype(np.int8)


def packed_size(shape: tuple[int, ...], bits: int, table_rows: int) -> int:
    """Bytes of :func:`pack_indices` output: the index stream plus the int8 tables."""
    return (int(np.prod(shape)) * bits + 7) // 8 + table_rows * 2**bits


@dataclass(frozen=True)
class TensorStorage:
    """How one weight tensor is stored: ``int8`` bytes plainly, ``indexed`` bytes as indices + tables (None if it does not fit)."""

    op: str
    tensor: int
    name: str
    shape: tuple[int, ...]
    int8_bytes: int
    indexed_bytes: int | None
    axis: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StorageReport:
    """Weight bytes on the device: plain int8 vs ``bits``-bit indices + tables, tensor by tensor."""

    bits: int
    tensors: tuple[TensorStorage, ...]

    @property
    def int8_bytes(self) -> int:
        return sum(t.int8_bytes for t in self.tensors)

    @property
    def indexed_bytes(self) -> int:
        """Total when every tensor is stored the cheaper way (indexed where that fits and is smaller)."""
        return sum(min(t.int8_bytes, t.indexed_bytes) if t.indexed_bytes is not None else t.int8_bytes for t in self.tensors)

    @property
    def saving(self) -> float:
        """Fraction of the plain int8 weight bytes saved."""
        return 1.0 - self.indexed_bytes / self.int8_bytes if self.int8_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "bits": self.bits,
            "int8_bytes": self.int8_bytes,
            "indexed_bytes": self.indexed_bytes,
            "saving": round(self.saving, 4),
            "tensors": [t.to_dict() for t in self.tensors],
        }


_WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1}


def weight_tensors(tflite: bytes) -> list[dict[str, Any]]:
    """The constant int8 weight tensors of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED ops in subgraph 0.

    Each entry: ``op``, ``tensor`` index, ``name``, ``data`` (int8 array), ``axis`` (the quantized dimension when per-channel, else None).
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    sg = model.subgraphs[0]
    found: dict[int, dict[str, Any]] = {}
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        opname = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
        if opname not in _WEIGHT_OPS or len(op.inputs) < 2:
            continue
        ti = int(op.inputs[_WEIGHT_OPS[opname]])
        t = sg.tensors[ti]
        buf = model.buffers[t.buffer].data
        if t.type != schema.TensorType.INT8 or buf is None or len(buf) == 0 or ti in found:
            continue
        data = np.frombuffer(bytes(bytearray(buf)), np.int8).reshape(tuple(t.shape))
        q = t.quantization
        per_channel = q is not None and q.scale is not None and len(q.scale) > 1
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        found[ti] = {"op": opname, "tensor": ti, "name": name, "data": data, "axis": int(q.quantizedDimension) if per_channel else None}
    return list(found.values())


def device_weight_bytes(tflite: bytes, bits: int = 4) -> StorageReport:
    """Weight bytes of an int8 ``.tflite`` stored plainly vs as ``bits``-bit indices + tables (per tensor if that fits, else per channel)."""
    rows = []
    for w in weight_tensors(tflite):
        data, shape = w["data"], tuple(w["data"].shape)
        indexed, axis = None, None
        if len(np.unique(data)) <= 2**bits:
            indexed, axis = packed_size(shape, bits, 1), None
        else:
            ax = w["axis"] if w["axis"] is not None else 0
            per = np.moveaxis(data, ax, 0).reshape(shape[ax], -1)
            if max(len(np.unique(r)) for r in per) <= 2**bits:
                indexed, axis = packed_size(shape, bits, shape[ax]), ax
        rows.append(TensorStorage(w["op"], w["tensor"], w["name"], shape, int(data.size), indexed, axis))
    return StorageReport(bits, tuple(rows))


def tflm_compress(tflite_bytes: bytes, bits: int = 4) -> bytes:
    """TFLM LUT compression of every weight tensor that has at most ``2**bits`` values per channel (or per tensor).

    Uses ``tflite_micro.compression``; the result carries DECODE operators and
    runs only on a TFLM built with ``USE_TFLM_COMPRESSION=1``. Raises
    :class:`ConversionError` when no tensor qualifies or TFLM refuses.
    """
    from tflite_micro import compression

    storage = device_weight_bytes(tflite_bytes, bits)
    builder = compression.SpecBuilder()
    chosen = 0
    from tflite_micro.tensorflow.lite.micro.compression import spec as tspec

    for t in storage.tensors:
        if t.indexed_bytes is None or t.indexed_bytes >= t.int8_bytes:
            continue
        if t.axis is not None and t.axis not in (0, len(t.shape) - 1):
            continue  # TFLM's LUT kernels take the first or last axis only
        mode = tspec.PerTensor() if t.axis is None else tspec.PerChannel(axis=t.axis)
        builder.add_tensor(subgraph=0, tensor=t.tensor).with_lut(index_bitwidth=bits, mode=mode)
        chosen += 1
    if not chosen:
        raise ConversionError(f"no weight tensor has at most {2**bits} values per channel; nothing for TFLM to compress", "cluster the model first (stage cluster)")
    try:
        return bytes(compression.compress(tflite_bytes, builder.build()))
    except Exception as exc:
        raise ConversionError(f"TFLM compression failed: {str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}") from None
