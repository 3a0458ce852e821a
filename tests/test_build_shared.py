"""`edgekit build` on third-party models it did not train (skipped without ../shared/models)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, shared_model

from edgekit.cli import main

pytestmark = pytest.mark.shared_models


def test_mlperf_resnet8_h5_builds_for_stm32f746(tmp_path, shared_models, capsys):
    model = shared_model(shared_models, "mlperf_tiny/pretrainedResnet.h5")
    rng = np.random.default_rng(0)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=rng.random((64, 32, 32, 3), dtype=np.float32))  # CIFAR-10-shaped, in [0, 1)
    out = tmp_path / "resnet"
    rc = main(["build", str(model), "--target", "stm32f746", "--calib", str(calib), "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    r = json.loads(captured.out)
    assert r["model_kind"] == "tf_keras"
    # what TFLM's interpreter reports for the reference int8 ResNet-8 is 55,984 B; ours is the same graph
    assert 40_000 < r["memory"]["arena_bytes"] < 80_000
    assert r["memory"]["flash_bytes"] > r["sizes"]["int8_tflite_bytes"] > 70_000
    assert r["memory"]["fits"] is True
    assert r["verified_on"]["labels"] is False and r["verified_on"]["samples"] == 64
    assert r["agreement"]["int8_vs_float_top1"] is not None
    assert (out / "tflm" / "model_data.cc").is_file()


def test_person_detect_tflite_builds_for_mcu_even_though_litert_refuses_it(tmp_path, shared_models, capsys):
    model = shared_model(shared_models, "tflm/person_detect.tflite")
    rc = main(["build", str(model), "--target", "cortex-m4", "--out", str(tmp_path / "m4"), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    r = json.loads(captured.out)
    # LiteRT 2.3 rejects this model's per-channel quantization metadata; TFLM runs it
    assert r["runtimes"]["accuracy.int8_tflite"].startswith("skipped: LiteRT cannot load this model (quantized_dimension")
    assert r["memory"]["arena_bytes"] == 85_264  # TFLM's own figure for this model on x86
    assert r["verified_on"]["source"] == "generated (seed 0)"
    # on a Pi, LiteRT is the runtime: refusing to load is a verification failure (exit 6)
    rc = main(["build", str(model), "--target", "rpi4", "--out", str(tmp_path / "pi")])
    err = capsys.readouterr().err
    assert rc == 6 and "LiteRT, the runtime of rpi4, cannot load the model: quantized_dimension" in err
    assert not (tmp_path / "pi").exists()


def test_keyword_scrambled_svdf_build_never_takes_edgekit_down(tmp_path, shared_models):
    """TFLM's own SVDF model once aborted the whole process inside LiteRT (exit 134); runtimes now run in children."""
    model = shared_model(shared_models, "tflm/keyword_scrambled.tflite")
    out = tmp_path / "ks"
    proc = subprocess.run([sys.executable, "-m", "edgekit", "build", str(model), "--target", "cortex-m4", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode in (0, 6), proc.stderr  # 6 only when a runtime crashed, and then it is named
    r = json.loads((out / "report.json").read_text())
    assert r["accuracy"]["int8_tflm"] is None and r["verified_on"]["source"] == "generated (seed 0)"
    if proc.returncode == 6:
        assert "crashed" in proc.stderr and r["failures"]
    else:
        assert r["agreement"]["tflm_vs_tflite_bit_exact"] is not None
