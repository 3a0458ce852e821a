"""Generated C for accepted mutated models runs clean under ASan and UBSan on the host (a small sample; bench/fuzz.py --tier asan runs 1,000)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import require_tools
from fuzz_mutator import model_files, mutate

from edgekit.aot.codegen import generate
from edgekit.aot.hostcheck import compile_host
from edgekit.errors import EdgekitError

SAMPLE = 4  # accepted models compiled and run; ~3 s each
MAX_BYTES = 60_000


def test_generated_c_of_accepted_mutants_is_sanitizer_clean(shared_models, tmp_path):
    require_tools("gcc")
    models = [p.read_bytes() for p in model_files(shared_models) if p.stat().st_size <= MAX_BYTES]
    ran = 0
    for seed in range(10_000, 10_400):
        buf, kind = mutate(models[seed % len(models)], seed)
        d = tmp_path / str(seed)
        try:
            res = generate(buf, d / "c")
        except EdgekitError:
            continue
        exe = compile_host(d / "c", d / "exe", sanitize=True)
        rng = np.random.default_rng(seed)
        x = (rng.uniform(-4, 4, res.input_bytes // 4).astype(np.float32) if res.input_is_float
             else rng.integers(-128, 128, res.input_bytes).astype(np.int8))
        np.concatenate([x, np.full_like(x, 127 if x.dtype == np.int8 else 4)]).tofile(d / "in.bin")
        r = subprocess.run([str(exe), str(d / "in.bin"), str(d / "out.bin")], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"seed {seed} ({kind}): {r.stderr[-600:]}"
        assert (d / "out.bin").stat().st_size == 2 * res.output_bytes
        ran += 1
        if ran == SAMPLE:
            return
    pytest.fail(f"only {ran} of 400 mutants were accepted by codegen")
