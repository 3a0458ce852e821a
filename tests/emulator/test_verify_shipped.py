"""`edgekit verify --emulator` runs what the build shipped: aot/ as written, checked against report.json's hashes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tools

from edgekit.cli import main

pytestmark = [pytest.mark.emulator]

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "examples" / "digits"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Path:
    """The committed digits CNN built with --codegen for cortex-m4, eval labels one-hot."""
    require_tools("arm-none-eabi-gcc", "arm-none-eabi-nm", "qemu-system-arm")
    d = tmp_path_factory.mktemp("shipped")
    with np.load(DIGITS / "eval.npz") as z:
        np.savez(d / "eval_onehot.npz", x=z["x"], y=np.eye(10, dtype=np.float32)[z["y"]])
    out = d / "build"
    rc = main(["build", str(DIGITS / "model.keras"), "--target", "cortex-m4", "--calib", str(DIGITS / "calib.npz"),
               "--eval", str(d / "eval_onehot.npz"), "--out", str(out), "--codegen"])
    assert rc == 0
    return out


def _flip_weights(c_file: Path) -> None:
    """Negate the first ten weights of the first filter array in the generated C."""
    text = c_file.read_text()
    m = re.search(r"static const int8_t \w+\[\d+\] = \{\s*([^}]*)\}", text)
    values = [int(v) for v in m.group(1).replace("\n", " ").split(",") if v.strip()]
    flipped = [max(-127, -v) if i < 10 else v for i, v in enumerate(values)]
    assert flipped != values
    c_file.write_text(text[: m.start(1)] + ", ".join(map(str, flipped)) + text[m.end(1):])


def test_verify_runs_the_shipped_aot_with_one_hot_labels(shipped, capsys):
    report = json.loads((shipped / "report.json").read_text())
    assert "aot/edgekit_model.c" in report["shipped"] and "model.tflite" in report["shipped"]
    assert "report.json" not in report["shipped"]
    rc = main(["verify", str(shipped), "--emulator", "--inputs", "30", "--min-accuracy", "0.8"])
    assert rc == 0, capsys.readouterr().err
    emu = json.loads((shipped / "report.json").read_text())["emulator"]
    assert emu["code"] == "aot/ (as shipped)" and emu["shipped_hashes"] == "checked"
    assert emu["outputs_bit_exact"] == 1.0 and emu["accuracy"] > 0.8  # one-hot y gave labels
    assert [g["gate"] for g in emu["verdict"]["gates"]] == ["min-accuracy", "require-bit-exact"]  # bit-exact on by default
    assert not (shipped / "emulator" / "codegen").exists()  # nothing regenerated
    # the device figure replaces the "no device figure" line once the emulator has measured it
    md = (shipped / "report.md").read_text()
    assert f"{emu['instructions_per_inference']:,} instructions per inference on mps2-an386" in md and "no device figure" not in md


def test_changed_shipped_source_is_caught(shipped, tmp_path, capsys):
    import shutil

    build = tmp_path / "build"
    shutil.copytree(shipped, build)
    _flip_weights(build / "aot" / "edgekit_model.c")
    rc = main(["verify", str(build), "--emulator", "--inputs", "30"])
    err = capsys.readouterr().err
    assert rc == 6 and "aot/edgekit_model.c: shipped file changed since the build" in err
    # without the recorded hash the changed C itself runs, and the bit-exact gate catches it
    report = json.loads((build / "report.json").read_text())
    del report["shipped"]["aot/edgekit_model.c"]
    (build / "report.json").write_text(json.dumps(report))
    rc = main(["verify", str(build), "--emulator", "--inputs", "30"])
    err = capsys.readouterr().err
    assert rc == 6 and "gate require-bit-exact failed" in err
    emu = json.loads((build / "report.json").read_text())["emulator"]
    assert emu["outputs_bit_exact"] < 1.0 and emu["verdict"]["passed"] is False
    assert main(["verify", str(build), "--emulator", "--inputs", "30", "--no-require-bit-exact"]) == 0


def test_npy_eval_data_verifies_without_labels(tmp_path, capsys):
    require_tools("arm-none-eabi-gcc", "arm-none-eabi-nm", "qemu-system-arm")
    with np.load(DIGITS / "eval.npz") as z:
        np.save(tmp_path / "eval.npy", z["x"][:64])
    out = tmp_path / "b"
    rc = main(["build", str(DIGITS / "model.keras"), "--target", "cortex-m4", "--calib", str(DIGITS / "calib.npz"),
               "--eval", str(tmp_path / "eval.npy"), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert main(["verify", str(out), "--emulator", "--inputs", "20"]) == 0, capsys.readouterr().err
    emu = json.loads((out / "report.json").read_text())["emulator"]
    assert emu["inputs"] == "eval" and emu["n_inputs"] == 20 and emu["accuracy"] is None
    assert emu["code"].startswith("generated from model.tflite") and emu["outputs_bit_exact"] == 1.0
