"""The Raspberry Pi runner (firmware_templates/rpi/run.py) on the host: its contract and its numbers."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.resources import templates_dir

RUNNER = templates_dir() / "rpi" / "run.py"


def _runner_module():
    spec = importlib.util.spec_from_file_location("edgekit_pi_runner", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runner():
    return _runner_module()


@pytest.fixture(scope="module")
def digits_int8(digits_dir, tmp_path_factory) -> Path:
    """The digits CNN as full int8 with int8 input and output, beside a copy of run.py."""
    from edgekit.convert import convert_int8
    from edgekit.data import load_data
    from edgekit.load import load_model

    folder = tmp_path_factory.mktemp("pi_runner")
    (folder / "model.tflite").write_bytes(convert_int8(load_model(digits_dir / "model.keras"), load_data(digits_dir / "calib.npz")))
    (folder / "run.py").write_bytes(RUNNER.read_bytes())
    return folder


def _run(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def test_runner_is_python39_and_never_imports_edgekit():
    tree = ast.parse(RUNNER.read_text(), feature_version=(3, 9))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "edgekit" not in imported
    assert imported - {"__future__", "argparse", "json", "os", "sys", "time", "typing"} == {"numpy", "ai_edge_litert", "tflite_runtime"}
    reqs = (templates_dir() / "rpi" / "requirements.txt").read_text()
    assert "ai-edge-litert==" in reqs and "numpy" in reqs and "tflite-runtime" in reqs


def test_quantize_rounds_half_away_from_zero_and_clips(runner):
    scale, zp = 0.5, -3
    x = np.array([0.25, -0.25, 0.75, -0.75, 1000.0, -1000.0, 0.0], dtype=np.float32)
    q = runner.quantize(x, scale, zp, np.int8)
    # x/scale = 0.5, -0.5, 1.5, -1.5: half away from zero gives 1, -1, 2, -2 (np.round would give 0, -0, 2, -2)
    assert q.dtype == np.int8 and q.tolist() == [-2, -4, -1, -5, 127, -128, -3]
    already = np.array([5, -7], dtype=np.int8)
    assert runner.quantize(already, scale, zp, np.int8) is already
    assert runner.dequantize(np.array([-3, 1], dtype=np.int8), scale, zp).tolist() == [0.0, 2.0]
    with pytest.raises(runner.RunnerError, match="inputs are int32 but the model takes int8"):
        runner.quantize(np.array([1], dtype=np.int32), scale, zp, np.int8)


def test_quantize_matches_tflite_reference_quantize_op_bit_for_bit(tmp_path, runner):
    """A float-input model's own QUANTIZE op (reference kernels) against run.py's quantize on the int8-input twin."""
    import keras

    from edgekit.convert import convert_int8
    from edgekit.data import Dataset
    from edgekit.load import load_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(16, kernel_initializer="identity", use_bias=False)])
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    calib = Dataset(np.random.default_rng(0).uniform(-1, 1, (64, 16)).astype(np.float32), None, None)
    (tmp_path / "int8.tflite").write_bytes(convert_int8(loaded, calib, int8_io=True))
    (tmp_path / "float_io.tflite").write_bytes(convert_int8(loaded, calib, int8_io=False))
    from ai_edge_litert.interpreter import Interpreter

    ip = Interpreter(model_path=str(tmp_path / "int8.tflite"))
    (scale, zp), (oscale, ozp) = ip.get_input_details()[0]["quantization"], ip.get_output_details()[0]["quantization"]
    k = np.arange(-140, 140, dtype=np.float32)
    ties = np.concatenate([(k + np.float32(0.5)) * np.float32(scale), k * np.float32(scale)]).reshape(-1, 16)
    v = ties / np.float32(scale)
    assert (np.round(v) != runner.quantize(ties, scale, zp, np.int8).astype(np.float32) - zp).sum() > 100  # ties really are ties
    theirs = runner.run(str(tmp_path / "float_io.tflite"), ties, reference=True)  # QUANTIZE op inside the model
    ours = runner.dequantize(runner.run(str(tmp_path / "int8.tflite"), ties, reference=True), oscale, ozp)
    assert theirs.dtype == np.float32 and np.array_equal(theirs, ours)


def test_json_line_outputs_and_accuracy_match_host_litert(tmp_path, digits_dir, digits_int8, runner):
    from edgekit.verify.runtimes import run_litert

    proc = _run([str(digits_int8 / "run.py"), str(digits_dir / "eval.npz"), "--json", "--raw", "--output", "raw.npy"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(line) == {"runtime", "runtime_version", "kernels", "n", "accuracy", "mean_latency_ms", "output"}
    assert (line["runtime"], line["kernels"], line["output"]) == ("litert", "default", "raw.npy")
    with np.load(digits_dir / "eval.npz") as data:
        x, y = data["x"], data["y"]
    ip_in = runner.make_interpreter(str(digits_int8 / "model.tflite"))[0].get_input_details()[0]
    expected = run_litert((digits_int8 / "model.tflite").read_bytes(), runner.quantize(x, *ip_in["quantization"], np.int8))
    raw = np.load(tmp_path / "raw.npy")
    assert raw.dtype == np.int8 and np.array_equal(raw, expected)
    assert line["n"] == len(x) == 597
    assert line["accuracy"] == pytest.approx(float((expected.argmax(1) == y).mean()), abs=0) and line["accuracy"] > 0.9
    assert line["mean_latency_ms"] > 0

    # default output: dequantized float32; int8 inputs pass through untouched; reference kernels on request
    np.save(tmp_path / "x_int8.npy", runner.quantize(x[:50], *ip_in["quantization"], np.int8))
    proc = _run([str(digits_int8 / "run.py"), "x_int8.npy", "--output", "deq.npy", "--reference-kernels", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line["kernels"] == "reference" and line["accuracy"] is None and line["n"] == 50
    deq = np.load(tmp_path / "deq.npy")
    ref = run_litert((digits_int8 / "model.tflite").read_bytes(), np.load(tmp_path / "x_int8.npy"), reference=True)
    out = runner.make_interpreter(str(digits_int8 / "model.tflite"))[0].get_output_details()[0]
    assert deq.dtype == np.float32 and np.array_equal(deq, runner.dequantize(ref, *out["quantization"]))


def test_human_summary_and_bad_inputs_exit_2_with_one_line(tmp_path, digits_dir, digits_int8):
    run_py = str(digits_int8 / "run.py")
    proc = _run([run_py, str(digits_dir / "eval.npz")], tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("litert (default kernels): 597 inputs, top-1 accuracy 0.9")
    np.savez(tmp_path / "nox.npz", inputs=np.zeros((2, 8, 8, 1), np.float32))
    np.save(tmp_path / "wrong.npy", np.zeros((2, 5), np.float32))
    cases = {
        ("missing.npz",): "missing.npz: no such input file",
        ("nox.npz",): "nox.npz: the .npz has no array 'x' (found: inputs)",
        ("wrong.npy",): "each input has shape (5,) but the model takes (8, 8, 1)",
        (str(digits_dir / "eval.npz"), "--model", "nope.tflite"): "nope.tflite: no such model file",
    }
    for args, message in cases.items():
        proc = _run([run_py, *args], tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.strip().splitlines()[-1] == f"run.py: error: {message}"
        assert "Traceback" not in proc.stderr


def test_missing_runtime_is_a_one_line_install_hint(tmp_path, digits_dir, digits_int8):
    """This host has no tflite_runtime: asking for it names both ways to install a runtime."""
    if importlib.util.find_spec("tflite_runtime") is not None:
        pytest.skip("tflite_runtime is installed on this host")
    proc = _run([str(digits_int8 / "run.py"), str(digits_dir / "eval.npz"), "--runtime", "tflite_runtime"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "run.py: error: no TFLite runtime found (tflite_runtime); install one with: "
        "pip install ai-edge-litert numpy  (or: pip install tflite-runtime 'numpy<2')"
    )
