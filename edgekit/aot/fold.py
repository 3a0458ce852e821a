"""Fold shape arithmetic into constants before lowering.

``TFLiteConverter.from_keras_model`` turns ``Flatten`` into SHAPE -> STRIDED_SLICE
-> PACK -> RESHAPE: the new shape is computed at run time although every shape
is static. Those ops (and any op of a small foldable set whose inputs are all
constant) are evaluated here with numpy, their outputs become constant
tensors, and the ops disappear from the graph the code generator sees.
"""

from __future__ import annotations

import numpy as np

from edgekit.aot.graph import Graph, Op

FOLDABLE = ("SHAPE", "STRIDED_SLICE", "PACK", "CONCATENATION", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "CAST")
_INT_TYPES = {2: np.int32, 4: np.int64}


def _strided_slice(op: Op, x: np.ndarray, begin: np.ndarray, end: np.ndarray, strides: np.ndarray) -> np.ndarray | None:
    o = op.options
    if getattr(o, "ellipsisMask", 0) or getattr(o, "newAxisMask", 0):
        return None
    idx: list[object] = []
    shrink = getattr(o, "shrinkAxisMask", 0)
    for i in range(len(begin)):
        b, e, s = int(begin[i]), int(end[i]), int(strides[i])
        if getattr(o, "offset", False):
            e = b + e
        if shrink >> i & 1:
            idx.append(b)
            continue
        idx.append(slice(None if o.beginMask >> i & 1 else b, None if o.endMask >> i & 1 else e, s))
    return np.asarray(x[tuple(idx)])


def _evaluate(g: Graph, op: Op) -> np.ndarray | None:
    ins = [g.t(i) for i in op.inputs if i >= 0]
    out = g.t(op.outputs[0])
    if op.name == "SHAPE":
        dtype = _INT_TYPES.get(getattr(op.options, "outType", 2), np.int32)
        return np.asarray(ins[0].shape, dtype=dtype)
    if any(t.data is None for t in ins) or out.dtype not in ("int32", "int64"):
        return None  # only integer shape arithmetic on constants; quantized data is never folded
    d = [t.data for t in ins]
    if op.name == "STRIDED_SLICE":
        return _strided_slice(op, *d[:4])
    if op.name == "PACK":
        return np.stack(d, axis=op.options.axis)
    if op.name == "CONCATENATION":
        return np.concatenate(d, axis=op.options.axis)
    if op.name in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS", "CAST"):
        return d[0].reshape(out.shape)
    return None


def fold_constants(g: Graph) -> list[str]:
    """Evaluate foldable ops in place (their outputs get ``data``; the ops are removed); returns their names."""
    kept, folded = [], []
    for op in g.ops:
        if op.name not in FOLDABLE or len(op.outputs) != 1:
            kept.append(op)
            continue
        try:
            value = _evaluate(g, op)
            out = g.t(op.outputs[0])
            if value is not None:
                value = np.asarray(value, dtype=np.int64 if out.dtype == "int64" else np.int32)
                value = value.reshape(out.shape) if out.shape else value
        except (ValueError, IndexError, TypeError, OverflowError, AttributeError):
            value = None  # inconsistent shape arithmetic: left in the graph, where lowering refuses it by name
        if value is None or op.outputs[0] in g.outputs:
            kept.append(op)
            continue
        out.data = value
        folded.append(op.name)
    g.ops = kept
    return folded
