"""Shared fixtures: the digits data and CNNs (trained once per session), the
third-party model folder, and the toolchain requirement switch.

- ``EDGEKIT_SHARED_MODELS`` points at the third-party models (default
  ``../shared/models`` beside the repository); tests needing them skip when absent.
- ``EDGEKIT_REQUIRE_TOOLCHAIN=1`` (set by CI) turns a missing cross-compiler or
  QEMU from a skip into a failure.
- ``EDGEKIT_REQUIRE_SHARED_MODELS=1`` (set under CI by the Makefile) turns a missing
  third-party model folder from a skip into a failure, so lowering regressions
  on those models cannot hide behind skips.
- ``tflm_src`` / ``tflm_dir``: the TFLM source tree (``$TFLM_DIR``, default
  ``../shared/tflm-src``), to read / to build; tests needing it skip when it is
  absent, and fail instead under ``EDGEKIT_REQUIRE_SHARED_MODELS=1``; a tree
  that is present but lacks TFLM's downloads skips ``tflm_dir`` naming them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent


def shared_models_dir() -> Path:
    return Path(os.environ.get("EDGEKIT_SHARED_MODELS", REPO.parent / "shared" / "models"))


def missing_shared(msg: str) -> None:
    """Skip for missing third-party material; fail instead under EDGEKIT_REQUIRE_SHARED_MODELS=1 (set under CI)."""
    if os.environ.get("EDGEKIT_REQUIRE_SHARED_MODELS") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def shared_models() -> Path:
    """The folder of third-party models; skips the test when it is absent."""
    d = shared_models_dir()
    if not d.is_dir():
        msg = f"third-party models not found at {d} (set EDGEKIT_SHARED_MODELS)"
        missing_shared(msg)
    return d


def shared_model(folder: Path, rel: str) -> Path:
    """``folder/rel``; a missing file skips (fails under EDGEKIT_REQUIRE_SHARED_MODELS=1)."""
    path = Path(folder) / rel
    if not path.is_file():
        msg = f"{rel} not in {folder}"
        missing_shared(msg)
    return path


def require_tools(*tools: str) -> None:
    """Skip (or fail under EDGEKIT_REQUIRE_TOOLCHAIN=1) when a command-line tool is missing."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        msg = f"missing tools: {', '.join(missing)} (run docker/install-toolchain.sh)"
        if os.environ.get("EDGEKIT_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


def tflm_dir_path() -> Path:
    return Path(os.environ.get("TFLM_DIR") or REPO.parent / "shared" / "tflm-src")


@pytest.fixture(scope="session")
def tflm_src() -> Path:
    """The TFLM source tree, for tests that only read its sources (its downloads may be missing);
    skips when absent, fails instead under EDGEKIT_REQUIRE_SHARED_MODELS=1."""
    d = tflm_dir_path()
    if not (d / "tensorflow" / "lite" / "micro").is_dir():
        msg = f"TFLM source tree not found at {d} (set TFLM_DIR)"
        missing_shared(msg)
    return d


@pytest.fixture(scope="session")
def tflm_dir() -> Path:
    """A TFLM checkout that can build both kernel variants offline; skips (or fails under
    EDGEKIT_REQUIRE_SHARED_MODELS=1) with edgekit's own message saying what is missing."""
    from edgekit.errors import ToolchainError
    from edgekit.toolchain.tflm_tree import open_tflm_tree

    d = tflm_dir_path()
    try:
        return open_tflm_tree(d).root
    except ToolchainError as exc:
        # Absent is a failure under the switch; present but without TFLM's
        # third-party downloads is a defect of the tree itself (the shared copy
        # lost them to TFLM's own .gitignore), reported as a skip naming it.
        absent = not (d / "tensorflow" / "lite" / "micro").is_dir()
        if absent:
            missing_shared(exc.one_line())
        pytest.skip(exc.one_line())


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """train.npz, calib.npz, eval.npz (x: float32 [N,8,8,1] in [0,1], y: int64) and model.keras (Keras 3)."""
    from edgekit.examples import write_digits_example

    d = tmp_path_factory.mktemp("digits")
    write_digits_example(d, "keras3")
    return d


@pytest.fixture(scope="session")
def digits_tfkeras_dir(tmp_path_factory) -> Path:
    """Same data as ``digits_dir`` with a tf_keras (Keras 2) model saved as model.h5."""
    from edgekit.examples import write_digits_example

    d = tmp_path_factory.mktemp("digits_tfk")
    write_digits_example(d, "tf_keras")
    return d
