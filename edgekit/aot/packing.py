"""4-bit weight indices for the C runtime, numpy only (no TensorFlow import).

Same format as :func:`edgekit.compress.cluster.pack_indices` with ``bits=4``:
one index per weight in C order, an LSB-first bit stream (weight 2j in the low
nibble of byte j), and an int8 table ``[C, 16]`` per channel along the
quantized axis holding the channel's distinct values ascending, unused entries 0.
"""

from __future__ import annotations

import numpy as np

BITS = 4
TABLE = 1 << BITS


def packed_bytes(shape: tuple[int, ...], axis: int) -> int:
    """Bytes of the index stream plus the tables for a weight tensor of ``shape``."""
    return (int(np.prod(shape)) * BITS + 7) // 8 + int(shape[axis]) * TABLE


def pack4(weights_int8: np.ndarray, axis: int) -> tuple[bytes, np.ndarray] | None:
    """``(packed, table)`` for int8 ``weights_int8``, or None when a channel has more than 16 distinct values."""
    w = np.asarray(weights_int8)
    if w.dtype != np.int8:
        return None
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    table = np.zeros((w.shape[axis], TABLE), np.int8)
    idx_moved = np.empty(moved.shape, np.uint8)
    for c, row in enumerate(moved):
        values, inverse = np.unique(row, return_inverse=True)
        if len(values) > TABLE:
            return None
        table[c, : len(values)] = values
        idx_moved[c] = inverse.reshape(-1)
    shape_moved = (w.shape[axis],) + tuple(d for i, d in enumerate(w.shape) if i != axis)
    idx = np.moveaxis(idx_moved.reshape(shape_moved), 0, axis).reshape(-1)
    if idx.size % 2:
        idx = np.append(idx, np.uint8(0))
    return (idx[0::2] | (idx[1::2] << 4)).astype(np.uint8).tobytes(), table


def unpack4(packed: bytes, table: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """The int8 weights of ``shape`` back from :func:`pack4`'s output (what the C kernels decode)."""
    n = int(np.prod(shape))
    b = np.frombuffer(packed, np.uint8)
    idx = np.stack([b & 15, b >> 4], axis=1).reshape(-1)[:n].reshape(shape)
    chan = np.arange(shape[axis]).reshape([-1 if d == axis else 1 for d in range(len(shape))])
    return table[np.broadcast_to(chan, shape), idx].astype(np.int8)
