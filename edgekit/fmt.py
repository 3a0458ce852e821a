"""The one set of number formats edgekit's tables and messages use."""

from __future__ import annotations

from typing import Any


def fmt_int(v: Any) -> str:
    """``12,345`` (``n/a`` for a missing figure)."""
    return "n/a" if v is None else f"{int(v):,}"


def fmt_num(v: Any, digits: int) -> str:
    """A float with ``digits`` decimals (``n/a`` for a missing figure)."""
    return "n/a" if v is None else f"{float(v):.{digits}f}"


def fmt_pct(v: Any) -> str:
    """A fraction as a percentage, ``0.9698`` -> ``96.98 %`` (``n/a`` for a missing figure)."""
    return "n/a" if v is None else f"{100 * float(v):.2f} %"
