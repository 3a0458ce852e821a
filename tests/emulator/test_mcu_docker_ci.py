"""docker/ and examples/ci: the one install script, the images that use it, and
the user CI example's pass/fail logic run on real reports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, require_tools

SCRIPT = REPO / "docker" / "install-toolchain.sh"
WORKFLOW = REPO / "examples" / "ci" / "edgekit-mcu.yml"


@pytest.mark.emulator
def test_install_script_is_idempotent_and_fast_when_installed():
    require_tools("arm-none-eabi-gcc", "qemu-system-arm", "qemu-aarch64-static", "gcc")
    t0 = time.monotonic()
    proc = subprocess.run(["sh", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 5
    assert proc.stdout.startswith("edgekit toolchain already installed: ")


def test_install_script_installs_the_packages_ci_needs_without_recommends():
    text = SCRIPT.read_text()
    for pkg in ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm", "qemu-user-static"):
        assert re.search(rf"PACKAGES=\"[^\"]*\b{pkg}\b", text), pkg
    assert "apt-get install -y -q --no-install-recommends $PACKAGES" in text
    subprocess.run(["sh", "-n", str(SCRIPT)], check=True)  # parses as POSIX sh


def test_dockerfiles_use_the_one_script_and_pin_tflm():
    main = (REPO / "docker" / "Dockerfile").read_text()
    assert "COPY docker/install-toolchain.sh" in main and "RUN edgekit-install-toolchain" in main
    assert "apt-get install" not in main  # only the script installs the toolchain
    tflm = (REPO / "docker" / "Dockerfile.tflm").read_text()
    assert re.search(r"^ARG TFLM_COMMIT=[0-9a-f]{40}$", tflm, re.M)
    assert "FROM ${BASE}" in tflm


def _check_script() -> str:
    text = WORKFLOW.read_text()
    m = re.search(r"python - <<'PY'\n(.*?)\n\s*PY\n", text, re.S)
    assert m, "the workflow's check step is missing"
    lines = m.group(1).splitlines()
    indent = min(len(ln) - len(ln.lstrip()) for ln in lines if ln.strip())
    return "\n".join(ln[indent:] for ln in lines)


def _report(tmp_path: Path, **emu) -> Path:
    section = {"machine": "mps2-an386", "outputs_bit_exact": 1.0, "accuracy": 0.95, "flash_bytes": 90_000,
               "ram_bytes": 20_000, "stack_bytes": 400, "instructions_per_inference": 1_000_000}
    section.update(emu)
    (tmp_path / "build").mkdir(exist_ok=True)
    report = {"target": {"name": "cortex-m4", "flash_bytes": 1_048_576, "ram_bytes": 262_144}, "emulator": section}
    (tmp_path / "build" / "report.json").write_text(json.dumps(report))
    return tmp_path


@pytest.mark.parametrize(
    "emu, env, ok",
    [
        ({}, {}, True),
        ({"ram_bytes": 262_145}, {}, False),
        ({"flash_bytes": 90_000}, {"MAX_FLASH_BYTES": "80000"}, False),
    ],
)
def test_ci_example_fails_on_memory(tmp_path, emu, env, ok):
    cwd = _report(tmp_path, **emu)
    full_env = {"MIN_ACCURACY": "0.90", "MAX_FLASH_BYTES": "", "MAX_RAM_BYTES": "", **env}
    proc = subprocess.run([sys.executable, "-c", _check_script()], cwd=cwd, env=full_env, capture_output=True, text=True)
    assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
    assert ("FAIL " in proc.stdout) == (not ok)


def test_ci_example_gates_accuracy_and_bit_exactness_with_edgekit_flags():
    """Accuracy and bit-exactness are edgekit's own gates (exit 6), not inline Python (tests/verify, tests/emulator/test_verify_shipped.py)."""
    text = WORKFLOW.read_text()
    assert '--max-accuracy-drop "$MAX_ACCURACY_DROP"' in text and '--min-accuracy "$MIN_ACCURACY"' in text
    assert "--no-require-bit-exact" not in text and "--codegen" in text
