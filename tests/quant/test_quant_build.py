"""`edgekit build --quant ...` end to end: int16x8 on the TFLM host, float16/dynamic for rpi4, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import require_tools

from edgekit.cli import main
from edgekit.tflite_model import read_model


def _build(capsys, *args: str) -> dict:
    rc = main(["build", *args, "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out)


@pytest.fixture(scope="module")
def int16_build(tmp_path_factory, outlier_dir) -> tuple[Path, dict]:
    """``edgekit build --quant int16x8 --codegen`` of the outlier model for cortex-m4: (folder, report)."""
    d, out = outlier_dir, tmp_path_factory.mktemp("int16") / "b"
    args = [str(d / "model.keras"), "-t", "cortex-m4", "--calib", str(d / "calib.npz"), "--eval", str(d / "eval.npz"),
            "--quant", "int16x8", "--codegen", "-o", str(out), "--json"]
    rc = main(["build", *args])
    assert rc == 0
    return out, json.loads((out / "report.json").read_text())


def test_int16x8_for_cortex_m4_runs_on_tflm_within_1_point(int16_build):
    out, rep = int16_build
    assert rep["quantization"]["scheme"] == "int16x8" and rep["quantization"]["calibration"] == "minmax"
    info = read_model(out / "model.tflite")
    assert info.inputs[0].dtype == "int16" and info.outputs[0].dtype == "int16"
    acc = rep["accuracy"]
    assert acc["int8_tflm"] >= acc["float"] - 0.01  # plain int8 loses > 4 points on this model
    assert abs(acc["int8_tflm"] - acc["int8_tflite_ref"]) <= 0.01
    assert rep["agreement"]["deployed_runtime"] == "tflm-host"
    assert rep["memory"]["arena_bytes"] > 0
    # the cost, measured by TFLM: int16 activations take twice the bytes of plain int8's
    cost = rep["quantization"]["cost"]
    assert cost["arena_bytes"] == rep["memory"]["arena_bytes"] > cost["int8_arena_bytes"]
    assert 1.9 <= cost["activation_bytes"] / cost["int8_activation_bytes"] <= 2.0
    assert "int16x8 cost" in (out / "report.md").read_text()
    aot = rep["outputs"]["aot"]
    assert aot["input_dtype"] == "int16" and aot["output_dtype"] == "int16"
    assert (out / "aot" / "edgekit_model.h").read_text().count("_IS_INT16 1") == 2


@pytest.mark.emulator
def test_int16x8_runs_bit_exact_on_edgekits_runtime_on_the_emulator(capsys, int16_build):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    out, rep = int16_build
    # edgekit's C runtime on the emulated Cortex-M4, every output byte against the TFLM interpreter
    # (--require-bit-exact is on by default for microcontrollers: exit 6 on any difference)
    assert main(["verify", str(out), "--emulator", "--json"]) == 0
    em = json.loads(capsys.readouterr().out)
    assert em["outputs_bit_exact"] == 1.0 and em["mismatched_inputs"] == 0 and em["n_inputs"] == 100
    assert em["code"] == "aot/ (as shipped)" and em["machine"] == "mps2-an386"
    assert em["accuracy"] == em["tflm_accuracy"] and em["accuracy"] >= rep["accuracy"]["float"] - 0.01
    assert em["instructions_per_inference"] > 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["runtimes"]["speedup.device"].startswith("emulator.instructions_per_inference: int16x8 on mps2-an386")


@pytest.mark.parametrize("quant", ["float16", "dynamic"])
def test_mcu_targets_refuse_float16_and_dynamic(tmp_path, capsys, outlier_dir, quant):
    d = outlier_dir
    rc = main(["build", str(d / "model.keras"), "-t", "cortex-m4", "--eval", str(d / "eval.npz"), "--quant", quant, "-o", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"--quant {quant} is for Linux targets" in err and "TFLM" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_bad_quant_and_calibration_combinations(tmp_path, capsys, outlier_dir):
    d = outlier_dir
    base = [str(d / "model.keras"), "-t", "rpi4", "--eval", str(d / "eval.npz"), "-o", str(tmp_path / "b")]
    assert main(["build", *base, "--quant", "int4"]) == 2
    assert "unknown quantization scheme" in capsys.readouterr().err
    assert main(["build", *base, "--quant", "int16x8", "--calibration", "mse"]) == 2
    assert "works with --quant int8 only" in capsys.readouterr().err
    assert main(["build", *base, "--calibration", "kl"]) == 2
    assert "unknown method" in capsys.readouterr().err


@pytest.mark.parametrize("quant", ["float16", "dynamic"])
def test_float16_and_dynamic_for_rpi4_report_size_and_accuracy(tmp_path, capsys, outlier_dir, quant):
    d = outlier_dir
    rep = _build(capsys, str(d / "model_clean.keras"), "-t", "rpi4", "--eval", str(d / "eval.npz"),
                 "--quant", quant, "-o", str(tmp_path / "b"))
    assert rep["quantization"]["scheme"] == quant and rep["quantization"]["calibration"] is None
    sizes, acc = rep["sizes"], rep["accuracy"]
    ratio = sizes["float_tflite_bytes"] / sizes["int8_tflite_bytes"]
    assert (1.6 < ratio < 2.2) if quant == "float16" else (ratio > 2.5)  # 2-byte vs 1-byte weights
    assert acc["int8_tflite"] >= acc["float"] - 0.01
    info = read_model(tmp_path / "b" / "model.tflite")
    assert info.inputs[0].dtype == "float32"


@pytest.mark.emulator
@pytest.mark.parametrize("quant", ["float16", "dynamic"])
def test_float16_and_dynamic_run_on_the_emulated_pi(tmp_path, capsys, outlier_dir, quant):
    from conftest import require_tools

    require_tools("qemu-aarch64-static", "apt-get", "dpkg-deb")
    d = outlier_dir
    _build(capsys, str(d / "model_clean.keras"), "-t", "rpi4", "--eval", str(d / "eval.npz"), "--quant", quant, "-o", str(tmp_path / "b"))
    rc = main(["verify", str(tmp_path / "b"), "--emulator", "--inputs", "50", "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    emu = json.loads(captured.out)
    assert emu["machine"].startswith("qemu-aarch64")
    assert abs(emu["accuracy"] - emu["host_accuracy"]) <= 0.04  # float kernels differ in the last bits between x86-64 and aarch64
    assert emu["legs"][0]["max_abs_diff"] < 1e-3


def test_quant_auto_reports_every_attempt_and_lands_within_1_point(tmp_path, capsys, outlier_dir):
    d = outlier_dir
    rep = _build(capsys, str(d / "model.keras"), "-t", "cortex-m4", "--calib", str(d / "calib.npz"),
                 "--eval", str(d / "eval.npz"), "--quant", "auto", "-o", str(tmp_path / "b"))
    auto = rep["quantization"]["auto"]
    first, last = auto["attempts"][0], auto["attempts"][-1]
    assert (first["scheme"], first["calibration"], first["equalized"]) == ("int8", "minmax", False)
    assert first["drop_points"] >= 4
    assert auto["within_max_accuracy_drop"] and last["drop_points"] <= 1.0
    assert all(a["drop_points"] > 1.0 for a in auto["attempts"][:-1])  # it stopped at the first that held
    assert auto["chosen"] == {"scheme": last["scheme"], "calibration": last["calibration"], "equalized": last["equalized"]}
    assert rep["accuracy"]["int8_tflm"] >= rep["accuracy"]["float"] - 0.01


def test_plain_int8_build_names_the_worst_keras_layer_and_a_measured_remedy(tmp_path, capsys, outlier_dir):
    d = outlier_dir
    rep = _build(capsys, str(d / "model.keras"), "-t", "cortex-m4", "--calib", str(d / "calib.npz"),
                 "--eval", str(d / "eval.npz"), "-o", str(tmp_path / "b"))
    dbg = rep["quant_debug"]
    assert len(dbg["worst_layers"]) == 5
    worst = dbg["worst_layers"][0]
    from edgekit.load import load_model

    # the conv reading the outlier channels, by its Keras name (the name's number depends on what the session built before)
    second_conv = load_model(d / "model.keras").model.layers[1].name
    assert worst["layer"] == second_conv
    assert worst["rmse_over_scale"] > 3 > dbg["worst_layers"][1]["rmse_over_scale"]
    helped = [r for r in dbg["remedies"] if r["drop_points"] <= 1.0]
    assert {r["flag"] for r in helped} & {"--recipe equalize", "--quant int16x8"}
    assert second_conv in dbg["hint"] and "use --" in dbg["hint"] and "\n" not in dbg["hint"]
    assert "hint" in (tmp_path / "b" / "report.md").read_text()


def test_no_hint_when_int8_holds_accuracy(tmp_path, capsys, outlier_dir):
    d = outlier_dir
    rep = _build(capsys, str(d / "model_clean.keras"), "-t", "cortex-m4", "--calib", str(d / "calib.npz"),
                 "--eval", str(d / "eval.npz"), "-o", str(tmp_path / "b"))
    assert rep["quant_debug"]["hint"] is None and "remedies" not in rep["quant_debug"]
    from edgekit.load import load_model

    names = {lyr.name for lyr in load_model(d / "model_clean.keras").model.layers}
    assert {w["layer"] for w in rep["quant_debug"]["worst_layers"]} <= names  # the output "Identity" too is named by its layer


def test_debugger_rows_map_to_tf_keras_layer_names(digits_tfkeras_dir):
    from edgekit.data import load_data
    from edgekit.load import load_model
    from edgekit.quant_debug import layer_errors

    loaded = load_model(digits_tfkeras_dir / "model.h5")
    rep = layer_errors(loaded, load_data(digits_tfkeras_dir / "calib.npz"), max_samples=8)
    weighted = [lyr.name for lyr in loaded.model.layers if lyr.weights]
    mapped = [r.layer for r in rep.layers if r.op in ("CONV_2D", "FULLY_CONNECTED")]
    assert mapped == weighted


def test_compare_takes_the_scheme_from_a_recipe(tmp_path, capsys, outlier_dir):
    d = outlier_dir
    recipe = tmp_path / "int16.toml"
    recipe.write_text('description = "int16 activations, no compression"\nquant = "int16x8"\n')
    rc = main(["compare", str(d / "model.keras"), "-t", "cortex-m4", "--calib", str(d / "calib.npz"), "--eval", str(d / "eval.npz"),
               "--recipes", f"none,{recipe}", "--max-eval", "300", "-o", str(tmp_path / "cmp"), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    none, int16 = json.loads(captured.out)["rows"]
    assert int16["recipe"] == "int16"
    assert none["accuracy_lost"] >= 0.04 and int16["accuracy_lost"] <= 0.01
    sub = json.loads((tmp_path / "cmp" / "int16" / "report.json").read_text())
    assert sub["quantization"]["scheme"] == "int16x8" and sub["recipe"]["quant"] == "int16x8"


def test_recipe_quant_keys_are_checked_and_round_trip(tmp_path):
    from edgekit.errors import InputError
    from edgekit.recipe import Recipe

    good = tmp_path / "r.toml"
    good.write_text('quant = "int8"\ncalibration = "percentile:99.9"\n\n[[stage]]\nname = "equalize"\n')
    r = Recipe.load(good)
    assert (r.quant, r.calibration, r.name) == ("int8", "percentile:99.9", "r")
    again = tmp_path / "again.toml"
    again.write_text(r.to_toml())
    assert Recipe.load(again).to_dict() | {"source": None, "name": None} == r.to_dict() | {"source": None, "name": None}
    bad = tmp_path / "bad.toml"
    bad.write_text('calibration = "kl"\n')
    with pytest.raises(InputError, match=f"{bad}: --calibration 'kl': unknown method"):
        Recipe.load(bad)
