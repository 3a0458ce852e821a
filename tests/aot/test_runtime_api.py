"""The generated runtime as a product uses it: two models in one program, caller-owned arenas,
error codes, zero-copy I/O, no undefined behaviour (host builds with the sanitizers), and the same
image on QEMU.

Two small full-int8 models are generated with different prefixes. A hand-written wrapper
(``edgekit_model.h/.c``, the interface the host driver and the bare-metal harness call) runs the
first on a caller-owned arena through ``m1_invoke_with`` and the second (generated with the input
and output in its arena) through ``m2_input`` / ``m2_invoke_in_arena`` / ``m2_output``, on
concatenated inputs; every output byte must equal the tflite-micro interpreter's.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from aot_models import convert, random_inputs
from conftest import require_tools

from edgekit.aot.codegen import generate
from edgekit.aot.hostcheck import CFLAGS, run_host
from edgekit.tflm_host import run_tflm

rng = np.random.default_rng(7)


def _c(*shape) -> tf.Tensor:
    return tf.constant(rng.normal(size=shape).astype(np.float32) * 0.3)


W1, W2, W3 = _c(3, 3, 3, 8), _c(3, 3, 8, 1), _c(8 * 4 * 4, 10)
V1, V2 = _c(1, 1, 4, 12), _c(12, 5)


def _model_a(x):  # conv 3x3 -> depthwise 3x3 -> dense: im2col, c4 and FC kernels
    y = tf.nn.relu(tf.nn.conv2d(x, W1, 2, "SAME"))
    y = tf.nn.depthwise_conv2d(y, W2, [1, 1, 1, 1], "SAME")
    return tf.matmul(tf.reshape(y, [1, -1]), W3)


def _model_b(x):  # 1x1 conv -> average pool -> dense: the pointwise kernel
    y = tf.nn.relu6(tf.nn.conv2d(x, V1, 1, "VALID"))
    return tf.matmul(tf.reduce_mean(y, [1, 2]), V2)


WRAPPER_H = """#ifndef EDGEKIT_MODEL_H
#define EDGEKIT_MODEL_H
#include <stdint.h>
#include "m1_model.h"
#include "m2_model.h"
#define EDGEKIT_INPUT_BYTES {in_bytes} /* M1_INPUT_BYTES + M2_INPUT_BYTES */
#define EDGEKIT_OUTPUT_BYTES {out_bytes} /* M1_OUTPUT_BYTES + M2_OUTPUT_BYTES */
int edgekit_invoke(const int8_t *in, int8_t *out);
#endif
"""

WRAPPER_C = """#include "edgekit_model.h"
static union { int32_t align; int8_t bytes[M1_ARENA_BYTES + 1]; } g_arena; /* the application's */

int edgekit_invoke(const int8_t *in, int8_t *out) {
    const m1_context ok = { g_arena.bytes, M1_ARENA_BYTES };
    const m1_context small = { g_arena.bytes, M1_ARENA_BYTES - 1 };
    const m1_context skewed = { g_arena.bytes + 1, M1_ARENA_BYTES };
    const m1_context none = { 0, M1_ARENA_BYTES };
    out[0] = 99; /* an error must leave the output alone */
    if (m1_invoke_with(&small, in, out) != M1_ERR_ARENA_SIZE || out[0] != 99) return 11;
    if (m1_invoke_with(&skewed, in, out) != M1_ERR_ARENA_ALIGN || out[0] != 99) return 12;
    if (m1_invoke_with(&none, in, out) != M1_ERR_NULL || m1_invoke_with(0, in, out) != M1_ERR_NULL) return 13;
    if (m1_invoke_with(&ok, 0, out) != M1_ERR_NULL || out[0] != 99) return 14;
    if (m1_invoke_with(&ok, in, out) != M1_OK) return 15;
    /* model 2 is generated with io_in_arena: zero-copy through its static arena's context */
    static union { int32_t align; int8_t bytes[M2_ARENA_BYTES]; } arena2;
    const m2_context c2 = { arena2.bytes, M2_ARENA_BYTES };
    int8_t *x = m2_input(&c2);
    for (int32_t i = 0; i < M2_INPUT_BYTES; i++) x[i] = in[M1_INPUT_BYTES + i];
    const int rc = m2_invoke_in_arena(&c2);
    const int8_t *y = m2_output(&c2);
    for (int32_t i = 0; i < M2_OUTPUT_BYTES; i++) out[M1_OUTPUT_BYTES + i] = y[i];
    return rc;
}
"""


@pytest.fixture(scope="module")
def two_models():
    a = convert(_model_a, [1, 8, 8, 3])
    b = convert(_model_b, [1, 5, 5, 4])
    return a, b


def _inputs(a: bytes, b: bytes, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xa, xb = random_inputs(a, n, seed=1), random_inputs(b, n, seed=2)
    both = np.concatenate([xa.reshape(n, -1), xb.reshape(n, -1)], axis=1)
    return xa, xb, both


def _one_folder(a: bytes, b: bytes, folder):
    """Both models in one folder: one copy of the kernels, compiled once, shared by both."""
    ra = generate(a, folder, prefix="m1")
    rb = generate(b, folder, prefix="m2", io_in_arena=True)
    _wrapper(ra, rb, folder)
    (folder / "edgekit_model.c").write_text(WRAPPER_C)
    return ra, rb


def _wrapper(ra, rb, folder) -> None:
    (folder / "edgekit_model.h").write_text(WRAPPER_H.format(in_bytes=ra.input_bytes + rb.input_bytes,
                                                             out_bytes=ra.output_bytes + rb.output_bytes))


def _expected(a: bytes, b: bytes, xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    n = len(xa)
    return np.concatenate([run_tflm(a, xa).reshape(n, -1), run_tflm(b, xb).reshape(n, -1)], axis=1)


def test_two_models_caller_arena_and_error_codes_on_host_with_sanitizers(two_models, tmp_path):
    require_tools("gcc")
    a, b = two_models
    ra, rb = _one_folder(a, b, tmp_path / "code")
    assert ra.weight_scratch_bytes > 0  # model A's conv gathers its windows in the caller's arena
    xa, xb, both = _inputs(a, b, 12)
    got = run_host(tmp_path / "code", both, tmp_path / "host", (ra.output_bytes + rb.output_bytes,), np.int8)
    np.testing.assert_array_equal(got, _expected(a, b, xa, xb))


def test_two_separately_compiled_models_link(two_models, tmp_path):
    """Each model's folder compiled on its own (as two libraries would be): only the prefixes keep
    their identically named kernels apart, and the program runs both bit-exactly."""
    require_tools("gcc")
    a, b = two_models
    gcc = shutil.which("gcc")
    objs, results = [], []
    for name, model in (("m1", a), ("m2", b)):
        d = tmp_path / name
        results.append(generate(model, d, prefix=name, io_in_arena=name == "m2"))
        for src in sorted(d.glob("*.c")):
            obj = tmp_path / f"{name}_{src.stem}.o"
            subprocess.run([gcc, *CFLAGS, f"-I{d}", "-c", str(src), "-o", str(obj)], check=True)
            objs.append(str(obj))
    _wrapper(*results, tmp_path)
    (tmp_path / "wrapper.c").write_text(WRAPPER_C)
    driver = tmp_path / "driver.c"
    from edgekit.aot.hostcheck import _DRIVER

    driver.write_text(_DRIVER)
    exe = tmp_path / "both"
    r = subprocess.run([gcc, *CFLAGS, f"-I{tmp_path}", f"-I{tmp_path / 'm1'}", f"-I{tmp_path / 'm2'}",
                        str(tmp_path / "wrapper.c"), str(driver), *objs, "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr  # without the prefixes: "multiple definition of `ek_conv2d_im2col'"
    xa, xb, both = _inputs(a, b, 6)
    both.tofile(tmp_path / "in.bin")
    subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], check=True)
    got = np.fromfile(tmp_path / "out.bin", np.int8).reshape(len(both), -1)
    np.testing.assert_array_equal(got, _expected(a, b, xa, xb))


def test_two_models_in_one_qemu_image(two_models, tmp_path):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    from edgekit.targets import get_target
    from edgekit.toolchain.mcu_verify import run_on_emulator

    a, b = two_models
    _one_folder(a, b, tmp_path / "code")
    xa, xb, both = _inputs(a, b, 6)
    got, dev = run_on_emulator(tmp_path / "code", get_target("cortex-m4"), both, tmp_path / "run")
    np.testing.assert_array_equal(got, _expected(a, b, xa, xb))
    assert dev.instructions_per_inference is None or dev.instructions_per_inference > 0


def test_io_in_arena_needs_less_ram_than_arena_plus_io(two_models, tmp_path):
    """With the input and output planned in the arena, their bytes are shared: the arena grows by
    less than the I/O buffers it replaces, and the header gives both offsets inside it."""
    _, b = two_models
    plain = generate(b, tmp_path / "plain")
    inside = generate(b, tmp_path / "inside", io_in_arena=True)
    assert inside.arena_bytes < plain.arena_bytes + plain.input_bytes + plain.output_bytes
    h = (tmp_path / "inside" / "edgekit_model.h").read_text()
    offsets = dict(re.findall(r"#define EDGEKIT_(INPUT|OUTPUT)_OFFSET (\d+)", h))
    assert int(offsets["INPUT"]) + inside.input_bytes <= inside.arena_bytes
    assert int(offsets["OUTPUT"]) + inside.output_bytes <= inside.arena_bytes
