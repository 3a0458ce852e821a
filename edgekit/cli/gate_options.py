"""The gate flags shared by ``build``, ``verify`` and ``compare`` (see :mod:`edgekit.verify.gates`)."""

from __future__ import annotations

from typing import Callable

import click

from edgekit.verify.gates import Gates


def gate_options(bit_exact_default: str, *, metric_drop: bool = False) -> Callable:
    """Add ``--max-accuracy-drop``, ``--min-accuracy`` and ``--require-bit-exact/--no-require-bit-exact`` to a command.

    ``bit_exact_default`` is only the help text; the default itself is None
    ("the command decides") so each command can pick its own. ``metric_drop``
    also adds ``--max-metric-drop`` (commands that measure the task's metrics).
    """

    def deco(f: Callable) -> Callable:
        if metric_drop:
            f = click.option("--max-metric-drop", type=float, metavar="DROP",
                             help="Fail (exit 6) when the task's metric is worse on the deployed model than on float by more than this: "
                                  "points of accuracy (classification, binary), of AUC (anomaly), or MAE in output units (regression).")(f)
        f = click.option("--require-bit-exact/--no-require-bit-exact", "require_bit_exact", default=None,
                         help=f"Fail (exit 6) unless every output byte equals the reference runtime's [default: {bit_exact_default}].")(f)
        f = click.option("--min-accuracy", type=float, metavar="FRACTION",
                         help="Fail (exit 6) when the deployed int8 accuracy is below this fraction (e.g. 0.95).")(f)
        f = click.option("--max-accuracy-drop", type=float, metavar="POINTS",
                         help="Fail (exit 6) when float minus deployed int8 accuracy exceeds this many percentage points.")(f)
        return f

    return deco


def make_gates(max_accuracy_drop: float | None, min_accuracy: float | None, require_bit_exact: bool | None,
               bit_exact_default: bool, max_metric_drop: float | None = None) -> Gates:
    """The Gates for the flags given (``require_bit_exact`` None means the command's default)."""
    return Gates(max_accuracy_drop=max_accuracy_drop, min_accuracy=min_accuracy,
                 require_bit_exact=bit_exact_default if require_bit_exact is None else require_bit_exact,
                 max_metric_drop=max_metric_drop)
