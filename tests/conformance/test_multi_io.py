"""Conformance: a two-input, two-output sensor model (8 + 16 features; a softmax head and a regression head).

Trained here, it goes through everything edgekit does with several inputs and
outputs: data files with one array per input and output, the converter's output
order mapped back to Keras' by name, per-output task metrics in the report, the
gates over every output, compression with ``prune50`` (the model's compiled
losses) and ``structured50`` (the per-output task losses of an uncompiled
model), a ``cortex-m4`` build whose generated C runs bit-exact with the
tflite-micro interpreter on QEMU, and an ``rpi4`` build whose own ``run.py``
runs on emulated aarch64.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tools

from edgekit.cli import main

pytestmark = [pytest.mark.emulator]

N_TRAIN, N_EVAL = 600, 200


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two sensors (8 and 16 features), a 3-class label and a regressed value that need both."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 8)).astype(np.float32)
    b = rng.normal(size=(n, 16)).astype(np.float32)
    cls = ((a[:, 0] + b[:, 0] > 0).astype(np.int64) + (a[:, 1] + b[:, 1] > 1).astype(np.int64))
    reg = (0.8 * a[:, 2] - 0.6 * b[:, 3] + 0.4 * np.maximum(a[:, 4], 0)).astype(np.float32)[:, None]
    return a, b, cls, reg


def _model(seed: int = 0):
    """Keras order: the softmax head ``zclass`` first, ``aval`` second; the converter sorts outputs by name."""
    import keras

    keras.utils.set_random_seed(seed)
    ia, ib = keras.Input((8,), name="accel"), keras.Input((16,), name="gyro")
    # every layer named: Keras' automatic names would shift other tests' in the same process (dense -> dense_3)
    h = keras.layers.Concatenate(name="both")([keras.layers.Dense(32, activation="relu", name="accel_features")(ia),
                                               keras.layers.Dense(32, activation="relu", name="gyro_features")(ib)])
    h = keras.layers.Dense(64, activation="relu", name="hidden")(h)
    model = keras.Model([ia, ib], [keras.layers.Dense(3, activation="softmax", name="zclass")(h),
                                   keras.layers.Dense(1, name="aval")(h)], name="sensor")
    a, b, cls, reg = _data(N_TRAIN, seed=1)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=["sparse_categorical_crossentropy", "mse"])
    model.fit([a, b], [cls, reg], epochs=20, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def sensor(tmp_path_factory) -> Path:
    """The model (compiled and uncompiled copies) and train/eval data with both naming schemes for the arrays."""
    d = tmp_path_factory.mktemp("multi_io")
    import keras

    model = _model()
    model.save(d / "sensor.keras")
    # the same layers and weights without a compile record: fine-tuning must pick the per-output task losses
    keras.Model(model.inputs, model.outputs, name="sensor_bare").save(d / "sensor-bare.keras")
    a, b, cls, reg = _data(N_TRAIN, seed=1)
    np.savez(d / "train.npz", x0=a, x1=b, y0=cls, y1=reg)  # by position
    a, b, cls, reg = _data(N_EVAL, seed=2)
    np.savez(d / "eval.npz", x_accel=a, x_gyro=b, y_zclass=cls, y_aval=reg)  # by name
    return d


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_converted_outputs_are_in_keras_order_found_by_name(sensor):
    """The converter lists ``aval`` first (dict outputs are flattened by sorted name); edgekit's .tflite has Keras' order."""
    from edgekit.convert import convert_float, keras_converter
    from edgekit.load import load_model
    from edgekit.tflite_model import read_model
    from edgekit.verify.runtimes import run_keras_io, run_litert_io

    loaded = load_model(sensor / "sensor.keras")
    assert loaded.input_names == ("accel", "gyro") and loaded.output_names == ("zclass", "aval")
    raw = read_model(bytes(keras_converter(loaded).convert()))  # what the converter alone gives
    assert [o.shape for o in raw.outputs] == [(1, 1), (1, 3)]  # reordered: the case the name mapping exists for
    float_tflite = convert_float(loaded)
    info = read_model(float_tflite)
    assert [(t.name, t.shape) for t in info.inputs] == [("accel", (1, 8)), ("gyro", (1, 16))]
    assert [(t.name, t.shape) for t in info.outputs] == [("zclass", (1, 3)), ("aval", (1, 1))]
    a, b, _, _ = _data(16, seed=3)
    ours = run_litert_io(float_tflite, (a, b))
    keras_out = run_keras_io(loaded.model, (a, b))
    for o, k in zip(ours, keras_out):
        assert np.abs(o.reshape(k.shape) - k).max() < 1e-4


def test_mse_calibration_feeds_each_input_its_own_array(sensor):
    """--calibration mse re-runs the calibrated model: each array must reach the input of its name."""
    from edgekit.calibrate import Calibration
    from edgekit.convert import convert_quantized
    from edgekit.data import load_data
    from edgekit.load import load_model
    from edgekit.tflite_model import read_model
    from edgekit.verify.inputs import quantize
    from edgekit.verify.runtimes import run_litert_io

    loaded = load_model(sensor / "sensor.keras")
    tasks = ("classification", "regression")
    calib = load_data(sensor / "train.npz", "calib", tasks, loaded.input_names, loaded.output_names)
    ev = load_data(sensor / "eval.npz", "eval", tasks, loaded.input_names, loaded.output_names)
    accuracy = {}
    for method in ("minmax", "mse"):
        tfl = convert_quantized(loaded, calib, "int8", Calibration.parse(method))
        info = read_model(tfl)
        assert [t.name for t in info.inputs] == ["accel", "gyro"] and [t.name for t in info.outputs] == ["zclass", "aval"]
        scores = run_litert_io(tfl, tuple(quantize(x, spec) for x, spec in zip(ev.xs, info.inputs)), reference=True)[0]
        accuracy[method] = float((scores.argmax(axis=1) == ev.ys[0]).mean())
    assert accuracy["minmax"] > 0.6 and accuracy["mse"] >= accuracy["minmax"] - 0.05, accuracy


def test_cortex_m4_prune50_build_verifies_bit_exact_on_the_emulator(sensor, tmp_path, capsys):
    """prune50 with the model's compiled losses; per-output metrics; the generated C is bit-exact on QEMU."""
    require_tools("arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm")
    out = tmp_path / "m4"
    rc, _, err = _cli(capsys, "build", str(sensor / "sensor.keras"), "--target", "cortex-m4", "--train", str(sensor / "train.npz"),
                      "--eval", str(sensor / "eval.npz"), "--recipe", "prune50", "--codegen", "--out", str(out), "--json")
    assert rc == 0, err
    rep = json.loads((out / "report.json").read_text())
    fine_tune = rep["compression"][0]["details"]
    assert fine_tune["achieved_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert fine_tune["loss_function"] == "sparse_categorical_crossentropy, mean_squared_error (the model's compiled loss)"
    outputs = rep["task"]["outputs"]
    assert [(o["output"], o["name"], o["source"]) for o in outputs] == [
        ("zclass", "classification", "inferred: softmax head"), ("aval", "regression", "inferred: one linear unit")]
    cls, reg = outputs[0]["metrics"], outputs[1]["metrics"]
    _, _, _, y_reg = _data(N_EVAL, seed=2)
    baseline_mae = float(np.abs(y_reg - y_reg.mean()).mean())  # predicting the mean
    assert cls["int8_tflm"]["accuracy"] > 0.6 and cls["int8_tflm"]["accuracy"] >= cls["float"]["accuracy"] - 0.1
    assert reg["int8_tflm"]["mae"] < 0.6 * baseline_mae and reg["int8_tflm"]["mae"] <= reg["float"]["mae"] + 0.1
    header = (out / "aot" / "edgekit_model.h").read_text()
    assert "#define EDGEKIT_INPUT_COUNT 2" in header and "#define EDGEKIT_OUTPUT0_BYTES 3" in header
    assert "/* input 1: gyro [1, 16] int8" in header and "/* output 1: aval [1, 1] int8" in header

    rc, stdout, err = _cli(capsys, "verify", str(out), "--emulator", "--inputs", "50", "--json")
    assert rc == 0, err
    emu = json.loads(stdout)
    assert emu["outputs_bit_exact"] == 1.0 and emu["mismatched_inputs"] == 0 and emu["n_inputs"] == 50
    assert emu["inputs"] == "eval"
    _assert_emulator_metrics_per_output(emu, min_accuracy=0.5, max_mae_vs_mean=0.8)
    # the terminal names each output's metrics instead of a single "accuracy None"
    rc, stdout, err = _cli(capsys, "verify", str(out), "--emulator", "--inputs", "20")
    assert rc == 0, err
    assert "accuracy None" not in stdout and "output zclass (classification): accuracy " in stdout, stdout
    assert "output aval (regression): mae " in stdout, stdout


def test_rpi4_structured50_build_runs_on_the_emulated_pi(sensor, tmp_path, capsys):
    """structured50 on an uncompiled model fine-tunes with each output's task loss; run.py on emulated aarch64."""
    require_tools("qemu-aarch64-static", "apt-get", "dpkg-deb")
    out = tmp_path / "pi"
    rc, _, err = _cli(capsys, "build", str(sensor / "sensor-bare.keras"), "--target", "rpi4", "--train", str(sensor / "train.npz"),
                      "--eval", str(sensor / "eval.npz"), "--recipe", "structured50", "--out", str(out), "--json")
    assert rc == 0, err
    rep = json.loads((out / "report.json").read_text())
    details = rep["compression"][0]["details"]
    assert details["params_after"] < 0.5 * details["params_before"]
    assert details["fine_tune"]["loss_function"] == ("sparse_categorical_crossentropy, mean_squared_error "
                                                     "(the classification/regression tasks' losses)")
    assert details["fine_tune"]["loss"][-1] < details["fine_tune"]["loss"][0]
    cls, reg = (o["metrics"] for o in rep["task"]["outputs"])
    assert cls["int8_tflite"]["accuracy"] > 0.55
    _, _, _, y_reg = _data(N_EVAL, seed=2)
    assert reg["int8_tflite"]["mae"] < 0.85 * float(np.abs(y_reg - y_reg.mean()).mean())

    rc, stdout, err = _cli(capsys, "verify", str(out), "--emulator", "--inputs", "50", "--json")
    assert rc == 0, err
    emu = json.loads(stdout)
    # the emulated aarch64 XNNPACK differs from the x86 host's by at most 1 LSB on a few bytes (1 of 400 measured)
    assert emu["outputs_bit_exact"] >= 0.97 and emu["legs"][0]["max_abs_diff"] <= 1 and emu["n_inputs"] == 50
    _assert_emulator_metrics_per_output(emu, min_accuracy=0.45, max_mae_vs_mean=1.0)
    # the runner read x_<name>/y_<name> per tensor and wrote one array per output
    with np.load(out / "emulator" / "inputs.npz") as z:
        assert sorted(z.files) == ["x0", "x1", "y0", "y1"]


def _assert_emulator_metrics_per_output(emu: dict, *, min_accuracy: float, max_mae_vs_mean: float) -> None:
    """The emulator's task metrics, per output on its own outputs over the first 50 eval samples; no single accuracy."""
    assert emu["accuracy"] is None and emu["task_metrics"] is None
    assert [(o["output"], o["index"], o["task"]) for o in emu["task_outputs"]] == [
        ("zclass", 0, "classification"), ("aval", 1, "regression")]
    cls, reg = (o["metrics"] for o in emu["task_outputs"])
    _, _, _, y_reg = _data(N_EVAL, seed=2)
    y_reg = y_reg[:50]
    assert cls["accuracy"] > min_accuracy
    assert reg["mae"] < max_mae_vs_mean * float(np.abs(y_reg - y_reg.mean()).mean())


def test_generated_c_api_pointer_per_tensor_and_zero_copy_agree(sensor, tmp_path):
    """``edgekit_invoke_with`` (one pointer per tensor) and ``edgekit_input/output(ctx, i)`` give the packed invoke's bytes."""
    import shutil

    from edgekit.aot import generate, generated_inputs
    from edgekit.convert import convert_quantized
    from edgekit.data import load_data
    from edgekit.load import load_model

    require_tools("gcc")
    loaded = load_model(sensor / "sensor.keras")
    calib = load_data(sensor / "train.npz", "calib", ("classification", "regression"), loaded.input_names, loaded.output_names)
    tfl = convert_quantized(loaded, calib)
    generate(tfl, tmp_path / "code")
    a, b = generated_inputs(tfl, 4, seed=5)
    (tmp_path / "in.bin").write_bytes(np.concatenate([a.reshape(4, -1), b.reshape(4, -1)], axis=1).tobytes())
    (tmp_path / "main.c").write_text(r"""
#include <stdio.h>
#include <string.h>
#include "edgekit_model.h"
static union { int32_t a; int8_t b[EDGEKIT_ARENA_BYTES]; } arena;
int main(int argc, char **argv) {
    FILE *f = fopen(argv[1], "rb");
    int8_t in[EDGEKIT_INPUT_BYTES], packed[EDGEKIT_OUTPUT_BYTES], a0[EDGEKIT_OUTPUT0_BYTES], a1[EDGEKIT_OUTPUT1_BYTES];
    edgekit_context ctx = { arena.b, EDGEKIT_ARENA_BYTES };
    int bad = 0;
    while (fread(in, 1, sizeof in, f) == sizeof in) {
        if (edgekit_invoke(in, packed)) return 2;
        const int8_t *ins[2] = { in, in + EDGEKIT_INPUT0_BYTES };
        int8_t *outs[2] = { a0, a1 };
        if (edgekit_invoke_with(&ctx, ins, outs)) return 3;
        bad += memcmp(packed, a0, sizeof a0) != 0 || memcmp(packed + sizeof a0, a1, sizeof a1) != 0;
        memcpy(edgekit_input(&ctx, 0), in, EDGEKIT_INPUT0_BYTES);
        memcpy(edgekit_input(&ctx, 1), in + EDGEKIT_INPUT0_BYTES, EDGEKIT_INPUT1_BYTES);
        if (edgekit_invoke_in_arena(&ctx)) return 4;
        bad += memcmp(edgekit_output(&ctx, 0), a0, sizeof a0) != 0 || memcmp(edgekit_output(&ctx, 1), a1, sizeof a1) != 0;
        if (edgekit_input(&ctx, 2) != 0 || edgekit_output(&ctx, -1) != 0) return 5;
    }
    printf("mismatches %d\n", bad);
    return bad != 0;
}
""")
    code = sorted(str(p) for p in (tmp_path / "code").glob("*.c"))
    cc = shutil.which("gcc")
    subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", f"-I{tmp_path / 'code'}", *code,
                    str(tmp_path / "main.c"), "-o", str(tmp_path / "api")], check=True)
    r = subprocess.run([str(tmp_path / "api"), str(tmp_path / "in.bin")], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "mismatches 0", r.stdout + r.stderr


@pytest.mark.parametrize("arrays, message", [
    (lambda a, b: {"x0": a}, "no array x1 (or x_gyro) for input 1 (gyro)"),
    (lambda a, b: {"x0": a, "x1": b[:, :12]}, "array x1 (input gyro) has samples of shape 12, but the model expects 16"),
    (lambda a, b: {"x": a}, "the model has 2 inputs (accel, gyro), but the calib data holds one array x"),
    (lambda a, b: {"x0": a, "x_accel": a, "x1": b}, "calib data holds both x0 and x_accel for input 0 (accel); keep one"),
    (lambda a, b: {"x0": a, "x1": b, "y": np.zeros(len(a))}, "the model has 2 outputs (zclass, aval); one array y is ambiguous"),
    (lambda a, b: {"x0": np.stack([a] * 3, axis=1), "x1": b},
     "calib holds sequences of calls [N, T, ...], which edgekit runs only for models with one input and one output"),
])
def test_missing_or_misshaped_arrays_are_one_line_input_errors(sensor, tmp_path, capsys, arrays, message):
    """Exit 2, one line naming the file and the array, nothing written."""
    a, b, _, _ = _data(32, seed=4)
    bad = tmp_path / "calib.npz"
    np.savez(bad, **arrays(a, b))
    out = tmp_path / "out"
    rc, _, err = _cli(capsys, "build", str(sensor / "sensor.keras"), "--target", "cortex-m4", "--calib", str(bad), "--out", str(out))
    assert rc == 2
    lines = [ln for ln in err.splitlines() if not ln.endswith(" ...")]  # the progress lines
    assert len(lines) == 1
    line = lines[0]
    assert str(bad) in line and message in line
    assert "Traceback" not in err and not out.exists()


def test_gates_judge_every_output_and_name_the_worst():
    """--max-metric-drop over both outputs; --max-accuracy-drop over the outputs that have an accuracy."""
    from edgekit.verify.gates import Gates
    from edgekit.verify.host import verdict_for

    def report(cls_deployed: float, mae_deployed: float) -> dict:
        return {
            "summary": {"accuracy_deployed_runtime": "int8_tflm"},
            "agreement": {"deployed_runtime": "tflm-host", "tflm_vs_tflite_bit_exact": 1.0},
            "accuracy": {},
            "task": {"name": "per output", "outputs": [
                {"output": "zclass", "name": "classification", "metrics": {"float": {"accuracy": 0.90}, "int8_tflm": {"accuracy": cls_deployed}}},
                {"output": "aval", "name": "regression", "metrics": {"float": {"mae": 0.20}, "int8_tflm": {"mae": mae_deployed}}},
            ]},
        }

    ok = verdict_for(report(0.895, 0.21), Gates(max_metric_drop=1.0, max_accuracy_drop=1.0))
    assert ok.passed and len(ok.gates) == 2
    regression_worse = verdict_for(report(0.895, 1.5), Gates(max_metric_drop=1.0, max_accuracy_drop=1.0))
    err = regression_worse.error().one_line()
    assert "gate max-metric-drop failed: output aval: regression mae 1.3 output units worse" in err
    both = verdict_for(report(0.80, 1.5), Gates(max_metric_drop=1.0, max_accuracy_drop=1.0))
    failed = {g.gate: g.detail for g in both.gates if not g.passed}
    assert failed["max-metric-drop"].startswith("output zclass: classification accuracy 10 points worse")
    assert failed["max-accuracy-drop"].startswith("output zclass: 10.00 points lost")
