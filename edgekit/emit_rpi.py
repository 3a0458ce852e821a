"""Raspberry Pi output: the runner and its requirements beside ``model.tflite``."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgekit.resources import templates_dir

RUNNER_FILES = ("run.py", "requirements.txt")


def emit_rpi(folder: Path) -> dict[str, str]:
    """Copy ``run.py`` (LiteRT, falling back to tflite_runtime) and ``requirements.txt`` into ``folder``."""
    src = templates_dir() / "rpi"
    for name in RUNNER_FILES:
        shutil.copyfile(src / name, folder / name)
    return {"runner": "run.py", "requirements": "requirements.txt"}
