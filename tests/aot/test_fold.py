"""Shape arithmetic folded at generation time, checked against TensorFlow's own ops."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from edgekit.aot.fold import _strided_slice
from edgekit.aot.graph import Op

CASES = [
    # begin, end, strides, begin_mask, end_mask, shrink_axis_mask
    ([0], [1], [1], 0, 0, 1),
    ([1], [3], [1], 0, 0, 0),
    ([1], [0], [1], 0, 1, 0),
    ([-1], [0], [1], 0, 1, 0),
    ([0], [4], [2], 1, 0, 0),
    ([3], [0], [-1], 0, 0, 0),
    ([2], [0], [1], 0, 0, 1),
]


@pytest.mark.parametrize("case", CASES)
def test_strided_slice_matches_tensorflow(case):
    begin, end, strides, bm, em, sm = case
    x = np.array([1, 8, 8, 32], dtype=np.int32)
    want = tf.strided_slice(x, begin, end, strides, begin_mask=bm, end_mask=em, shrink_axis_mask=sm).numpy()
    opts = SimpleNamespace(beginMask=bm, endMask=em, shrinkAxisMask=sm, ellipsisMask=0, newAxisMask=0, offset=False)
    got = _strided_slice(Op(0, "STRIDED_SLICE", [], [0], opts), x, np.array(begin), np.array(end), np.array(strides))
    assert got.shape == want.shape and (got == want).all()
