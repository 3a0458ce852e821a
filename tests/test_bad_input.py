"""Every kind of bad input gets one line naming the thing and the problem, exit code 2,
no traceback, and no output folder (nor a leftover temporary one)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekit.cli import main


def _build(capsys, out: Path, *args: str) -> tuple[int, str]:
    rc = main(["build", *args, "--out", str(out)])
    err = capsys.readouterr().err
    return rc, err


def _assert_clean_failure(rc: int, err: str, out: Path, *needles: str, code: int = 2) -> None:
    assert rc == code, err
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if l.startswith("edgekit: error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


@pytest.fixture()
def case(tmp_path, digits_dir):
    """(model path, calib path, output folder) with a fresh tmp folder per test."""
    return digits_dir / "model.keras", digits_dir / "calib.npz", tmp_path / "out"


def test_missing_model_file(capsys, case, tmp_path):
    _, calib, out = case
    rc, err = _build(capsys, out, str(tmp_path / "nope.keras"), "--target", "cortex-m4", "--calib", str(calib))
    _assert_clean_failure(rc, err, out, "nope.keras", "model file not found")


def test_missing_data_file(capsys, case, tmp_path):
    model, _, out = case
    rc, err = _build(capsys, out, str(model), "--target", "cortex-m4", "--calib", str(tmp_path / "nocalib.npz"))
    _assert_clean_failure(rc, err, out, "nocalib.npz", "calib file not found")


def test_corrupt_keras_model(capsys, case, tmp_path):
    _, calib, out = case
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"this is not a zip file at all" * 10)
    rc, err = _build(capsys, out, str(bad), "--target", "cortex-m4", "--calib", str(calib))
    _assert_clean_failure(rc, err, out, "bad.keras", "not a valid .keras model file")


def test_truncated_h5_model(capsys, case, tmp_path, digits_tfkeras_dir):
    _, calib, out = case
    full = (digits_tfkeras_dir / "model.h5").read_bytes()
    bad = tmp_path / "half.h5"
    bad.write_bytes(full[: len(full) // 2])
    rc, err = _build(capsys, out, str(bad), "--target", "cortex-m4", "--calib", str(calib))
    _assert_clean_failure(rc, err, out, "half.h5", "cannot load the model")


def test_truncated_tflite_model(capsys, case, tmp_path):
    _, calib, out = case
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 20)
    rc, err = _build(capsys, out, str(bad), "--target", "cortex-m4", "--calib", str(calib))
    _assert_clean_failure(rc, err, out, "cut.tflite", "not a TFLite flatbuffer")


def test_tflite_given_where_data_is_expected(capsys, case, tmp_path):
    model, _, out = case
    tfl = tmp_path / "model.tflite"
    tfl.write_bytes(b"whatever")
    rc, err = _build(capsys, out, str(model), "--target", "cortex-m4", "--calib", str(tfl))
    _assert_clean_failure(rc, err, out, "model.tflite", "this is a model file, but calib data was expected")


def test_data_shape_does_not_match_model(capsys, case, tmp_path):
    model, _, out = case
    f = tmp_path / "wrong.npz"
    np.savez(f, x=np.zeros((10, 28, 28, 1), np.float32))
    rc, err = _build(capsys, out, str(model), "--target", "cortex-m4", "--calib", str(f))
    _assert_clean_failure(rc, err, out, "wrong.npz", "samples have shape 28x28x1, but the model expects 8x8x1")


def test_data_dtype_is_not_numeric(capsys, case, tmp_path):
    model, _, out = case
    f = tmp_path / "strings.npy"
    np.save(f, np.array([["a"] * 8] * 3))
    rc, err = _build(capsys, out, str(model), "--target", "cortex-m4", "--calib", str(f))
    _assert_clean_failure(rc, err, out, "strings.npy", "numbers are expected")


def test_nans_in_data(capsys, case, tmp_path):
    model, calib, out = case
    x = np.load(calib)["x"].copy()
    x[5, 1, 1, 0] = np.nan
    x[7, 0, 0, 0] = np.inf
    f = tmp_path / "nan.npz"
    np.savez(f, x=x)
    rc, err = _build(capsys, out, str(model), "--target", "cortex-m4", "--calib", str(f))
    _assert_clean_failure(rc, err, out, "nan.npz", "2 NaN or infinite values (first in sample 5)")


def test_empty_data(capsys, case, tmp_path):
    model, _, out = case
    f = tmp_path / "empty.npz"
    np.savez(f, x=np.zeros((0, 8, 8, 1), np.float32))
    rc, err = _build(capsys, out, str(model), "--target", "cortex-m4", "--calib", str(f))
    _assert_clean_failure(rc, err, out, "empty.npz", "data is empty")


def test_npz_without_x(capsys, case, tmp_path):
    model, _, out = case
    f = tmp_path / "nox.npz"
    np.savez(f, inputs=np.zeros((3, 8, 8, 1), np.float32))
    rc, err = _build(capsys, out, str(model), "--target", "cortex-m4", "--calib", str(f))
    _assert_clean_failure(rc, err, out, "nox.npz", "no array named 'x' (found: inputs)")


def test_labels_count_mismatch(capsys, case, tmp_path):
    model, _, out = case
    f = tmp_path / "lab.npz"
    np.savez(f, x=np.zeros((4, 8, 8, 1), np.float32), y=np.zeros(3, np.int64))
    rc, err = _build(capsys, out, str(model), "--target", "cortex-m4", "--eval", str(f))
    _assert_clean_failure(rc, err, out, "lab.npz", "4 inputs but 3 labels")


def test_unknown_target(capsys, case):
    model, calib, out = case
    rc, err = _build(capsys, out, str(model), "--target", "esp32-s9", "--calib", str(calib))
    _assert_clean_failure(rc, err, out, "unknown target 'esp32-s9'")


def test_no_calibration_data_refuses_full_int8(capsys, case):
    model, _, out = case
    rc, err = _build(capsys, out, str(model), "--target", "cortex-m4")
    _assert_clean_failure(rc, err, out, "model.keras", "needs calibration data", "--calib", "--eval")


def test_unwritable_output_folder(capsys, digits_dir):
    out = Path("/proc/edgekit-test-out")
    rc = main(["build", str(digits_dir / "model.keras"), "--target", "cortex-m4", "--calib", str(digits_dir / "calib.npz"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "edgekit-test-out: output folder is not writable" in err
    assert not out.exists()


def test_output_parent_is_a_file(capsys, case, tmp_path):
    model, calib, _ = case
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "out"
    rc, err = _build(capsys, out, str(model), "--target", "cortex-m4", "--calib", str(calib))
    assert rc == 2 and "is not an existing folder" in err and "Traceback" not in err


def test_existing_foreign_folder_is_not_replaced(capsys, case):
    model, calib, out = case
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    rc, err = _build(capsys, out, str(model), "--target", "cortex-m4", "--calib", str(calib))
    assert rc == 2 and "holds files edgekit did not write" in err
    assert (out / "precious.txt").read_text() == "keep me"


def test_prune_out_of_range(capsys, case):
    model, calib, out = case
    rc, err = _build(capsys, out, str(model), "--target", "cortex-m4", "--calib", str(calib), "--prune", "1.5")
    _assert_clean_failure(rc, err, out, "--prune must be a sparsity between 0 and 1")


def test_unknown_option_is_a_usage_error(capsys, case):
    model, calib, out = case
    rc = main(["build", str(model), "--target", "cortex-m4", "--frobnicate"])
    err = capsys.readouterr().err
    assert rc == 2 and "No such option '--frobnicate'" in err
