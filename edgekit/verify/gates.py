"""The user's pass/fail limits (``--max-accuracy-drop``, ``--min-accuracy``, ``--require-bit-exact``, ``--max-metric-drop``) and the verdict.

A gate whose value could not be measured (no labels, no float reference, no
TFLM run) fails: a CI job that asked for a limit must not pass because the
number is missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgekit.errors import InputError, VerificationError
from edgekit.fmt import fmt_pct


@dataclass(frozen=True)
class Gates:
    """Limits a build or verification must meet; None means "not checked".

    ``max_accuracy_drop`` is in percentage points (float minus deployed int8);
    ``min_accuracy`` is a fraction; ``require_bit_exact`` asks every output
    byte to equal the reference runtime's. ``max_metric_drop`` bounds how
    much worse the task's primary metric is on the deployed model than on
    float (:data:`edgekit.verify.metrics.PRIMARY`: points of accuracy or AUC,
    MAE in output units for regression).
    """

    max_accuracy_drop: float | None = None
    min_accuracy: float | None = None
    require_bit_exact: bool = False
    max_metric_drop: float | None = None

    def __post_init__(self) -> None:
        if self.max_accuracy_drop is not None and not 0.0 <= self.max_accuracy_drop <= 100.0:
            raise InputError(f"--max-accuracy-drop must be between 0 and 100 percentage points, not {self.max_accuracy_drop}")
        if self.min_accuracy is not None and not 0.0 <= self.min_accuracy <= 1.0:
            raise InputError(f"--min-accuracy must be a fraction between 0 and 1, not {self.min_accuracy}",
                             "e.g. --min-accuracy 0.95 for 95 %")
        if self.max_metric_drop is not None and not self.max_metric_drop >= 0.0:
            raise InputError(f"--max-metric-drop must be 0 or more, not {self.max_metric_drop}")

    @property
    def any(self) -> bool:
        """True when at least one gate is set."""
        return (self.max_accuracy_drop is not None or self.min_accuracy is not None or self.require_bit_exact
                or self.max_metric_drop is not None)


@dataclass(frozen=True)
class GateResult:
    """One gate: its limit, the measured value (None when it could not be measured), pass or fail."""

    gate: str
    limit: float
    value: float | None
    passed: bool
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """Every gate checked; ``passed`` when all passed (and when none was set)."""

    gates: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        """True when no gate failed."""
        return all(g.passed for g in self.gates)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "gates": [g.to_dict() for g in self.gates]}

    def error(self) -> VerificationError | None:
        """The exit-6 error naming the first failed gate and both numbers, or None."""
        failed = [g for g in self.gates if not g.passed]
        if not failed:
            return None
        more = f" (and {len(failed) - 1} more gate(s) failed)" if len(failed) > 1 else ""
        return VerificationError(f"gate {failed[0].gate} failed: {failed[0].detail}{more}",
                                 "see the verdict section of report.json")



@dataclass(frozen=True)
class MetricDrop:
    """The task's primary metric on float and on the deployed model, and how much worse the deployed one is."""

    task: str
    metric: str
    unit: str  # "points" or "output units"
    reference: float | None
    deployed: float | None
    drop: float | None


def check(gates: Gates, *, float_accuracy: float | None, deployed_accuracy: float | None,
          deployed_runtime: str, bit_exact: float | None, bit_exact_what: str,
          metric_drop: MetricDrop | None = None) -> Verdict:
    """Evaluate ``gates`` against measured numbers (accuracies as fractions, bit-exactness as a fraction of bytes)."""
    results: list[GateResult] = []
    if gates.max_metric_drop is not None:
        limit = gates.max_metric_drop
        m = metric_drop
        if m is None or m.drop is None:
            what = f"{m.task} {m.metric}" if m else "the task's metric"
            results.append(GateResult("max-metric-drop", limit, None, False,
                                      f"{what} drop not measured (needs --eval data with labels and a float model), limit {limit:g}"))
        else:
            results.append(GateResult("max-metric-drop", limit, m.drop, m.drop <= limit,
                                      f"{m.task} {m.metric} {m.drop:g} {m.unit} worse (float {m.reference:.6g}, deployed on "
                                      f"{deployed_runtime} {m.deployed:.6g}), limit {limit:g} {m.unit}"))
    if gates.max_accuracy_drop is not None:
        limit = gates.max_accuracy_drop
        if float_accuracy is None or deployed_accuracy is None:
            results.append(GateResult("max-accuracy-drop", limit, None, False,
                                      f"accuracy drop not measured (needs labelled --eval data and a float model), limit {limit:.2f} points"))
        else:
            drop = round(100 * (float_accuracy - deployed_accuracy), 4)
            results.append(GateResult("max-accuracy-drop", limit, drop, drop <= limit,
                                      f"{drop:.2f} points lost (float {fmt_pct(float_accuracy)}, int8 on {deployed_runtime} "
                                      f"{fmt_pct(deployed_accuracy)}), limit {limit:.2f} points"))
    if gates.min_accuracy is not None:
        limit = gates.min_accuracy
        if deployed_accuracy is None:
            results.append(GateResult("min-accuracy", limit, None, False,
                                      f"accuracy not measured (needs labelled --eval data), limit {fmt_pct(limit)}"))
        else:
            results.append(GateResult("min-accuracy", limit, deployed_accuracy, deployed_accuracy >= limit,
                                      f"accuracy {fmt_pct(deployed_accuracy)} on {deployed_runtime}, limit {fmt_pct(limit)}"))
    if gates.require_bit_exact:
        if bit_exact is None:
            results.append(GateResult("require-bit-exact", 1.0, None, False, f"bit-exactness not measured ({bit_exact_what})"))
        else:
            results.append(GateResult("require-bit-exact", 1.0, bit_exact, bit_exact == 1.0,
                                      f"{fmt_pct(bit_exact)} of output bytes identical ({bit_exact_what}), limit 100.00 %"))
    return Verdict(tuple(results))
