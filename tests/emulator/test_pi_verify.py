"""`edgekit build --target rpi*` then `edgekit verify OUT --emulator`: the build's own run.py on emulated aarch64."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tools

from edgekit.cli import main
from edgekit.resources import templates_dir
from edgekit.targets import get_target

RUNNER = templates_dir() / "rpi" / "run.py"

pytestmark = pytest.mark.emulator


def _tools() -> None:
    require_tools("qemu-aarch64-static", "apt-get", "dpkg-deb")


def _build(capsys, model: Path, data: Path, out: Path, target: str = "rpi4") -> dict:
    rc = main(["build", str(model), "--target", target, "--calib", str(data / "calib.npz"),
               "--eval", str(data / "eval.npz"), "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads((out / "report.json").read_text())


def _verify(capsys, out: Path, *extra: str) -> dict:
    rc = main(["verify", str(out), "--emulator", "--json", *extra])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out)


@pytest.fixture(scope="module")
def digits_build(digits_dir, tmp_path_factory) -> Path:
    """The digits CNN built for rpi4 by `edgekit build` (once for the module)."""
    _tools()
    out = tmp_path_factory.mktemp("pi_digits") / "rpi4"
    rc = main(["build", str(digits_dir / "model.keras"), "--target", "rpi4", "--calib", str(digits_dir / "calib.npz"),
               "--eval", str(digits_dir / "eval.npz"), "--out", str(out), "--json"])
    assert rc == 0
    return out


def _copy_build(src: Path, dst: Path, **report_changes) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("emulator"))
    report = json.loads((dst / "report.json").read_text())
    report.update(report_changes)
    (dst / "report.json").write_text(json.dumps(report))
    return dst


def test_digits_cnn_on_emulated_pi4_is_bit_exact_with_host_litert(digits_build, capsys):
    built = json.loads((digits_build / "report.json").read_text())
    section = _verify(capsys, digits_build, "--inputs", "1000")
    assert section["machine"] == "qemu-aarch64:cortex-a72" and section["emulated"] is True
    assert section["inputs"] == "eval" and section["n_inputs"] == built["verified_on"]["samples"] == 597
    assert section["outputs_bit_exact"] == 1.0 and section["mismatched_inputs"] == 0
    assert section["accuracy"] == section["host_accuracy"] == built["accuracy"]["int8_tflite"]
    assert section["accuracy"] > 0.9
    (leg,) = section["legs"]
    assert (leg["runtime"], leg["kernels"], leg["reference"]) == ("litert", "default", "litert-default (x86-64 host)")
    assert leg["runtime_version"] == "2.3.0" and leg["max_abs_diff"] == 0.0
    assert section["emulated_latency_ms"] > 0 and "not a Raspberry Pi benchmark" in section["latency_note"]
    assert section["qemu"].startswith("qemu-aarch64 version")
    assert json.loads((digits_build / "report.json").read_text())["emulator"] == section
    # the runner really ran on the eval floats: its own quantization gave the host's int8 outputs
    with np.load(digits_build / "emulator" / "inputs.npz") as data:
        assert data["x"].dtype == np.float32 and len(data["y"]) == 597
    assert np.load(digits_build / "emulator" / "emulated-litert-default-cortex-a72.npy").dtype == np.int8


def _keras3_model(digits_dir: Path, path: Path, softmax: bool, residual: bool = True, epochs: int = 12) -> Path:
    import keras

    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    if residual:
        h = keras.layers.Add()([h, keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)])
        h = keras.layers.AveragePooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(10, activation="softmax" if softmax else None)(h)
    model = keras.Model(inp, out)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax))
    with np.load(digits_dir / "train.npz") as d:
        model.fit(d["x"], d["y"], epochs=epochs, batch_size=32, verbose=0)
    model.save(path)
    return path


def test_keras3_model_both_legs_agree_with_the_host_on_the_same_kernels(digits_dir, tmp_path, capsys):
    """A Keras 3 model built here (depthwise conv, residual add, average pool, logits); the litert and tflite_runtime legs."""
    _tools()
    built = _build(capsys, _keras3_model(digits_dir, tmp_path / "resnetish.keras", softmax=False), digits_dir, tmp_path / "out")
    assert {"DEPTHWISE_CONV_2D", "ADD", "AVERAGE_POOL_2D"} <= set(built["ops"]) and "SOFTMAX" not in built["ops"]
    section = _verify(capsys, tmp_path / "out", "--inputs", "597", "--tflite-runtime-leg")
    assert section["n_inputs"] == 597 and section["outputs_bit_exact"] == 1.0 and section["mismatched_inputs"] == 0
    litert, tflite_runtime = section["legs"]
    assert (litert["runtime"], litert["kernels"], litert["bit_exact"]) == ("litert", "default", 1.0)
    assert (tflite_runtime["runtime"], tflite_runtime["runtime_version"], tflite_runtime["kernels"]) == ("tflite_runtime", "2.14.0", "reference")
    assert tflite_runtime["reference"] == "tflite_runtime-ref (x86-64 host)" and tflite_runtime["bit_exact"] == 1.0
    # against the host's LiteRT reference kernels: tflite_runtime 2.14 is a different TFLite release
    assert tflite_runtime["extra"]["vs_litert_ref_max_abs_diff"] <= 1.0
    assert tflite_runtime["accuracy"] == tflite_runtime["host_accuracy"] and litert["accuracy"] == litert["host_accuracy"] > 0.8


def test_int8_softmax_is_the_op_whose_default_kernels_differ_by_one_lsb(digits_dir, tmp_path):
    """LiteRT leaves int8 SOFTMAX to its builtin optimized kernel, which differs between x86 and aarch64;
    the same network without SOFTMAX (all XNNPACK) is bit-exact, and reference kernels are bit-exact with it."""
    _tools()
    from edgekit.convert import convert_int8
    from edgekit.data import load_data
    from edgekit.load import load_model
    from edgekit.pi_emulator.verify import verify_pi_build

    results = {}
    for softmax in (False, True):
        folder = tmp_path / f"softmax-{softmax}"
        folder.mkdir()
        model = _keras3_model(digits_dir, folder / "m.keras", softmax=softmax, residual=False, epochs=4)
        (folder / "model.tflite").write_bytes(convert_int8(load_model(model), load_data(digits_dir / "calib.npz")))
        shutil.copyfile(RUNNER, folder / "run.py")
        (folder / "report.json").write_text(json.dumps({"target": get_target("rpi4").to_dict(), "inputs": {"eval": str(digits_dir / "eval.npz")}}))
        results[softmax] = verify_pi_build(folder, legs=("litert", "litert-ref"), n_inputs=597)
    plain, with_softmax = results[False], results[True]
    assert plain.outputs_bit_exact == 1.0
    default, ref = with_softmax.legs
    assert ref.kernels == "reference" and ref.bit_exact == 1.0
    assert default.kernels == "default" and default.bit_exact >= 0.99 and default.max_abs_diff <= 1.0
    assert default.accuracy == default.host_accuracy
    print(f"int8 SOFTMAX, default kernels: {default.mismatched_inputs} of 597 inputs differ, bit-exact {default.bit_exact:.5f}")


@pytest.mark.shared_models
@pytest.mark.parametrize("name", ["mlperf_tiny/kws_ref_model.tflite", "mlperf_tiny/vww_96_int8.tflite",
                                  "mlperf_tiny/pretrainedResnet_quant.tflite", "mlperf_tiny/ad01_int8.tflite"])
def test_third_party_int8_models_are_bit_exact_on_emulated_pi4(shared_models, tmp_path, name):
    """MLPerf Tiny reference int8 models nobody here trained, on seeded generated inputs (measured: all 1.0)."""
    _tools()
    from edgekit.pi_emulator.verify import verify_pi_build

    shutil.copyfile(shared_models / name, tmp_path / "model.tflite")
    shutil.copyfile(RUNNER, tmp_path / "run.py")
    (tmp_path / "report.json").write_text(json.dumps({"target": get_target("rpi4").to_dict(), "inputs": {"eval": None}}))
    result = verify_pi_build(tmp_path, n_inputs=16)
    assert result.inputs == "generated (seed 0)" and result.n_inputs == 16
    assert result.outputs_bit_exact == 1.0, result.to_dict()


@pytest.mark.parametrize("target, cpu", [("rpi5", "cortex-a76"), ("rpi-zero-2w", "cortex-a53")])
def test_other_pis_run_on_their_own_cpu(digits_build, tmp_path, target, cpu):
    from edgekit.pi_emulator.verify import verify_pi_build

    build = _copy_build(digits_build, tmp_path / target, target=get_target(target).to_dict())
    result = verify_pi_build(build, n_inputs=100).to_dict()
    assert result["machine"] == f"qemu-aarch64:{cpu}"
    assert result["outputs_bit_exact"] == 1.0 and result["n_inputs"] == 100
    assert result["accuracy"] == result["host_accuracy"]


def test_without_eval_data_seeded_generated_inputs_still_check_every_byte(digits_build, tmp_path):
    from edgekit.pi_emulator.verify import verify_pi_build

    report = json.loads((digits_build / "report.json").read_text())
    build = _copy_build(digits_build, tmp_path / "noeval", inputs={**report["inputs"], "eval": None})
    result = verify_pi_build(build, legs=("litert-ref",), n_inputs=64, seed=3)
    assert result.inputs == "generated (seed 3)" and result.accuracy is None and result.n_inputs == 64
    assert result.outputs_bit_exact == 1.0 and result.legs[0].kernels == "reference"
    with np.load(build / "emulator" / "inputs.npz") as data:
        expected = np.random.default_rng(3).integers(-128, 128, size=(64, 8, 8, 1)).astype(np.int8)
        assert np.array_equal(data["x"], expected) and "y" not in data.files


def test_one_hot_labels_verify_like_the_build_read_them(digits_build, digits_dir, tmp_path):
    """One-hot y gives labels, as in the build (it crashed verify before)."""
    from edgekit.pi_emulator.verify import verify_pi_build

    with np.load(digits_dir / "eval.npz") as z:
        x, y = z["x"][:48], z["y"][:48]
    np.savez(tmp_path / "onehot.npz", x=x, y=np.eye(10, dtype=np.float32)[y])
    report = json.loads((digits_build / "report.json").read_text())
    build = _copy_build(digits_build, tmp_path / "onehot", inputs={**report["inputs"], "eval": str(tmp_path / "onehot.npz")})
    result = verify_pi_build(build, legs=("litert-ref",), n_inputs=48)
    assert result.outputs_bit_exact == 1.0 and result.accuracy is not None and result.accuracy > 0.9
    assert result.accuracy == result.host_accuracy


def test_a_changed_runner_is_caught_before_anything_runs(digits_build, tmp_path, capsys):
    build = _copy_build(digits_build, tmp_path / "changed")
    runner = build / "run.py"
    runner.write_text(runner.read_text().replace("def top1_accuracy(", "def top1_accuracy_(", 1))
    rc = main(["verify", str(build), "--emulator", "--inputs", "8"])
    assert rc == 6 and "run.py: shipped file changed since the build" in capsys.readouterr().err
    assert not (build / "emulator").exists()


def test_qemu_default_max_cpu_breaks_xnnpack_which_is_why_the_cpu_is_pinned(digits_build, digits_dir):
    """QEMU 7.2's `max` CPU gives XNNPACK wrong int8 outputs; the pinned cortex-a72 gives the host's."""
    from edgekit.pi_emulator.root import ensure_root
    from edgekit.pi_emulator.run import emulated_env
    from edgekit.verify.runtimes import run_litert
    from edgekit.verify.inputs import quantize
    from edgekit.tflite_model import read_model

    version = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True).stdout
    if not re.search(r"version 7\.2\.", version):
        pytest.skip(f"measured on QEMU 7.2; this is {version.splitlines()[0]}")
    root = ensure_root()
    tflite = (digits_build / "model.tflite").read_bytes()
    with np.load(digits_dir / "eval.npz") as data:
        x = data["x"][:100]
    host = run_litert(tflite, quantize(x, read_model(tflite).inputs[0]))
    np.save(digits_build / "x100.npy", x)
    outs = {}
    for cpu in ("max", "cortex-a72"):
        env = emulated_env(root, "cortex-a72", "litert")
        env["QEMU_CPU"] = cpu
        out = digits_build / f"out-{cpu}.npy"
        proc = subprocess.run(["qemu-aarch64-static", str(root.cpu_root("cortex-a72") / "usr/bin/python3.11"), str(digits_build / "run.py"),
                               str(digits_build / "x100.npy"), "--raw", "--output", str(out)], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-300:]
        outs[cpu] = np.load(out)
    assert np.array_equal(outs["cortex-a72"], host)
    assert (outs["max"] == host).mean() < 0.95


def test_cli_errors_for_a_pi_build_are_one_line(digits_build, tmp_path, capsys, monkeypatch):
    _tools()
    odd = get_target("rpi4").to_dict()
    odd["emulator"] = {**odd["emulator"], "cpu": "cortex-a57"}
    build = _copy_build(digits_build, tmp_path / "odd", target=odd)
    assert main(["verify", str(build), "--emulator"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgekit: error: unsupported emulated Pi CPU 'cortex-a57'; supported: cortex-a53, cortex-a72, cortex-a76")
    assert "\n" not in err

    good = _copy_build(digits_build, tmp_path / "good")
    monkeypatch.setenv("PATH", str(tmp_path))  # no qemu-aarch64-static here
    assert main(["verify", str(good), "--emulator"]) == 7
    assert capsys.readouterr().err.strip() == (
        "edgekit: error: qemu-aarch64-static not found on PATH; emulated Pi verification needs it "
        "(install it with `apt-get install qemu-user-static`, or run docker/install-toolchain.sh)")

    (build / "run.py").unlink()
    assert main(["verify", str(build), "--emulator"]) == 2
    assert capsys.readouterr().err.strip().startswith(f"edgekit: error: {build / 'run.py'}: not found")
