"""Recurrent and stateful models trained here, built for a microcontroller and a Pi, verified, compressed.

- An LSTM classifier (tf_keras: 10 steps x 4 features -> LSTM(8) -> softmax over 4 classes; which of
  the four features has the largest sum over the last 5 steps). It converts to one
  UNIDIRECTIONAL_SEQUENCE_LSTM, whose state TFLite keeps in variable tensors: every runtime resets
  them between samples.
- A streaming classifier (a tf.Module SavedModel; state s = 0.7 s + x W kept in a tf.Variable, updated
  on every call of one 4-feature frame; softmax(s V + b) over 3 classes, the class whose feature had
  the largest decayed sum). Its data is sequences, x [N, 8, 4] (edgekit.sequences): the state carries
  across the 8 calls of a sequence and is reset between sequences.

cortex-m4 builds verify on the TFLM interpreter (sequences for the streaming model), rpi4 builds on
LiteRT and on the emulated Pi; edgekit's own C runtime refuses both by name (exit 4).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_tools

from edgekit.cli import main

pytestmark = pytest.mark.slow

T = 8  # calls per streaming sequence


def _lstm(folder):
    import tf_keras as keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(900, 10, 4)).astype(np.float32)
    y = x[:, 5:, :].sum(1).argmax(1)
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((10, 4)), keras.layers.LSTM(8, name="lstm"),
                          keras.layers.Dense(4, activation="softmax", name="head")])
    m.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    m.fit(x[:700], y[:700], epochs=12, batch_size=32, verbose=0)
    m.save(folder / "lstm.h5")
    np.savez(folder / "lstm_train.npz", x=x[:700], y=y[:700])
    np.savez(folder / "lstm_eval.npz", x=x[700:], y=y[700:])


def _streaming(folder):
    import tensorflow as tf

    rng = np.random.default_rng(1)
    x = rng.normal(size=(1400, T, 4)).astype(np.float32)
    y = (x[:, :, :3] * (0.7 ** np.arange(T)[::-1])[None, :, None]).sum(1).argmax(1)

    class Stream(tf.Module):
        def __init__(self):
            self.w = tf.Variable(rng.normal(scale=0.3, size=(4, 8)).astype(np.float32))
            self.v = tf.Variable(rng.normal(scale=0.3, size=(8, 3)).astype(np.float32))
            self.b = tf.Variable(np.zeros(3, np.float32))
            self.state = tf.Variable(tf.zeros([1, 8]), trainable=False)

        def logits(self, s):
            return tf.matmul(s, self.v) + self.b

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
        def __call__(self, frame):
            s = 0.7 * self.state + tf.matmul(frame, self.w)
            self.state.assign(s)
            return tf.nn.softmax(self.logits(s))

    m = Stream()
    opt = tf.keras.optimizers.Adam(0.02)
    params = [m.w, m.v, m.b]
    for _ in range(120):  # trained unrolled over whole sequences
        idx = rng.integers(0, 1200, 128)
        with tf.GradientTape() as tape:
            s = tf.zeros([128, 8])
            for t in range(T):
                s = 0.7 * s + tf.matmul(x[idx, t], m.w)
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y[idx], m.logits(s), from_logits=True))
        opt.apply_gradients(zip(tape.gradient(loss, params), params))
    tf.saved_model.save(m, str(folder / "stream"), signatures=m.__call__)
    np.savez(folder / "stream_calib.npz", x=x[:100])
    np.savez(folder / "stream_eval.npz", x=x[1200:], y=y[1200:])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("recurrent")
    _lstm(d)
    _streaming(d)
    return d


def _build(capsys, *args) -> tuple[int, dict | None, str]:
    rc = main(["build", *map(str, args), "--json"])
    cap = capsys.readouterr()
    return rc, (json.loads(cap.out) if rc in (0, 6) else None), cap.err


def _verify(capsys, out) -> tuple[int, dict | None, str]:
    rc = main(["verify", str(out), "--emulator", "--json"])
    cap = capsys.readouterr()
    return rc, (json.loads(cap.out) if rc == 0 else None), cap.err


def test_lstm_cortex_m4_prune50(models, capsys):
    d = models
    rc, r, err = _build(capsys, d / "lstm.h5", "--target", "cortex-m4", "--train", d / "lstm_train.npz",
                        "--eval", d / "lstm_eval.npz", "--recipe", "prune50", "--out", d / "lstm-m4")
    assert rc == 0, err
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in r["ops"]
    acc = r["accuracy"]
    assert acc["float"] >= 0.6  # chance is 0.25
    assert acc["int8_tflm"] >= acc["float"] - 0.05
    assert r["task"]["name"] == "classification" and r["task"]["metrics"]["int8_tflm"]["accuracy"] == acc["int8_tflm"]
    prune = r["compression"][0]["details"]
    assert "crossentropy" in prune["loss_function"]
    assert prune["skipped"]["lstm"].startswith("recurrent layer")
    assert [p["layer"] for p in prune["per_layer"]] == ["head"] and prune["achieved_sparsity"] == pytest.approx(0.5, abs=0.05)
    assert r["memory"]["arena_bytes"] > 0
    # edgekit's C runtime (ek_lstm.c) on the emulated Cortex-M4, over the eval sequences, against TFLM
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    rc, e, err = _verify(capsys, d / "lstm-m4")
    assert rc == 0, err
    assert e["outputs_bit_exact"] == 1.0 and e["mismatched_inputs"] == 0, e


def test_lstm_rpi4_structured50_on_the_emulated_pi(models, capsys):
    d = models
    rc, r, err = _build(capsys, d / "lstm.h5", "--target", "rpi4", "--train", d / "lstm_train.npz",
                        "--eval", d / "lstm_eval.npz", "--recipe", "structured50", "--out", d / "lstm-pi")
    assert rc == 0, err
    st = r["compression"][0]["details"]
    assert "recurrent layer" in st["skipped"]["lstm"]
    assert "crossentropy" in st["fine_tune"]["loss_function"]
    assert r["accuracy"]["int8_tflite"] >= r["accuracy"]["float"] - 0.05 and r["accuracy"]["float"] >= 0.6
    require_tools("qemu-aarch64-static")
    rc, e, err = _verify(capsys, d / "lstm-pi")
    assert rc == 0, err
    # the first 100 eval samples on the emulated Cortex-A72 against the same samples on the host
    assert e["n_inputs"] == 100 and e["accuracy"] == pytest.approx(e["host_accuracy"], abs=0.02)
    assert e["outputs_bit_exact"] >= 0.9


def test_streaming_cortex_m4_verified_on_sequences(models, capsys):
    d = models
    rc, r, err = _build(capsys, d / "stream", "--target", "cortex-m4", "--calib", d / "stream_calib.npz",
                        "--eval", d / "stream_eval.npz", "--out", d / "stream-m4")
    assert rc == 0, err
    assert {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"} <= set(r["ops"])
    assert r["verified_on"]["sequences"] == 200 and r["verified_on"]["calls_per_sequence"] == T
    acc = r["accuracy"]
    assert acc["float"] >= 0.85 and acc["int8_tflm"] >= acc["float"] - 0.05
    # both interpreters reset the resource variable between sequences (LiteRT needs a new interpreter for it)
    assert r["agreement"]["tflm_vs_tflite_bit_exact"] >= 0.9
    assert 0 < r["memory"]["arena_bytes"] < 16_384
    main_cc = (d / "stream-m4" / "tflm" / "main.cc").read_text()
    assert "MicroResourceVariables::Create(allocator, 1)" in main_cc
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    rc, e, err = _verify(capsys, d / "stream-m4")  # resource variables in edgekit's C runtime (aot/lower_vars.py)
    assert rc == 0, err
    assert e["outputs_bit_exact"] == 1.0 and e["calls_per_sequence"] == T, e
    # a SavedModel cannot be compressed: refused in one line before anything is written
    rc = main(["build", str(d / "stream"), "--target", "cortex-m4", "--calib", str(d / "stream_calib.npz"),
               "--train", str(d / "stream_eval.npz"), "--recipe", "prune50", "--out", str(d / "stream-p")])
    err = capsys.readouterr().err
    assert rc == 2 and "compression needs a Keras model" in err and not (d / "stream-p").exists()


def test_streaming_rpi4_on_the_emulated_pi(models, capsys):
    d = models
    rc, r, err = _build(capsys, d / "stream", "--target", "rpi4", "--calib", d / "stream_calib.npz",
                        "--eval", d / "stream_eval.npz", "--out", d / "stream-pi")
    assert rc == 0, err
    assert r["accuracy"]["int8_tflite"] >= r["accuracy"]["float"] - 0.05 and r["accuracy"]["float"] >= 0.85
    require_tools("qemu-aarch64-static")
    rc, e, err = _verify(capsys, d / "stream-pi")
    assert rc == 0, err
    assert e["n_inputs"] == 100  # the first 100 sequences; run.py runs each as 8 calls
    assert e["accuracy"] == pytest.approx(e["host_accuracy"], abs=0.02) and e["accuracy"] >= 0.85
    assert e["outputs_bit_exact"] >= 0.9
