"""SOFTMAX rows whose sum of exps reaches 512 (TFLM's RoundingDivideByPOT exponent passes 31)."""

from __future__ import annotations

import subprocess

import numpy as np
from aot_models import convert
from conftest import require_tools

from edgekit.aot.codegen import generate
from edgekit.aot.hostcheck import compile_host, host_check
from edgekit.tflm_host import _probe

DEPTH = 600


def test_softmax_with_a_sum_of_exps_past_512_is_defined_and_gives_the_zero_point(tmp_path):
    import tensorflow as tf

    require_tools("gcc")
    tfl = convert(tf.nn.softmax, [1, DEPTH], low=-1.0, high=1.0)
    rng = np.random.default_rng(5)
    spread = rng.integers(-128, 128, size=(6, DEPTH)).astype(np.int8)  # sums of exps far below 512
    assert host_check(tfl, spread, tmp_path / "spread").bit_exact_fraction == 1.0

    # Equal inputs: every exp is 1, the sum is 600. The tflite-micro interpreter aborts on such a row
    # (gemmlowp asserts the shift is at most 31) ...
    (tmp_path / "m.tflite").write_bytes(tfl)
    tflm = _probe(tmp_path / "m.tflite", [1 << 20], mode="run")[1 << 20]  # its input is all zeros
    assert not tflm["ok"] and tflm.get("crashed") == -6, tflm  # SIGABRT
    # ... edgekit's C runs it clean under ASan and UBSan and writes what each 1/600 rounds to at scale 1/256
    # (0.43 -> 0, i.e. the zero point -128), as for a row of 8 distinct values far below the max.
    generate(tfl, tmp_path / "c")
    exe = compile_host(tmp_path / "c", tmp_path / "exe", sanitize=True)
    equal = np.stack([np.zeros(DEPTH, np.int8), np.full(DEPTH, 127, np.int8), np.full(DEPTH, -128, np.int8)])
    equal.tofile(tmp_path / "in.bin")
    r = subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-600:]
    out = np.fromfile(tmp_path / "out.bin", dtype=np.int8).reshape(3, DEPTH)
    assert (out == -128).all()
    assert np.round(256 / DEPTH) - 128 == -128
