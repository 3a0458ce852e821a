"""The kernels' Arm DSP (SIMD) paths, cross-compiled and run on QEMU, against tflite-micro.

The host check runs the portable C; on Cortex-M4/M7 ``ek_dot`` and the
conv row runs use SMLAD instead, and on the Cortex-M55 the matrix products
and depthwise taps use Helium (MVE) gathers and VMLADAV, with SMLAD for the
last < 16 inputs. This model is shaped to reach every branch:
channel counts that are not multiples of 4 or 8, contiguous and dilated conv
rows, depthwise (plain, dilated, strided) with 4-channel blocks plus a remainder,
FC depths of 8k+4+r.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from aot_models import convert, random_inputs
from conftest import require_tools

from edgekit.tflm_host import run_tflm

pytestmark = [pytest.mark.emulator]


def _model() -> bytes:
    rng = np.random.default_rng(5)

    def w(*shape):
        return tf.constant(rng.normal(size=shape).astype(np.float32) * 0.3)

    w1, dw, w2, w3, fc = w(3, 3, 3, 6), w(3, 3, 6, 1), w(3, 3, 6, 5), w(1, 1, 5, 13), w(4 * 4 * 13, 11)
    dw2 = w(3, 3, 13, 1)

    def f(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"))
        y = tf.nn.depthwise_conv2d(y, dw, [1, 1, 1, 1], "SAME")
        y = tf.nn.relu(tf.nn.conv2d(y, w2, 1, "SAME", dilations=2))
        y = tf.nn.conv2d(y, w3, 1, "VALID")
        y = tf.nn.depthwise_conv2d(y, dw2, [1, 1, 1, 1], "SAME", dilations=[2, 2])
        y = tf.nn.relu(tf.nn.depthwise_conv2d(y, dw2, [1, 2, 2, 1], "SAME"))
        return tf.matmul(tf.reshape(y, [1, -1]), fc)

    return convert(f, [1, 7, 7, 3])


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m55"])
def test_dsp_paths_bit_exact_on_qemu(target, tmp_path):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    from edgekit.targets import get_target
    from edgekit.toolchain.mcu_verify import run_on_emulator

    tfl = _model()
    x = random_inputs(tfl, 12, seed=4)
    out, dev = run_on_emulator(tfl, get_target(target), x.reshape(len(x), -1), tmp_path)
    ref = run_tflm(tfl, x).reshape(out.shape)
    assert (out == ref).all(), f"{int((out != ref).sum())} of {out.size} bytes differ"
