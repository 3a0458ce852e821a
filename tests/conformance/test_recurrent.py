"""Recurrent and stateful models trained here, built for a microcontroller and a Pi, verified, compressed.

- An LSTM classifier (tf_keras: 10 steps x 4 features -> LSTM(8) -> softmax over 4 classes; which of
  the four features has the largest sum over the last 5 steps). It converts to one
  UNIDIRECTIONAL_SEQUENCE_LSTM, whose state TFLite keeps in variable tensors: every runtime resets
  them between samples.
- A streaming classifier (a tf.Module SavedModel; state s = 0.7 s + x W kept in a tf.Variable, updated
  on every call of one 4-feature frame; softmax(s V + b) over 3 classes, the class whose feature had
  the largest decayed sum). Its data is sequences, x [N, 8, 4] (edgekit.sequences): the state carries
  across the 8 calls of a sequence and is reset between sequences.

- A Keras streaming classifier (tf_keras; Input(batch_shape=(1, 1, 4)) -> Dense -> Dense ->
  GRU(12, stateful=True) -> Dense -> softmax, one frame per call, the same task as the tf.Module one). Its
  state is the GRU's, assigned on every call: it must convert to resource variables, not constants, and
  it compresses through its stateless twin (edgekit.compress.stateful_twin).

cortex-m4 builds verify on the TFLM interpreter (sequences for the streaming models) and on edgekit's
own C runtime under QEMU; rpi4 builds on LiteRT and on the emulated Pi.
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


def _keras_streaming(folder):
    """Trained as its stateless twin on whole sequences; the weights are then put into the stateful batch-1 model."""
    import tf_keras as keras

    rng = np.random.default_rng(1)
    x = rng.normal(size=(1400, T, 1, 4)).astype(np.float32)
    y = (x[:, :, 0, :3] * (0.7 ** np.arange(T)[::-1])[None, :, None]).sum(1).argmax(1)

    def net(batch_shape, stateful):
        keras.utils.set_random_seed(0)
        inp = keras.Input(batch_shape=batch_shape)
        h = keras.layers.Dense(16, activation="relu", name="embed")(inp)
        h = keras.layers.Dense(12, activation="relu", name="pre")(h)
        h = keras.layers.GRU(12, stateful=stateful, name="rnn")(h)
        h = keras.layers.Dense(16, activation="relu", name="post")(h)
        m = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="head")(h), name="kstream")
        m.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        return m

    twin = net((None, None, 4), False)
    twin.fit(x[:1200, :, 0], y[:1200], epochs=12, batch_size=32, verbose=0)
    m = net((1, 1, 4), True)
    m.set_weights(twin.get_weights())
    m.save(folder / "kstream.h5")
    np.savez(folder / "kstream_train.npz", x=x[:1200], y=y[:1200])
    np.savez(folder / "kstream_calls.npz", x=x[:1200, 0], y=y[:1200])  # one call per row: not sequences
    np.savez(folder / "kstream_calib.npz", x=x[:100])
    np.savez(folder / "kstream_eval.npz", x=x[1200:], y=y[1200:])
    # what the last frame alone tells: the class of its largest feature
    (folder / "kstream_last_frame_accuracy").write_text(str(float(np.mean(x[1200:, -1, 0, :3].argmax(1) == y[1200:]))))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("recurrent")
    _lstm(d)
    _streaming(d)
    _keras_streaming(d)
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


STATE_OPS = {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"}


def _streaming_facts(r, d, deployed: str) -> None:
    """What every build of the Keras streaming model must show: state kept, measured on sequences, above the last frame alone."""
    assert STATE_OPS <= set(r["ops"])  # the GRU's state is a resource variable, not a frozen constant
    assert r["verified_on"]["sequences"] == 200 and r["verified_on"]["calls_per_sequence"] == T
    acc = r["accuracy"]
    last_frame = float((d / "kstream_last_frame_accuracy").read_text())  # 0.67 here
    assert acc["float"] >= 0.85 and acc[deployed] >= acc["float_compressed"] - 0.05
    assert acc[deployed] >= last_frame + 0.15  # measured 0.94: the state carries across the 8 calls
    stream = r["compression"][0]["details"]["streaming"]
    assert stream["stateful_layers"] == ["rnn"] and stream["twin_vs_streaming_max_difference"] < 1e-4


def test_keras_streaming_cortex_m4_prune50(models, capsys):
    d = models
    rc, r, err = _build(capsys, d / "kstream.h5", "--target", "cortex-m4", "--calib", d / "kstream_calib.npz",
                        "--train", d / "kstream_train.npz", "--eval", d / "kstream_eval.npz", "--recipe", "prune50",
                        "--out", d / "kstream-m4")
    assert rc == 0, err
    _streaming_facts(r, d, "int8_tflm")
    prune = r["compression"][0]["details"]
    assert "sparse_categorical_crossentropy (the model's compiled loss)" == prune["loss_function"]
    assert prune["skipped"]["rnn"].startswith("recurrent layer")
    assert [p["layer"] for p in prune["per_layer"]] == ["embed", "pre", "post", "head"]
    assert prune["achieved_sparsity"] == pytest.approx(0.5, abs=0.05)
    assert r["agreement"]["tflm_vs_tflite_bit_exact"] >= 0.8
    assert "MicroResourceVariables::Create(allocator, 1)" in (d / "kstream-m4" / "tflm" / "main.cc").read_text()
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    rc, e, err = _verify(capsys, d / "kstream-m4")  # edgekit's C runtime on the emulated Cortex-M4, against TFLM
    assert rc == 0, err
    assert e["outputs_bit_exact"] == 1.0 and e["mismatched_inputs"] == 0 and e["calls_per_sequence"] == T, e
    # fine-tuning a streaming model needs sequences: one call per row is refused in one line, nothing written
    rc = main(["build", str(d / "kstream.h5"), "--target", "cortex-m4", "--calib", str(d / "kstream_calib.npz"),
               "--train", str(d / "kstream_calls.npz"), "--recipe", "prune50", "--out", str(d / "kstream-calls")])
    err = capsys.readouterr().err
    assert rc == 2 and "kstream_calls.npz: fine-tuning streaming model" in err and "needs sequences of calls" in err
    assert "Traceback" not in err and not (d / "kstream-calls").exists()


def test_keras_streaming_rpi4_structured50_on_the_emulated_pi(models, capsys):
    d = models
    rc, r, err = _build(capsys, d / "kstream.h5", "--target", "rpi4", "--calib", d / "kstream_calib.npz",
                        "--train", d / "kstream_train.npz", "--eval", d / "kstream_eval.npz", "--recipe", "structured50",
                        "--out", d / "kstream-pi")
    assert rc == 0, err
    _streaming_facts(r, d, "int8_tflite")
    st = r["compression"][0]["details"]
    assert "sparse_categorical_crossentropy (the model's compiled loss)" == st["fine_tune"]["loss_function"]
    channels = {p["layer"]: (p["channels_before"], p["channels_after"]) for p in st["per_layer"]}
    assert channels == {"embed": (16, 8), "pre": (12, 12), "post": (16, 8), "head": (3, 3)}
    assert st["params_after"] < st["params_before"] and "recurrent layer" in st["skipped"]["rnn"]
    require_tools("qemu-aarch64-static")
    rc, e, err = _verify(capsys, d / "kstream-pi")
    assert rc == 0, err
    assert e["n_inputs"] == 100  # the first 100 sequences, 8 calls each, on the emulated Cortex-A72
    assert e["accuracy"] == pytest.approx(e["host_accuracy"], abs=0.02) and e["accuracy"] >= 0.85
    assert e["outputs_bit_exact"] >= 0.9


def test_keras_streaming_refusals(tmp_path, capsys):
    """Streaming models edgekit cannot keep stateful or cannot compress are refused in one line, before anything is written."""
    import keras
    import tf_keras

    x = np.random.default_rng(2).normal(size=(40, T, 1, 4)).astype(np.float32)
    np.savez(tmp_path / "seq.npz", x=x, y=np.arange(40) % 3)

    def tfk(name, batch_shape, return_sequences=False):
        inp = tf_keras.Input(batch_shape=batch_shape)
        h = tf_keras.layers.GRU(4, stateful=True, return_sequences=return_sequences, name="rnn")(inp)
        m = tf_keras.Model(inp, tf_keras.layers.Dense(3, activation="softmax", name="head")(h))
        m.save(tmp_path / f"{name}.h5")
        return tmp_path / f"{name}.h5"

    k3 = keras.Model(inp := keras.Input(batch_shape=(1, 1, 4)), keras.layers.GRU(4, stateful=True, name="rnn")(inp))
    k3.save(tmp_path / "k3.keras")
    cases = [  # model, recipe, exit code, what the line says
        (tfk("ok", (1, 1, 4)), "qat", 2, "stage qat does not handle streaming models (stateful layer 'rnn')"),
        (tmp_path / "k3.keras", "prune50", 5, "Keras 3 stateful layer 'rnn' is not converted"),
        (tmp_path / "k3.keras", None, 5, "Keras 3 stateful layer 'rnn' is not converted"),
        (tfk("batch2", (2, 1, 4)), None, 2, "needs a fixed input shape with a batch of 1"),
        # the last GRU returns every timestep: the stateless twin's output is not the last call's
        (tfk("seqs", (1, 1, 4), return_sequences=True), "prune50", 5, "the stateless twin of the streaming model does not reproduce"),
    ]
    for i, (model, recipe, code, says) in enumerate(cases):
        out = tmp_path / f"out{i}"
        rc = main(["build", str(model), "--target", "cortex-m4", "--calib", str(tmp_path / "seq.npz"),
                   *(["--train", str(tmp_path / "seq.npz"), "--recipe", recipe] if recipe else []), "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == code and says in err, (model.name, recipe, rc, err)
        assert "Traceback" not in err and not out.exists()
