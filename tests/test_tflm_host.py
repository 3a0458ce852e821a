"""The TFLM host runner and the measured arena, on real models and the real interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.tflite_model import read_model
from edgekit.tflm_host import _probe, measure_arena, run_tflm
from test_tflm_models import digits_tflite


def _litert_ref(tflite: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    ip = Interpreter(model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    ip.allocate_tensors()
    i, o = ip.get_input_details()[0], ip.get_output_details()[0]
    outs = []
    for s in x:
        ip.set_tensor(i["index"], s.reshape(i["shape"]))
        ip.invoke()
        outs.append(ip.get_tensor(o["index"])[0].copy())
    return np.stack(outs)


def test_run_tflm_is_bit_exact_with_litert_reference_kernels(digits_dir):
    tfl = digits_tflite(str(digits_dir))
    info = read_model(tfl)
    x = np.random.default_rng(0).integers(-128, 128, size=(24, 8, 8, 1)).astype(np.int8)
    out = run_tflm(tfl, x)
    assert out.shape == (24, 10) and out.dtype == np.int8
    assert np.array_equal(out, _litert_ref(tfl, x))
    assert len(np.unique(out.argmax(1))) > 1  # not a constant output
    assert out.shape[1:] == tuple(info.outputs[0].shape[1:])


def test_run_tflm_refuses_inputs_of_the_wrong_dtype(digits_dir):
    from edgekit.errors import VerificationError

    with pytest.raises(VerificationError, match="input dtype float32"):
        run_tflm(digits_tflite(str(digits_dir)), np.zeros((1, 8, 8, 1), np.float32))


def test_measured_arena_is_the_smallest_that_works(digits_dir):
    tfl = digits_tflite(str(digits_dir))
    arena = measure_arena(tfl)
    assert 1000 < arena.used_bytes < 64 * 1024 and arena.min_bytes % 16 == 0
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.tflite"
        p.write_bytes(tfl)
        res = _probe(p, [arena.min_bytes, arena.min_bytes - 16])
    assert res[arena.min_bytes]["ok"] and not res[arena.min_bytes - 16]["ok"]


@pytest.mark.shared_models
def test_person_detect_arena_matches_tflm_reference_figure(shared_models):
    arena = measure_arena((shared_models / "tflm" / "person_detect.tflite").read_bytes())
    assert abs(arena.used_bytes - 85_264) <= 0.02 * 85_264
    assert arena.head_bytes + arena.tail_bytes == arena.used_bytes and arena.head_bytes == 55_296  # the planner peak: 36,864 + 18,432 B of live activations
    assert arena.used_bytes <= arena.min_bytes + 16 * 64 and arena.min_bytes <= arena.used_bytes + 1024


@pytest.mark.shared_models
def test_kws_arena_matches_the_documented_figure(shared_models):
    arena = measure_arena((shared_models / "mlperf_tiny" / "kws_ref_model.tflite").read_bytes())
    assert abs(arena.used_bytes - 24_272) <= 0.02 * 24_272
