"""Resource variables (VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE, CALL_ONCE) in edgekit's C runtime:
bit-exact with the tflite-micro interpreter over sequences of calls, under ASan/UBSan.

The model is a streaming classifier of the kind tests/conformance builds: a tf.Module whose state
``s = 0.7 s + x W`` lives in a tf.Variable updated on every call of one 4-feature frame, softmax(s V)
out. Seeded and untrained, converted both ways the converter offers: a float32 variable read and
written around an int8 QUANTIZE ... DEQUANTIZE (the default), and an int8 variable
(``_experimental_variable_quantization``, what ``edgekit build`` uses for a SavedModel); each with a
CALL_ONCE init subgraph that assigns zeros.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import require_tools

from edgekit.aot.codegen import lower
from edgekit.aot.graph import parse
from edgekit.aot.hostcheck import host_check
from edgekit.errors import UnsupportedOpError

CALLS = 6  # calls per sequence


def _stream_tflite(folder, int8_variable: bool) -> bytes:
    import tensorflow as tf

    rng = np.random.default_rng(1)

    class Stream(tf.Module):
        def __init__(self):
            self.w = tf.Variable(rng.normal(scale=0.5, size=(4, 8)).astype(np.float32))
            self.v = tf.Variable(rng.normal(scale=0.5, size=(8, 3)).astype(np.float32))
            self.state = tf.Variable(tf.zeros([1, 8]), trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
        def __call__(self, frame):
            s = 0.7 * self.state + tf.matmul(frame, self.w)
            self.state.assign(s)
            return tf.nn.softmax(tf.matmul(s, self.v))

    m = Stream()
    tf.saved_model.save(m, str(folder), signatures=m.__call__)
    conv = tf.lite.TFLiteConverter.from_saved_model(str(folder))

    def rep():
        for _ in range(40):
            yield [rng.normal(size=(1, 4)).astype(np.float32)]

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    conv._experimental_variable_quantization = int8_variable
    return bytes(conv.convert())


@pytest.fixture(scope="module")
def streams(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("stream")
    return {"float32": _stream_tflite(d / "f", False), "int8": _stream_tflite(d / "q", True)}


@pytest.mark.parametrize("dtype, state_bytes", [("float32", 32), ("int8", 8)])
def test_streaming_variables_bit_exact_over_sequences(streams, tmp_path, dtype, state_bytes):
    require_tools("gcc")
    stream = streams[dtype]
    g = parse(stream)
    assert next(g.t(op.outputs[0]).dtype for op in g.ops if op.name == "READ_VARIABLE") == dtype
    assert {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"} <= {op.name for op in g.ops}
    assert len(g.extra["subgraphs"]) == 1  # the init subgraph
    x = np.random.default_rng(2).integers(-128, 128, size=(3 * CALLS, 1, 4)).astype(np.int8)
    seq = host_check(stream, x, tmp_path / "seq", calls_per_sequence=CALLS)
    fresh = host_check(stream, x, tmp_path / "fresh")  # reset before every call
    assert seq.bit_exact_fraction == 1.0, seq.to_dict()
    assert fresh.bit_exact_fraction == 1.0, fresh.to_dict()
    # VAR_HANDLE and CALL_ONCE leave no code; the variable is 8 values in the state area
    assert seq.codegen.ops.count("READ_VARIABLE") == 1 and seq.codegen.ops.count("ASSIGN_VARIABLE") == 1
    assert "VAR_HANDLE" not in seq.codegen.ops and "CALL_ONCE" not in seq.codegen.ops
    assert seq.codegen.state_bytes == state_bytes
    out = seq.outputs.reshape(len(x), -1)
    assert len({tuple(r) for r in out}) >= len(x) - 2  # the outputs move from call to call
    differs = (out != fresh.outputs.reshape(len(x), -1)).any(axis=1).reshape(3, CALLS)
    assert not differs[:, 0].any()  # every sequence starts from the reset state, in TFLM and here
    assert differs[:, 1:].sum() >= 3 * (CALLS - 1) - 2  # and the state carries within a sequence
    c = (tmp_path / "seq" / "code" / "edgekit_model.c").read_text()
    assert c.count(f"ek_copy({state_bytes},") == 2  # read and assign


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_variable_starting_off_the_reset_value_is_refused(streams, dtype):
    """TFLM runs CALL_ONCE once and its Reset() fills the variable with 0 (int8: the zero point): with any
    other init its first sequence would start elsewhere than the later ones, and edgekit refuses rather
    than pick one."""
    g = parse(streams[dtype])
    (init,) = g.extra["subgraphs"]
    k = next(i for i, t in enumerate(init.tensors) if t.data is not None)
    init.tensors[k] = dataclasses.replace(init.tensors[k], data=init.tensors[k].data + 1)
    with pytest.raises(UnsupportedOpError, match="op 0 CALL_ONCE: variable 'Variable' starts from a value other "
                                                 "than TFLM's reset value") as e:
        lower(g)
    assert "\n" not in e.value.one_line()


@pytest.mark.emulator
def test_streaming_variables_on_qemu_bit_exact_over_sequences(streams, tmp_path):
    """The bare-metal harness on mps2-an386 resets the state before every sequence (sequence.bin)."""
    require_tools("arm-none-eabi-gcc", "arm-none-eabi-objdump", "arm-none-eabi-nm", "qemu-system-arm")
    from edgekit.targets import get_target
    from edgekit.tflm_host import run_tflm
    from edgekit.toolchain.mcu_verify import run_on_emulator

    stream = streams["int8"]
    x = np.random.default_rng(3).integers(-128, 128, size=(3 * CALLS, 1, 4)).astype(np.int8)
    raw, dev = run_on_emulator(stream, get_target("cortex-m4"), x, tmp_path / "qemu", calls_per_sequence=CALLS)
    ref = run_tflm(stream, x, calls_per_sequence=CALLS).reshape(len(x), -1)
    assert (raw.reshape(len(x), -1) == ref).all(), np.argwhere(raw.reshape(len(x), -1) != ref)[:3]
    assert dev.instructions_per_inference and dev.instructions_per_inference > 100


def test_malformed_resource_ops_refused_in_one_line(streams):
    """A mutated model (the fuzz tier's kind): wrong arity or missing CALL_ONCE options, refused naming the op."""
    def two_outputs(op):
        op.outputs.append(op.inputs[0])

    def one_input(op):
        op.inputs.pop()

    def no_options(op):
        op.options = None

    for name, edit, needle in (("READ_VARIABLE", two_outputs, "op 3 READ_VARIABLE: 1 inputs and 2 outputs"),
                               ("ASSIGN_VARIABLE", one_input, "op 6 ASSIGN_VARIABLE: 1 inputs"),
                               ("CALL_ONCE", no_options, "op 0 CALL_ONCE: its options are missing")):
        g = parse(streams["int8"])
        edit(next(op for op in g.ops if op.name == name))
        with pytest.raises(UnsupportedOpError, match=needle) as e:
            lower(g)
        assert "\n" not in e.value.one_line()
