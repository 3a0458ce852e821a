"""UNIDIRECTIONAL_SEQUENCE_LSTM in edgekit's C runtime: bit-exact with the tflite-micro interpreter over
sequences of calls (the hidden and cell state carried in the arena's state area from call to call, as TFLM
carries its variable tensors, and zeroed by edgekit_reset), under ASan/UBSan (--host-check flags).

The models are small tf_keras LSTMs built and converted in the test (seeded, untrained): the converter's
variants (batch-major with return_sequences True and False, time-major with two batch rows). The LSTM's
weights are scaled up (``gain``) so that the gates and the cell state saturate for part of the inputs.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import require_tools

from edgekit.aot.codegen import generate
from edgekit.aot.graph import parse
from edgekit.aot.hostcheck import host_check
from edgekit.aot.lower import SUPPORTED_OPS, lower_op
from edgekit.errors import UnsupportedOpError

STEPS, FEATURES = 5, 3  # time steps inside one call, features per step
CALLS = 4  # calls per sequence


def _lstm_tflite(*, units: int, return_sequences: bool = True, time_major: bool = False, batches: int = 1,
                 gain: float = 1.0, seed: int = 0) -> bytes:
    """A tf_keras Input -> LSTM -> Dense(2), full-int8 converted with the model as trackable (fused LSTM op)."""
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    shape = [STEPS, batches, FEATURES] if time_major else [batches, STEPS, FEATURES]
    lstm = keras.layers.LSTM(units, return_sequences=return_sequences, time_major=time_major)
    model = keras.Sequential([keras.layers.Input(shape[1:], batch_size=shape[0]), lstm, keras.layers.Dense(2)])
    lstm.set_weights([w * gain for w in lstm.get_weights()])
    fn = tf.function(lambda x: model(x, training=False))
    rng = np.random.default_rng(seed)

    def rep():
        for _ in range(40):
            yield [rng.uniform(-1, 1, shape).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function(tf.TensorSpec(shape))], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return bytes(conv.convert())


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    return {
        "batch_major": _lstm_tflite(units=12, gain=3.0),
        "time_major_2_rows": _lstm_tflite(units=8, time_major=True, batches=2, gain=2.0, seed=1),
        "last_step": _lstm_tflite(units=8, return_sequences=False, seed=2),
    }


def _lstm_op(tfl: bytes):
    g = parse(tfl)
    return g, next(op for op in g.ops if op.name == "UNIDIRECTIONAL_SEQUENCE_LSTM")


def _sequences(tfl: bytes, n_sequences: int, seed: int) -> np.ndarray:
    shape = parse(tfl).t(parse(tfl).inputs[0]).shape
    return np.random.default_rng(seed).integers(-128, 128, size=(n_sequences * CALLS, *shape)).astype(np.int8)


@pytest.mark.parametrize("name, time_major, units, rows", [("batch_major", False, 12, 1),
                                                           ("time_major_2_rows", True, 8, 2)])
def test_lstm_bit_exact_over_sequences_with_state_across_calls(models, tmp_path, name, time_major, units, rows):
    require_tools("gcc")
    tfl = models[name]
    g, op = _lstm_op(tfl)
    assert bool(op.options.timeMajor) is time_major
    assert [i < 0 for i in op.inputs[9:12] + op.inputs[16:18] + op.inputs[20:24]] == [True] * 9  # plain LSTM
    x = _sequences(tfl, 3, seed=3)
    seq = host_check(tfl, x, tmp_path / "seq", calls_per_sequence=CALLS)
    fresh = host_check(tfl, x, tmp_path / "fresh")  # reset before every call
    assert seq.bit_exact_fraction == 1.0, seq.to_dict()
    assert fresh.bit_exact_fraction == 1.0, fresh.to_dict()
    assert seq.codegen.ops == ["UNIDIRECTIONAL_SEQUENCE_LSTM", "FULLY_CONNECTED"]
    # hidden state int8 and cell state int16, rows x units each, 4-byte aligned, after the tensors
    assert seq.codegen.state_bytes == (rows * units + 3) // 4 * 4 + (2 * rows * units + 3) // 4 * 4
    out = seq.outputs.reshape(len(x), -1)
    assert len({tuple(r) for r in out}) == len(x)  # every call's outputs differ
    assert int(out.max()) - int(out.min()) >= 100  # the outputs span a wide part of the int8 range
    differs = (out != fresh.outputs.reshape(len(x), -1)).any(axis=1).reshape(3, CALLS)
    assert not differs[:, 0].any()  # TFLM and ek_lstm start every sequence from the reset state
    assert differs[:, 1:].all()  # and carry the state from call to call within it


def test_lstm_return_sequences_false(models, tmp_path):
    """The converter keeps the LSTM over all steps and slices the last one out with STRIDED_SLICE."""
    require_tools("gcc")
    tfl = models["last_step"]
    g, op = _lstm_op(tfl)
    assert [o.name for o in g.ops] == ["UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE", "FULLY_CONNECTED"]
    assert "ek_lstm(" in lower_op(g, op).call
    if "STRIDED_SLICE" not in SUPPORTED_OPS:  # the AOT op set without STRIDED_SLICE: refused by that op's name
        with pytest.raises(UnsupportedOpError, match="STRIDED_SLICE") as e:
            generate(tfl, tmp_path / "c")
        assert str(e.value).startswith("model uses STRIDED_SLICE, not supported")  # the only op missing
        return
    x = _sequences(tfl, 2, seed=4)
    r = host_check(tfl, x, tmp_path / "seq", calls_per_sequence=CALLS)
    assert r.bit_exact_fraction == 1.0, r.to_dict()


def test_sigmoid_table_equals_tflms(tflm_src):
    """The derived 256-entry sigmoid table behind the int16 LOGISTIC/TANH is TFLM's, value for value."""
    import re

    from edgekit.aot.lower_lstm import sigmoid_table

    text = (tflm_src / "tensorflow/lite/kernels/internal/common.h").read_text()
    body = text[text.index("sigmoid_table_uint16[256] = {"):]
    body = body[body.index("{") + 1 : body.index("};")]
    theirs = np.array([int(v, 0) for v in re.findall(r"0x[0-9a-fA-F]+|\d+", body)])
    assert len(theirs) == 256
    assert (sigmoid_table().astype(np.int64) == theirs).all()


@pytest.mark.parametrize("slot, what", [(9, "peephole LSTM"), (16, "projection LSTM"), (20, "layer normalization LSTM")])
def test_lstm_variants_refused_by_name(models, slot, what):
    g, op = _lstm_op(models["batch_major"])
    op.inputs[slot] = op.inputs[2]  # any tensor in a variant's slot turns the variant on
    with pytest.raises(UnsupportedOpError, match=f"op 0 UNIDIRECTIONAL_SEQUENCE_LSTM: {what}") as e:
        lower_op(g, op)
    assert "\n" not in e.value.one_line()


def test_cifg_and_overflowing_sums_refused(models):
    g, op = _lstm_op(models["batch_major"])
    op.inputs[1] = -1
    with pytest.raises(UnsupportedOpError, match="CIFG LSTM"):
        lower_op(g, op)
    g, op = _lstm_op(models["batch_major"])
    w, b = g.t(op.inputs[2]), g.t(op.inputs[13])  # input-to-forget weights and the forget gate's bias
    g.tensors[w.index] = dataclasses.replace(w, data=np.full(w.shape, -128, np.int8))
    g.tensors[b.index] = dataclasses.replace(b, data=np.full(b.shape, 2**31 - 2**14, np.int32))
    with pytest.raises(UnsupportedOpError, match="beyond int32"):
        lower_op(g, op)


@pytest.mark.emulator
def test_lstm_build_codegen_verifies_on_qemu_bit_exact(tmp_path, capsys):
    """`edgekit build --codegen` of a tf_keras LSTM for cortex-m4, then `verify --emulator`: edgekit's C
    runtime on mps2-an386 against the TFLM interpreter."""
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    import tf_keras as keras

    from edgekit.cli import main

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input((STEPS, FEATURES)), keras.layers.LSTM(8, return_sequences=True),
                              keras.layers.Dense(2)])
    model.compile(loss="mse")
    model.save(tmp_path / "lstm.h5")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "eval.npz", x=rng.uniform(-1, 1, (24, STEPS, FEATURES)).astype(np.float32))
    out = tmp_path / "build"
    rc = main(["build", str(tmp_path / "lstm.h5"), "--target", "cortex-m4", "--eval", str(tmp_path / "eval.npz"),
               "--codegen", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert (out / "aot" / "ek_lstm.c").is_file()
    capsys.readouterr()
    rc = main(["verify", str(out), "--emulator", "--inputs", "24"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    emu = json.loads((out / "report.json").read_text())["emulator"]
    assert emu["runtime"] == "edgekit-qemu:mps2-an386" and emu["n_inputs"] == 24
    assert emu["outputs_bit_exact"] == 1.0
    assert emu["instructions_per_inference"] > 10_000 and 0 < emu["ram_bytes"] < 4096


@pytest.mark.parametrize("scale, needle", [(0.0, "no positive quantization scale"), (2.0**10, "too coarse")])
def test_cell_state_scale_the_kernel_cannot_run_refused(models, scale, needle):
    g, op = _lstm_op(models["batch_major"])
    c = g.t(op.inputs[19])
    g.tensors[c.index] = dataclasses.replace(c, scale=np.array([scale], np.float32))
    with pytest.raises(UnsupportedOpError, match=f"op 0 UNIDIRECTIONAL_SEQUENCE_LSTM: cell state .*{needle}"):
        lower_op(g, op)
