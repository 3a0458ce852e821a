"""A TensorFlow Lite Micro source tree given as ``TFLM_DIR``: where it is, which commit, whether it can build.

edgekit builds TFLM from the user's own checkout, exactly as the emitted
``tflm/`` project's Makefile does. A checkout is usable offline only when
TFLM's third-party code is already laid out in
``tensorflow/lite/micro/tools/make/downloads/``: otherwise TFLM's Makefile
starts downloading it while it parses (``pigweed``, ``cmsis``, ``cmsis_nn``
first), and fails without network access. This module checks for each one
before any build starts, so the user gets one line naming what is missing
instead of a git or wget error from deep inside TFLM's Makefile.

Note: TFLM's own ``tensorflow/lite/micro/tools/make/.gitignore`` ignores
``downloads``, so committing a prepared checkout to git silently drops them.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import ToolchainError

DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
VARIANTS = ("reference", "cmsis_nn")

# A file that marks a TFLM checkout (the interpreter every build compiles).
_TREE_MARKER = "tensorflow/lite/micro/micro_interpreter.h"
_MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"

# What each kernel variant needs from the downloads folder for a Cortex-M build
# (cortex_m_generic): one file per dependency, the one its headers are found by.
# pigweed and cmsis are only checked for existence by TFLM's download scripts,
# but a missing folder makes the Makefile try to fetch them.
_NEEDED: dict[str, tuple[tuple[str, str], ...]] = {
    "reference": (
        ("flatbuffers", "flatbuffers/include/flatbuffers/flatbuffers.h"),
        ("gemmlowp", "gemmlowp/fixedpoint/fixedpoint.h"),
        ("ruy", "ruy/ruy/profiler/instrumentation.h"),
        ("kissfft", "kissfft/kiss_fft.h"),
        ("pigweed", "pigweed"),
        ("CMSIS_6", "cmsis/CMSIS/Core/Include/cmsis_compiler.h"),
    ),
    "cmsis_nn": (("CMSIS-NN", "cmsis_nn/Include/arm_nnfunctions.h"),),
}
_COMMIT = re.compile(r"\b([0-9a-f]{40})\b")


@dataclass(frozen=True)
class TflmTree:
    """A TFLM checkout that has what a Cortex-M build of ``variants`` needs."""

    root: Path
    commit: str  # 40 hex digits
    commit_source: str  # where the commit was read: "git" or "PROVENANCE.md"
    variants: tuple[str, ...]


def tflm_dir_from(path: str | os.PathLike[str] | None) -> Path:
    """The TFLM checkout to use: ``path`` if given, else ``$TFLM_DIR``; ToolchainError (exit 7) if neither."""
    chosen = path if path not in (None, "") else os.environ.get("TFLM_DIR")
    if not chosen:
        raise ToolchainError(
            "no TFLM source tree given",
            "pass --tflm-dir /path/to/tflite-micro or set TFLM_DIR (a checkout of github.com/tensorflow/tflite-micro)",
        )
    return Path(chosen).expanduser()


def open_tflm_tree(path: str | os.PathLike[str] | None, variants: tuple[str, ...] = VARIANTS) -> TflmTree:
    """Check that ``path`` (or ``$TFLM_DIR``) is a TFLM checkout that can build ``variants`` offline.

    Raises ToolchainError (exit 7) with one line naming the folder and what is
    wrong: not a folder, not a TFLM checkout, no readable commit, or the
    third-party downloads a variant needs are missing (each one named).
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown TFLM kernel variant(s) {unknown}; known: {VARIANTS}")
    root = tflm_dir_from(path)
    if not root.is_dir():
        raise ToolchainError(f"TFLM_DIR {root}: no such folder", "pass the folder of a tflite-micro checkout")
    if not (root / _TREE_MARKER).is_file() or not (root / _MAKEFILE).is_file():
        raise ToolchainError(
            f"TFLM_DIR {root}: not a tflite-micro checkout (no {_TREE_MARKER} or {_MAKEFILE})",
            "pass the top folder of a clone of github.com/tensorflow/tflite-micro",
        )
    missing = [name for v in variants for name, rel in _NEEDED[v] if not (root / DOWNLOADS / rel).exists()]
    if missing:
        raise ToolchainError(
            f"TFLM_DIR {root}: TFLM's third-party code is missing from {DOWNLOADS}/: {', '.join(missing)}",
            "run `make -f tensorflow/lite/micro/tools/make/Makefile TARGET=cortex_m_generic TARGET_ARCH=cortex-m4 "
            "OPTIMIZED_KERNEL_DIR=cmsis_nn third_party_downloads` once in it with network access, "
            "or pass a checkout that has them (note: TFLM's .gitignore drops that folder from git)",
        )
    commit, source = _commit_of(root)
    return TflmTree(root=root.resolve(), commit=commit, commit_source=source, variants=tuple(variants))


def _commit_of(root: Path) -> tuple[str, str]:
    """The checkout's commit: git's HEAD, else the one a PROVENANCE.md beside the sources names."""
    if (root / ".git").exists():
        proc = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
        if proc.returncode == 0 and _COMMIT.fullmatch(proc.stdout.strip()):
            return proc.stdout.strip(), "git"
    provenance = root / "PROVENANCE.md"
    if provenance.is_file():
        match = _COMMIT.search(provenance.read_text(errors="replace"))
        if match:
            return match.group(1), "PROVENANCE.md"
    raise ToolchainError(
        f"TFLM_DIR {root}: cannot tell which TFLM commit it is (not a git checkout, no PROVENANCE.md naming one)",
        "pass a git clone of tflite-micro; edgekit keys its cached TFLM builds by commit",
    )
