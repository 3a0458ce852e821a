"""Tasks other than classification: a binary sigmoid classifier, a regression head and a dense autoencoder.

Each is trained here in seconds, built for cortex-m4 with ``--recipe prune50``
(fine-tuned with its task's loss), verified on LiteRT and the TFLM interpreter,
and judged with its own metrics. Data are synthetic and seeded; limits leave
room for TF's run-to-run differences across CPUs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgekit.cli import main

N_TRAIN, N_EVAL, FEATURES = 1024, 256, 8


def _save(folder: Path, name: str, model) -> Path:
    path = folder / f"{name}.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def task_models(tmp_path_factory) -> Path:
    """binary.keras, regression.keras, anomaly.keras and their train/eval .npz files (Keras 3)."""
    import keras

    d = tmp_path_factory.mktemp("tasks")
    rng = np.random.default_rng(0)
    w = rng.normal(size=FEATURES).astype(np.float32)
    x = rng.normal(size=(N_TRAIN + N_EVAL, FEATURES)).astype(np.float32)

    def dense_net(units_out: int, activation: str | None, inputs: int = FEATURES):
        return keras.Sequential([keras.layers.Input((inputs,)), keras.layers.Dense(32, activation="relu"),
                                 keras.layers.Dense(16, activation="relu"), keras.layers.Dense(units_out, activation=activation)])

    keras.utils.set_random_seed(0)
    yb = (x @ w + 0.5 * np.sin(3 * x[:, 0]) > 0).astype(np.int64)
    m = dense_net(1, "sigmoid")
    m.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    m.fit(x[:N_TRAIN], yb[:N_TRAIN], epochs=30, batch_size=64, verbose=0)
    _save(d, "binary", m)
    np.savez(d / "binary_train.npz", x=x[:N_TRAIN], y=yb[:N_TRAIN])
    np.savez(d / "binary_eval.npz", x=x[N_TRAIN:], y=yb[N_TRAIN:])

    keras.utils.set_random_seed(0)
    yr = (x @ w + np.sin(2 * x[:, 1])).astype(np.float32)[:, None]  # output units: std ~3
    m = dense_net(1, None)
    m.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    m.fit(x[:N_TRAIN], yr[:N_TRAIN], epochs=40, batch_size=64, verbose=0)
    _save(d, "regression", m)
    np.savez(d / "regression_train.npz", x=x[:N_TRAIN], y=yr[:N_TRAIN])
    np.savez(d / "regression_eval.npz", x=x[N_TRAIN:], y=yr[N_TRAIN:])

    # normal data lie near a 3-dimensional subspace of R^16; anomalies do not
    keras.utils.set_random_seed(0)
    basis = rng.normal(size=(3, 16)).astype(np.float32)
    normal = (rng.normal(size=(N_TRAIN + N_EVAL, 3)) @ basis + 0.05 * rng.normal(size=(N_TRAIN + N_EVAL, 16))).astype(np.float32)
    anomalous = rng.normal(scale=float(normal.std()), size=(N_EVAL // 2, 16)).astype(np.float32)
    def autoencoder():
        return keras.Sequential([keras.layers.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(3),
                                 keras.layers.Dense(32, activation="relu"), keras.layers.Dense(16)])

    ae = autoencoder()
    ae.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    ae.fit(normal[:N_TRAIN], normal[:N_TRAIN], epochs=40, batch_size=64, verbose=0)
    uncompiled = autoencoder()  # never compiled, so no loss in the file: fine-tuning falls back to the task's
    uncompiled.set_weights(ae.get_weights())
    _save(d, "anomaly", uncompiled)
    np.savez(d / "anomaly_train.npz", x=normal[:N_TRAIN])  # unlabelled: an autoencoder's targets are its inputs
    ev = np.concatenate([normal[N_TRAIN:N_TRAIN + N_EVAL // 2], anomalous])
    np.savez(d / "anomaly_eval.npz", x=ev, y=np.r_[np.zeros(N_EVAL // 2), np.ones(N_EVAL // 2)].astype(np.int64))
    return d


def _build(capsys, d: Path, name: str, out: Path, *extra: str, recipe: str = "prune50") -> tuple[int, dict, str]:
    rc = main(["build", str(d / f"{name}.keras"), "-t", "cortex-m4", "--eval", str(d / f"{name}_eval.npz"),
               "--train", str(d / f"{name}_train.npz"), "--recipe", recipe, "-o", str(out), *extra, "--json"])
    captured = capsys.readouterr()
    rep = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    return rc, rep, captured.err


def _tflm(rep: dict) -> dict:
    return rep["task"]["metrics"]["int8_tflm"]


def test_binary_classifier_prune50(tmp_path, capsys, task_models):
    rc, rep, err = _build(capsys, task_models, "binary", tmp_path / "b")
    assert rc == 0, err
    assert rep["task"]["name"] == "binary" and rep["task"]["source"] == "inferred: one sigmoid unit"
    det = rep["compression"][0]["details"]
    assert det["task"] == "binary" and det["loss_function"] == "binary_crossentropy (the model's compiled loss)"
    fl, dev = rep["task"]["metrics"]["float"], _tflm(rep)
    assert fl["accuracy"] > 0.85 and fl["auc"] > 0.95, fl  # measured 0.91, 0.98
    assert dev["accuracy"] > 0.85 and dev["auc"] > 0.95, dev  # pruned to 50 % and int8, on the TFLM interpreter
    assert rep["accuracy"]["int8_tflm"] == dev["accuracy"]  # binary accuracy feeds the accuracy gates and summary
    assert rep["task"]["primary_metric"] == "accuracy" and rep["task"]["unit"] == "points"


def test_regression_prune50_and_metric_gate(tmp_path, capsys, task_models):
    rc, rep, err = _build(capsys, task_models, "regression", tmp_path / "r", "--max-metric-drop", "0.5")
    assert rc == 0, err
    assert rep["task"]["name"] == "regression" and rep["task"]["source"] == "inferred: one linear unit"
    fl, dev = rep["task"]["metrics"]["float"], _tflm(rep)
    assert fl["mae"] < 0.35 and fl["rmse"] >= fl["mae"] and fl["max_error"] >= fl["rmse"], fl  # targets' std is ~3
    assert dev["mae"] < fl["mae"] + 0.3, (fl, dev)
    pruned = rep["task"]["metrics"]["float_compressed"]  # the pruned float model: what pruning alone cost
    assert pruned["mae"] < fl["mae"] + 0.3 and abs(dev["mae"] - pruned["mae"]) < 0.1, (pruned, dev)
    gate = rep["verdict"]["gates"][0]
    assert gate["gate"] == "max-metric-drop" and gate["passed"]
    assert abs(gate["value"] - (dev["mae"] - fl["mae"])) < 1e-5  # judged on the TFLM interpreter's outputs, not LiteRT's
    assert rep["accuracy"]["int8_tflm"] is None  # top-1 means nothing for a regression head

    # without targets the drop cannot be measured: the gate fails (exit 6) instead of passing silently
    np.savez(tmp_path / "nolabels.npz", x=np.load(task_models / "regression_eval.npz")["x"])
    rc = main(["build", str(task_models / "regression.keras"), "-t", "cortex-m4", "--eval", str(tmp_path / "nolabels.npz"),
               "-o", str(tmp_path / "r2"), "--max-metric-drop", "0.5"])
    assert rc == 6
    assert "gate max-metric-drop failed: regression mae drop not measured" in capsys.readouterr().err


def test_autoencoder_anomaly_prune50(tmp_path, capsys, task_models):
    rc, rep, err = _build(capsys, task_models, "anomaly", tmp_path / "a")
    assert rc == 0, err
    assert rep["task"]["name"] == "anomaly" and "autoencoder" in rep["task"]["source"]
    det = rep["compression"][0]["details"]  # fitted to reconstruct its (unlabelled) inputs
    assert det["task"] == "anomaly" and det["loss_function"] == "mean_squared_error (the anomaly task's loss)"
    fl, dev = rep["task"]["metrics"]["float"], _tflm(rep)
    assert fl["auc"] > 0.95 and dev["auc"] > 0.93, (fl, dev)
    assert 0 < dev["reconstruction_error"] < 1.3 * fl["reconstruction_error"], (fl, dev)  # measured 1.81 vs 1.74


def test_task_flag_and_label_errors(tmp_path, capsys, task_models):
    # float targets given to a model inferred as a classifier: one line naming the file and what to pass
    np.savez(tmp_path / "floaty.npz", x=np.zeros((4, FEATURES), np.float32), y=np.array([0.5, 1.5, 2.5, 3.5]))
    rc = main(["build", str(task_models / "binary.keras"), "-t", "cortex-m4", "--eval", str(tmp_path / "floaty.npz"),
               "--task", "classification", "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "floaty.npz: eval labels y must be integer class ids" in err and "--task regression" in err
    rc = main(["build", str(task_models / "binary.keras"), "-t", "cortex-m4", "--eval", str(tmp_path / "floaty.npz"),
               "-o", str(tmp_path / "x")])
    assert rc == 2 and "labels y of a binary model must be 0 or 1" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_autoencoder_structured50_removes_channels_and_keeps_detecting(tmp_path, capsys, task_models):
    rc, rep, err = _build(capsys, task_models, "anomaly", tmp_path / "s", recipe="structured50")
    assert rc == 0, err
    det = rep["compression"][0]["details"]
    assert det["params_after"] < 0.6 * det["params_before"], det  # half the hidden units of every Dense but the last
    assert det["fine_tune"]["loss_function"] == "mean_squared_error (the anomaly task's loss)"
    assert _tflm(rep)["auc"] > 0.9, rep["task"]["metrics"]


def test_binary_and_regression_builds_run_bit_exact_on_the_emulated_cortex_m4(tmp_path, capsys, task_models):
    from conftest import require_tools

    require_tools("arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm")
    for name in ("binary", "regression"):
        out = tmp_path / name
        rc, _, err = _build(capsys, task_models, name, out)
        assert rc == 0, err
        rc = main(["verify", str(out), "--emulator", "--json"])
        captured = capsys.readouterr()
        assert rc == 0, captured.err
        emu = json.loads((out / "report.json").read_text())["emulator"]
        assert emu["outputs_bit_exact"] == 1.0 and emu["machine"] == "mps2-an386", emu  # edgekit's C runtime = TFLM, byte for byte


def test_autoencoder_for_rpi4_is_judged_on_litert(tmp_path, capsys, task_models):
    d = task_models
    rc = main(["build", str(d / "anomaly.keras"), "-t", "rpi4", "--eval", str(d / "anomaly_eval.npz"),
               "--max-metric-drop", "2", "-o", str(tmp_path / "pi"), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rep = json.loads(captured.out)
    assert rep["summary"]["accuracy_deployed_runtime"] == "int8_tflite"  # LiteRT is what a Pi runs
    gate = rep["verdict"]["gates"][0]
    assert gate["gate"] == "max-metric-drop" and gate["passed"] and "anomaly auc" in gate["detail"]
    assert rep["task"]["metrics"]["int8_tflite"]["auc"] > 0.93


def test_binary_for_rpi4_structured50_on_the_emulated_pi(tmp_path, capsys, task_models):
    """The binary kind of the conformance tier on the Linux side: structured pruning with the compiled loss, the emulated Pi."""
    from conftest import require_tools

    require_tools("qemu-aarch64-static", "apt-get", "dpkg-deb")
    d, out = task_models, tmp_path / "pi"
    rc = main(["build", str(d / "binary.keras"), "-t", "rpi4", "--eval", str(d / "binary_eval.npz"),
               "--train", str(d / "binary_train.npz"), "--recipe", "structured50", "-o", str(out), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rep = json.loads((out / "report.json").read_text())
    assert rep["task"]["name"] == "binary"
    det = rep["compression"][0]["details"]
    assert det["params_after"] < 0.6 * det["params_before"], det
    assert det["fine_tune"]["loss_function"] == "binary_crossentropy (the model's compiled loss)"
    lite = rep["task"]["metrics"]["int8_tflite"]
    assert lite["accuracy"] > 0.85 and lite["auc"] > 0.93, lite  # half the hidden units, int8, on LiteRT
    rc = main(["verify", str(out), "--emulator", "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    emu = json.loads((out / "report.json").read_text())["emulator"]
    assert emu["machine"] == "qemu-aarch64:cortex-a72" and emu["outputs_bit_exact"] == 1.0, emu
