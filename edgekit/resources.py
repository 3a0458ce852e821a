"""Where edgekit's data folders live, in a source checkout and in an installed wheel.

``targets/`` and ``firmware_templates/`` sit at the repository root; the wheel
copies them to ``edgekit/_data/``. Everything else asks this module.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder ``name`` (``targets`` or ``firmware_templates``), installed or in a checkout."""
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"edgekit data folder {name!r} is missing from this installation")


def targets_dir() -> Path:
    """The folder of board profiles (``*.toml``)."""
    return data_dir("targets")


def templates_dir() -> Path:
    """The folder of jinja2 firmware templates."""
    return data_dir("firmware_templates")
