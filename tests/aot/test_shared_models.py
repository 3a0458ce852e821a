"""Conformance on third-party int8 models (../shared/models): host-compiled generated C versus tflite-micro.

Every model that uses only supported ops must be bit-identical with the
tflite-micro interpreter on 100 seeded generated inputs (all -128, all 127,
then uniform random), and its arena must stay at most 0.7x the arena TFLM
measured (the figures of ../shared/models/README.md; TFLM's arena also holds
the input and output tensors, so the comparison counts them on edgekit's side
too, although the generated code reads and writes the caller's buffers).
"""

from __future__ import annotations

import pytest
from aot_models import random_inputs
from conftest import require_tools, shared_model

from edgekit.aot.codegen import generate
from edgekit.aot.hostcheck import host_check
from edgekit.errors import UnsupportedOpError

pytestmark = pytest.mark.shared_models

# TFLM's arena on x86 reference kernels, from ../shared/models/README.md
TFLM_ARENA = {
    "tflm/person_detect.tflite": 85_264,
    "mlperf_tiny/kws_ref_model.tflite": 24_272,
    "mlperf_tiny/vww_96_int8.tflite": 103_680,
    "mlperf_tiny/pretrainedResnet_quant.tflite": 55_984,
    "mlperf_tiny/ad01_int8.tflite": 3_984,
}
SUPPORTED = [
    *TFLM_ARENA,
    "tflm/hello_world_int8.tflite",
    "tflm/micro_speech_quantized.tflite",
]
UNSUPPORTED = {"tflm/hello_world_float.tflite": "float32"}  # keyword_scrambled (SVDF): test_svdf.py


@pytest.mark.parametrize("name", SUPPORTED)
def test_shared_model_bit_exact_and_arena(name, shared_models, tmp_path):
    require_tools("gcc")
    path = shared_model(shared_models, name)
    tfl = path.read_bytes()
    r = host_check(tfl, random_inputs(tfl, 100, seed=0), tmp_path)
    assert r.n_inputs == 100
    assert r.bit_exact_fraction == 1.0, r.to_dict()
    cg = r.codegen
    if name in TFLM_ARENA:
        with_io = cg.arena_bytes + cg.input_bytes + cg.output_bytes
        assert with_io <= 0.7 * TFLM_ARENA[name], (cg.arena_bytes, with_io, TFLM_ARENA[name])


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_shared_model_unsupported_is_named(name, shared_models, tmp_path):
    path = shared_model(shared_models, name)
    with pytest.raises(UnsupportedOpError, match=UNSUPPORTED[name]):
        generate(path, tmp_path)
