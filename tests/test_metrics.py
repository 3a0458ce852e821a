"""The numbers in every report: accuracy, agreement and bit-exactness on hand-made outputs."""

import numpy as np

from edgekit.verify import metrics


def test_accuracy_and_agreement_on_score_rows():
    out = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], np.float32)
    assert metrics.accuracy(out, np.array([1, 0, 0])) == 2 / 3
    assert metrics.accuracy(out[:, None, None, :], np.array([1, 0, 1])) == 1.0
    assert metrics.top1_agreement(out, out[:, ::-1]) == 0.0
    assert metrics.top1_agreement(out, np.array([[0, 1], [1, 0], [1, 0]])) == 2 / 3


def test_regression_outputs_have_no_top1():
    out = np.zeros((4, 1), np.float32)
    assert metrics.accuracy(out, np.zeros(4, np.int64)) is None
    assert metrics.top1_agreement(out, out) is None


def test_bit_exact_counts_elements_and_float_bit_patterns():
    a = np.array([[1, -3, 5, 7]], np.int8)
    b = np.array([[1, -2, 5, 7]], np.int8)
    assert metrics.bit_exact_fraction(a, b) == 0.75
    assert metrics.max_abs_diff(a, b) == 1.0
    z = np.array([0.0], np.float32)
    assert metrics.bit_exact_fraction(z, -z) == 0.0  # +0 and -0 differ in bits
    assert metrics.bit_exact_fraction(a, b[:, :3]) == 0.0


def test_byte_agreement_counts_bytes_and_inputs():
    a = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.int8)
    b = a.copy()
    b[1, 2] = 10
    agree = metrics.byte_agreement(a, b)
    assert agree.bit_exact == 7 / 8 and agree.max_abs_diff == 3.0 and agree.mismatched_inputs == 1
    f = np.array([[0.0], [1.0]], dtype=np.float32)
    assert metrics.byte_agreement(f, -f).bit_exact == 0.75  # -0.0 is not 0.0 byte for byte
    assert metrics.byte_agreement(a, a[:, :2]).bit_exact == 0.0
