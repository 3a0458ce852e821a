"""Conformance: a small convolutional autoencoder, from Keras to a verified deployment.

Conv2D stride-2 encoder (with LeakyReLU), a Conv2DTranspose + bilinear UpSampling2D
decoder back to 16x16x1, trained here for a few epochs on smooth two-blob images
(normal) and judged on blobs against noise (anomalous). The task is inferred
(output shape = input shape -> anomaly). Built for cortex-m4 with ``prune50`` and
``--codegen`` (edgekit's C runtime: TRANSPOSE_CONV, RESIZE_BILINEAR, LEAKY_RELU),
verified on QEMU mps2-an386 bit-exact with tflite-micro; built for rpi4 with
``structured50`` and verified on the emulated Pi. Both fine-tune with the model's
compiled MSE loss. Limits leave room for TF's run-to-run differences across CPUs
(measured: AUC 1.0 everywhere, reconstruction error 0.037 float, 0.038 int8).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tools

from edgekit.cli import main

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

N_TRAIN, N_EVAL = 768, 128
AE_OPS = {"CONV_2D", "LEAKY_RELU", "TRANSPOSE_CONV", "RESIZE_BILINEAR"}


def _blobs(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` 16x16x1 images of two Gaussian blobs at random places and widths, values in [0, ~1.1]."""
    yy, xx = np.mgrid[0:16, 0:16].astype(np.float32)
    c = rng.uniform(3, 13, size=(n, 2, 2)).astype(np.float32)
    s = rng.uniform(2.0, 3.5, size=(n, 2)).astype(np.float32)
    img = sum(np.exp(-((yy - c[:, k, 0, None, None]) ** 2 + (xx - c[:, k, 1, None, None]) ** 2)
                     / (2 * s[:, k, None, None] ** 2)) for k in range(2))
    return img[..., None].astype(np.float32)


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory) -> Path:
    """ae.keras (compiled with MSE), train.npz (normal images, no labels), eval.npz (half normal, half noise; y = 1 anomalous)."""
    import keras

    d = tmp_path_factory.mktemp("autoencoder")
    rng = np.random.default_rng(0)
    normal = _blobs(rng, N_TRAIN + N_EVAL // 2)
    noise = np.clip(rng.normal(0.3, 0.3, size=(N_EVAL // 2, 16, 16, 1)), 0, 1.2).astype(np.float32)
    keras.utils.set_random_seed(0)
    L = keras.layers
    model = keras.Sequential([
        L.Input((16, 16, 1)),
        L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="enc1"),
        L.Conv2D(8, 3, strides=2, padding="same", name="enc2"), L.LeakyReLU(negative_slope=0.1, name="leaky"),
        L.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu", name="dec1"),
        L.UpSampling2D(2, interpolation="bilinear", name="up"),
        L.Conv2D(1, 3, padding="same", name="dec2"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    model.fit(normal[:N_TRAIN], normal[:N_TRAIN], epochs=8, batch_size=32, verbose=0)
    model.save(d / "ae.keras")
    np.savez(d / "train.npz", x=normal[:N_TRAIN])
    np.savez(d / "eval.npz", x=np.concatenate([normal[N_TRAIN:], noise]),
             y=np.r_[np.zeros(N_EVAL // 2), np.ones(N_EVAL // 2)].astype(np.int64))
    return d


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err


def _build(capsys, d: Path, target: str, recipe: str, out: Path, *extra: str) -> dict:
    rc, err = _run(capsys, ["build", str(d / "ae.keras"), "-t", target, "--eval", str(d / "eval.npz"),
                            "--train", str(d / "train.npz"), "--recipe", recipe, "-o", str(out), *extra, "--json"])
    assert rc == 0, err
    rep = json.loads((out / "report.json").read_text())
    assert rep["task"]["name"] == "anomaly" and rep["task"]["source"].startswith("inferred: output shape equals input shape")
    assert set(rep["ops"]) == AE_OPS, rep["ops"]
    m = rep["task"]["metrics"]
    fl, dev = m["float"], m["int8_tflm"]
    assert fl["auc"] > 0.95 and dev["auc"] > 0.95, m  # measured 1.0: blobs reconstruct, noise does not
    assert fl["reconstruction_error"] < 0.06 and dev["reconstruction_error"] < fl["reconstruction_error"] + 0.01, m
    return rep


def _loss_function(rep: dict) -> str:
    det = rep["compression"][0]["details"]
    return (det.get("fine_tune") or det)["loss_function"]


def test_cortex_m4_prune50_codegen_bit_exact_on_qemu(autoencoder, tmp_path, capsys):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    out = tmp_path / "m4"
    rep = _build(capsys, autoencoder, "cortex-m4", "prune50", out, "--codegen")
    assert _loss_function(rep) == "mean_squared_error (the model's compiled loss)"
    assert rep["compression"][0]["details"]["achieved_sparsity"] == pytest.approx(0.5, abs=0.02)
    assert {"ek_transpose_conv.c", "ek_resize.c"} <= {p.name for p in (out / "aot").iterdir()}

    rc, err = _run(capsys, ["verify", str(out), "--emulator"])
    assert rc == 0, err
    emu = json.loads((out / "report.json").read_text())["emulator"]
    assert emu["machine"] == "mps2-an386" and emu["code"] == "aot/ (as shipped)"
    assert emu["outputs_bit_exact"] == 1.0 and emu["mismatched_inputs"] == 0 and emu["n_inputs"] == 100
    assert emu["task"] == "anomaly" and emu["accuracy"] is None  # top-1 of a reconstruction means nothing
    assert emu["task_metrics"]["auc"] > 0.95 and emu["task_metrics"]["reconstruction_error"] < 0.06, emu["task_metrics"]


def test_rpi4_structured50_on_the_emulated_pi(autoencoder, tmp_path, capsys):
    require_tools("qemu-aarch64-static", "apt-get", "dpkg-deb")
    out = tmp_path / "pi"
    rep = _build(capsys, autoencoder, "rpi4", "structured50", out)
    assert _loss_function(rep) == "mean_squared_error (the model's compiled loss)"
    layers = {r["layer"]: r for r in rep["compression"][0]["details"]["per_layer"]}
    assert layers["enc1"]["channels_after"] == 4  # the first encoder conv loses half its filters for real
    assert layers["enc2"]["kept_whole"] == "feeds Conv2DTranspose layer 'dec1'"

    rc, err = _run(capsys, ["verify", str(out), "--emulator"])
    assert rc == 0, err
    emu = json.loads((out / "report.json").read_text())["emulator"]
    assert emu["machine"] == "qemu-aarch64:cortex-a72" and emu["outputs_bit_exact"] == 1.0
    assert emu["task"] == "anomaly" and emu["task_metrics"]["auc"] > 0.95, emu["task_metrics"]
