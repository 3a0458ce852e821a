"""Conformance on models nobody on this project trained: every int8 .tflite under
../shared/models whose ops edgekit's generator supports runs on the emulated
Cortex-M4 (mps2-an386) bit-identical with the tflite-micro interpreter on 100
seeded generated inputs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_tools, shared_model

from edgekit.errors import UnsupportedOpError
from edgekit.targets import get_target
from edgekit.tflm_host import run_tflm
from edgekit.toolchain.mcu_verify import generated_inputs, io_quantization, run_on_emulator

pytestmark = [pytest.mark.emulator, pytest.mark.shared_models, pytest.mark.slow]

N_INPUTS = 100
UNSUPPORTED: dict[str, str] = {}  # a known gap: model -> the op the refusal names
INT8_MODELS = [
    "tflm/hello_world_int8.tflite",
    "tflm/micro_speech_quantized.tflite",
    "tflm/person_detect.tflite",  # keyword_scrambled (int16 in, int32 out, state): tests/aot/test_svdf.py
    "mlperf_tiny/kws_ref_model.tflite",
    "mlperf_tiny/vww_96_int8.tflite",
    "mlperf_tiny/pretrainedResnet_quant.tflite",
    "mlperf_tiny/ad01_int8.tflite",
]


@pytest.mark.parametrize("rel", INT8_MODELS)
def test_shared_int8_model_on_qemu_is_bit_exact_with_tflm(rel, shared_models, tmp_path):
    require_tools("arm-none-eabi-gcc", "arm-none-eabi-objdump", "arm-none-eabi-nm", "qemu-system-arm")
    path = shared_model(shared_models, rel)
    tflite = path.read_bytes()
    if rel in UNSUPPORTED:  # a known gap is asserted as one; any other lowering error fails the test
        with pytest.raises(UnsupportedOpError, match=UNSUPPORTED[rel]):
            run_on_emulator(tflite, get_target("cortex-m4"), np.zeros((1, 1), np.int8), tmp_path)
        return
    inp, out = io_quantization(tflite)
    if (inp.dtype, out.dtype) != ("int8", "int8"):
        pytest.skip(f"{rel}: {inp.dtype} input, {out.dtype} output; the emulator harness runs int8 I/O")
    target = get_target("cortex-m4")
    x = generated_inputs(N_INPUTS, inp.nbytes, seed=0)
    x[0], x[1] = -128, 127  # the two extremes, then uniform random
    ours, dev = run_on_emulator(tflite, target, x, tmp_path)
    ref = run_tflm(tflite, x)
    mismatch = np.argwhere(ours != ref.reshape(ours.shape))
    assert mismatch.size == 0, f"{len(mismatch)} output bytes differ, first at (input, byte) {tuple(mismatch[0])}"
    assert dev.flash_bytes < target.flash_bytes and dev.ram_bytes < target.ram_bytes
    assert dev.instructions_per_inference and dev.instructions_per_inference > 1000
