"""The digits CNN, generated as C by edgekit, cross-compiled and run on every QEMU
machine of the bundled microcontroller targets: outputs bit-identical with the
tflite-micro interpreter, device measurements within the target's budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_tools

from edgekit.targets import get_target
from edgekit.tflm_host import run_tflm
from edgekit.verify.inputs import quantize
from edgekit.toolchain.mcu_verify import (
    generated_inputs,
    io_quantization,
    run_on_emulator,
    verify_mcu_build,
)

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

# One bundled target per QEMU machine: mps2-an386, netduinoplus2, mps2-an500, mps3-an547.
MACHINE_TARGETS = ["cortex-m4", "stm32f405", "stm32f746", "cortex-m55"]


@pytest.fixture(scope="module", autouse=True)
def _tools():
    require_tools("arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm")


@pytest.fixture(scope="module")
def digits_int8(digits_dir) -> bytes:
    """The digits CNN as full-int8 .tflite with int8 I/O and batch 1, calibrated on the digits calib split."""
    import keras
    import tensorflow as tf

    model = keras.models.load_model(digits_dir / "model.keras")
    calib = np.load(digits_dir / "calib.npz")["x"].astype(np.float32)
    fn = tf.function(lambda x: model(x, training=False))
    conc = fn.get_concrete_function(tf.TensorSpec([1, 8, 8, 1], tf.float32))
    conv = tf.lite.TFLiteConverter.from_concrete_functions([conc], fn)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


@pytest.fixture(scope="module")
def digits_eval_int8(digits_dir, digits_int8) -> tuple[np.ndarray, np.ndarray]:
    inp, _ = io_quantization(digits_int8)
    data = np.load(digits_dir / "eval.npz")
    x = quantize(data["x"][:100], inp).reshape(100, -1)
    return x, data["y"][:100]


@pytest.mark.parametrize("name", MACHINE_TARGETS)
def test_digits_cnn_on_qemu_is_bit_exact_with_tflm(name, digits_int8, digits_eval_int8, tmp_path):
    target = get_target(name)
    x, y = digits_eval_int8
    x = np.concatenate([x, generated_inputs(20, x.shape[1], seed=3)])  # plus out-of-distribution inputs
    ours, dev = run_on_emulator(digits_int8, target, x, tmp_path)
    ref = run_tflm(digits_int8, x)
    np.testing.assert_array_equal(ours, ref.reshape(ours.shape))
    assert (ours[:100].argmax(axis=1) == y).mean() > 0.9
    assert dev.machine == target.emulator.machine and dev.runtime == f"edgekit-qemu:{dev.machine}"
    # ~70k int8 weights live in flash, and all of it is within budget
    assert 70_000 < dev.flash_bytes < target.flash_bytes
    assert dev.arena_bytes is not None and dev.arena_bytes <= dev.sections[".bss"]
    assert dev.ram_bytes == dev.static_ram_bytes + dev.stack_bytes < target.ram_bytes
    assert 0 < dev.stack_bytes < 2048
    assert dev.instructions_per_inference is not None
    assert dev.instructions_min <= dev.instructions_per_inference <= dev.instructions_max
    # a conv net's work does not depend on the input values beyond requantization branches
    assert dev.instructions_max < 1.05 * dev.instructions_min


def _build_dir(tmp_path, digits_int8, target: str, eval_path) -> str:
    d = tmp_path / "build"
    d.mkdir()
    (d / "model.tflite").write_bytes(digits_int8)
    report = {"target": get_target(target).to_dict(), "inputs": {"eval": str(eval_path) if eval_path else None}}
    (d / "report.json").write_text(json.dumps(report))
    return d


def test_verify_mcu_build_with_eval_data_reports_accuracy(digits_dir, digits_int8, tmp_path):
    res = verify_mcu_build(_build_dir(tmp_path, digits_int8, "nrf52840", digits_dir / "eval.npz"), n_inputs=50)
    assert res.machine == "mps2-an386"
    assert res.outputs_bit_exact == 1.0 and res.mismatched_inputs == 0
    assert res.n_inputs == 50 and res.inputs == "eval"
    assert res.accuracy == res.tflm_accuracy and res.accuracy > 0.9
    d = res.to_dict()
    for key in ("machine", "outputs_bit_exact", "accuracy", "flash_bytes", "ram_bytes", "stack_bytes",
                "instructions_per_inference"):
        assert key in d
    assert (tmp_path / "build" / "emulator" / "firmware" / "firmware.elf").is_file()


def test_verify_mcu_build_without_eval_uses_seeded_inputs(digits_int8, tmp_path):
    res = verify_mcu_build(_build_dir(tmp_path, digits_int8, "stm32f405", None), n_inputs=30, seed=7)
    assert res.inputs == "generated (seed 7)" and res.n_inputs == 30
    assert res.accuracy is None
    assert res.outputs_bit_exact == 1.0


def test_edgekit_verify_emulator_cli_adds_the_emulator_section(digits_dir, tmp_path, capsys):
    from edgekit.cli import main

    out = tmp_path / "build"
    rc = main(["build", str(digits_dir / "model.keras"), "--target", "cortex-m4", "--calib", str(digits_dir / "calib.npz"),
               "--eval", str(digits_dir / "eval.npz"), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    rc = main(["verify", str(out), "--emulator", "--inputs", "40"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "emulator mps2-an386: outputs bit-exact 1.0" in captured.out
    emu = json.loads((out / "report.json").read_text())["emulator"]
    assert emu["runtime"] == "edgekit-qemu:mps2-an386" and emu["n_inputs"] == 40 and emu["inputs"] == "eval"
    assert emu["outputs_bit_exact"] == 1.0 and emu["accuracy"] > 0.9
    assert 0 < emu["ram_bytes"] < 262_144 and 0 < emu["flash_bytes"] < 1_048_576
    assert emu["instructions_per_inference"] > 10_000
