"""Weight layouts chosen at generation time for the C kernels that read them (numpy only).

An interpreter must read weights in the ``.tflite``'s order; generated code can
store them in the order a kernel consumes them, so the kernel's loads walk one
pointer. Every layout here is a permutation: the byte count does not change.
"""

from __future__ import annotations

import numpy as np


def interleave_rows(rows: np.ndarray, k: int) -> np.ndarray:
    """``[R, n]`` int8 rows in the order of the kernels that read ``k`` rows at once (``ek_mat2x2``:
    k = 2, ``ek_mat4x1``: k = 4): for each group of ``k`` rows, their 4-byte blocks in turn (row 0's
    block 0, row 1's block 0, ..., row 0's block 1, ...), then each row's ``n % 4`` tail in row order.
    The last ``R % k`` rows stay as they are. Returns the flat array."""
    rows = np.asarray(rows)
    r, n = rows.shape
    body = n & ~3
    out = []
    for i in range(0, r - r % k, k):
        group = rows[i : i + k]
        out.append(group[:, :body].reshape(k, -1, 4).transpose(1, 0, 2).reshape(-1))
        out += [row[body:] for row in group]
    out += list(rows[r - r % k :])
    return np.concatenate(out) if out else rows.reshape(-1)


def group_taps(filt: np.ndarray) -> np.ndarray:
    """A depthwise filter ``[KH, KW, C]`` in ``ek_depthwise_conv2d_c4``'s order: for each group of 4
    channels, its ``KH*KW`` taps in row-major order, 4 bytes each; then the last ``C % 4`` channels,
    tap by tap. Returns the flat array."""
    f = np.asarray(filt)
    kh, kw, ch = f.shape
    taps = f.reshape(kh * kw, ch)
    c4 = ch & ~3
    groups = taps[:, :c4].reshape(kh * kw, c4 // 4, 4).transpose(1, 0, 2).reshape(-1)
    return np.concatenate([groups, taps[:, c4:].reshape(-1)])
