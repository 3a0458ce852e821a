"""SVDF and the int16-in / int32-out QUANTIZE and int8 -> int16 SOFTMAX of TFLM's keyword_scrambled.tflite
in edgekit's C runtime: bit-exact with the tflite-micro interpreter over sequences of calls (the SVDF
state carried in the arena's state area between calls, zeroed by edgekit_reset), under ASan/UBSan.

TFLM's keyword_scrambled has scrambled weights: its huge int32 biases saturate every layer, so its
output is [0.5, 0.5] for every input. The variant with every bias divided by 2^18 (``_live_variant``)
keeps the same ops, shapes and scales but lets the layers and the state move, so its outputs
differ from call to call and from a fresh state.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_tools, shared_model

from edgekit.aot.codegen import generate
from edgekit.aot.hostcheck import generated_inputs, host_check
from edgekit.errors import InputError, UnsupportedOpError

KWS = "tflm/keyword_scrambled.tflite"
T = 10  # calls per sequence


def _live_variant(tflite: bytes) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(tflite, 0)
    for t in m.subgraphs[0].tensors:
        b = m.buffers[t.buffer]
        if t.type == s.TensorType.INT32 and b.data is not None and len(b.data):
            d = np.frombuffer(bytes(np.asarray(b.data, np.uint8)), np.int32)
            b.data = (d // 2**18).astype(np.int32).view(np.uint8)
    fb = flatbuffers.Builder(1024)
    fb.Finish(m.Pack(fb), file_identifier=b"TFL3")
    return bytes(fb.Output())


def _inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-3000, 3000, size=(n, 1, 96)).astype(np.int16)


@pytest.mark.shared_models
def test_keyword_scrambled_bit_exact_over_sequences(shared_models, tmp_path):
    require_tools("gcc")
    tfl = shared_model(shared_models, KWS).read_bytes()
    x = generated_inputs(tfl, 4 * T, seed=0)
    assert x.dtype == np.int16 and x[0].min() == -32768 and x[1].max() == 32767
    r = host_check(tfl, x, tmp_path / "kws", calls_per_sequence=T)
    assert r.bit_exact_fraction == 1.0, r.to_dict()
    assert r.outputs.dtype == np.int32 and r.outputs.shape == (4 * T, 1, 2)
    cg = r.codegen
    assert cg.ops.count("SVDF") == 7
    # 4 SVDFs with 64 filters x 8 memory and 3 with 32 x 32, int16: 10,240 B of state after the tensors
    assert cg.state_bytes == 10_240 and cg.arena_bytes >= cg.state_bytes + cg.weight_scratch_bytes
    h = (tmp_path / "kws" / "code" / "edgekit_model.h").read_text()
    assert "#define EDGEKIT_STATE_BYTES 10240" in h and "#define EDGEKIT_INPUT_IS_INT16 1" in h
    assert "#define EDGEKIT_OUTPUT_IS_INT32 1" in h and "int edgekit_reset(const edgekit_context *ctx);" in h


@pytest.fixture(params=["int16 state", "int8 state"])
def svdf_model(request) -> tuple[str, bytes]:
    """keyword_scrambled (int16 SVDF state, ../shared/models) or keyword_scrambled_8bit (int8 state, zero point -50,
    read from the TFLM source tree)."""
    if request.param == "int16 state":
        return request.param, shared_model(request.getfixturevalue("shared_models"), KWS).read_bytes()
    src = request.getfixturevalue("tflm_src")
    return request.param, (src / "tensorflow/lite/micro/models/keyword_scrambled_8bit.tflite").read_bytes()


def test_svdf_state_carries_across_calls_bit_exact(svdf_model, tmp_path):
    require_tools("gcc")
    which, original = svdf_model
    tfl = _live_variant(original)
    x = _inputs(3 * T, seed=1)
    seq = host_check(tfl, x, tmp_path / "seq", calls_per_sequence=T)
    fresh = host_check(tfl, x, tmp_path / "fresh")  # reset before every call
    assert seq.bit_exact_fraction == 1.0, seq.to_dict()
    assert fresh.bit_exact_fraction == 1.0, fresh.to_dict()
    out = seq.outputs.reshape(len(x), -1)
    assert len({tuple(r) for r in out}) >= 5  # the outputs move with the input and the state
    assert seq.codegen.state_bytes == (10_240 if which == "int16 state" else 5_120)
    differs = (out != fresh.outputs.reshape(len(x), -1)).any(axis=1).reshape(3, T)
    assert not differs[:, 0].any()  # a sequence's first call starts from the reset state
    assert differs[:, 1:].sum() >= 5  # later calls see the state the earlier ones left


def test_read_variable_without_its_var_handle_is_refused_by_name(tmp_path):
    from aot_models import retype_only_op, convert

    import tensorflow as tf

    tfl = convert(lambda x: tf.nn.relu(x), (1, 8))
    var = retype_only_op(tfl, "READ_VARIABLE")
    with pytest.raises(UnsupportedOpError, match="READ_VARIABLE") as e:
        generate(var, tmp_path / "var")
    assert "TFLM runtime" in e.value.one_line() and "\n" not in e.value.one_line()


@pytest.mark.emulator
def test_keyword_scrambled_on_qemu_bit_exact_over_sequences(svdf_model, tmp_path):
    """The bare-metal harness on mps2-an386: int16 inputs and int32 outputs as bytes, the state reset
    before every sequence of T calls (sequence.bin); the original model and its live variant."""
    require_tools("arm-none-eabi-gcc", "arm-none-eabi-objdump", "arm-none-eabi-nm", "qemu-system-arm")
    from edgekit.targets import get_target
    from edgekit.tflm_host import run_tflm
    from edgekit.toolchain.mcu_verify import run_on_emulator

    _, original = svdf_model
    x = _inputs(3 * T, seed=2)
    for name, tfl in (("original", original), ("live", _live_variant(original))):
        raw, dev = run_on_emulator(tfl, get_target("cortex-m4"), x, tmp_path / name, calls_per_sequence=T)
        ours = raw.view(np.int32).reshape(len(x), 2)
        ref = run_tflm(tfl, x, calls_per_sequence=T).reshape(len(x), 2)
        assert (ours == ref).all(), (name, np.argwhere(ours != ref)[:3])
        assert dev.instructions_per_inference and dev.instructions_per_inference > 10_000
        assert dev.flash_bytes < 100_000 and dev.ram_bytes < 64 * 1024
    assert len({tuple(r) for r in ours}) >= 5  # the live variant's outputs move


@pytest.mark.shared_models
def test_inconsistent_svdf_is_refused_in_one_line(shared_models, tmp_path):
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    tfl = shared_model(shared_models, KWS).read_bytes()

    def mutated(edit) -> bytes:
        m = s.ModelT.InitFromPackedBuf(tfl, 0)
        edit(m.subgraphs[0].tensors)
        fb = flatbuffers.Builder(1024)
        fb.Finish(m.Pack(fb), file_identifier=b"TFL3")
        return bytes(fb.Output())

    def not_variable(ts):
        ts[4].isVariable = False  # the first SVDF's state

    def no_scale(ts):
        ts[4].quantization.scale, ts[4].quantization.zeroPoint = None, None

    for edit, err, needle in ((not_variable, InputError, "read before any operator writes it"),  # the model verifier
                              (no_scale, UnsupportedOpError, "has no (positive )?quantization scale")):
        with pytest.raises(err, match=needle) as e:
            generate(mutated(edit), tmp_path / edit.__name__)
        assert "\n" not in e.value.one_line()
