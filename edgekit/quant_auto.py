"""``--quant auto``: try quantization schemes from cheapest to most costly; keep the first that holds accuracy and fits.

The order: int8 with min-max ranges, int8 with ``mse`` ranges, int8 after the
``equalize`` recipe (cross-layer equalization + bias correction), then
int16x8. Each attempt is measured on the eval set with LiteRT's reference
kernels (the closest to TFLM's) against the float Keras model, and its memory
estimated for the target (TFLM arena bounded by the activation bytes, as
:func:`edgekit.memory.estimate` does without a measured arena). The first
attempt within ``max_accuracy_drop`` points that fits is chosen; when none
holds accuracy, the one that lost least (among those that fit) is, and the
report says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgekit.calibrate import Calibration
from edgekit.data import Dataset
from edgekit.errors import InputError
from edgekit.load import LoadedModel
from edgekit.targets import TargetProfile

ATTEMPTS: tuple[tuple[str, str, bool], ...] = (
    ("int8", "minmax", False),
    ("int8", "mse", False),
    ("int8", "minmax", True),
    ("int16x8", "minmax", False),
)


@dataclass(frozen=True)
class Attempt:
    """One scheme tried: its accuracy on LiteRT reference kernels, the drop from float (points), bytes and fit."""

    scheme: str
    calibration: str
    equalized: bool
    accuracy: float
    drop_points: float
    tflite_bytes: int
    fits: bool


@dataclass
class AutoChoice:
    """The chosen model (equalized or not), its ``.tflite``, and every attempt in order."""

    model: LoadedModel
    tflite: bytes
    scheme: str
    calibration: Calibration
    equalized: bool
    within_drop: bool
    attempts: list[Attempt] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": {"scheme": self.scheme, "calibration": self.calibration.label, "equalized": self.equalized},
                "within_max_accuracy_drop": self.within_drop, "attempts": [asdict(a) for a in self.attempts]}


def choose(model: LoadedModel, calib: Dataset, ev: Dataset | None, prof: TargetProfile, max_drop_points: float) -> AutoChoice:
    """Try :data:`ATTEMPTS` in order on ``model``; see the module docstring."""
    from edgekit import memory
    from edgekit.compress import apply_recipe
    from edgekit.convert import convert_quantized
    from edgekit.metrics import accuracy
    from edgekit.quant_debug import tflite_accuracy
    from edgekit.recipe import Recipe
    from edgekit.runtimes import run_keras
    from edgekit.tflite_model import read_model

    if ev is None or not ev.has_labels:
        raise InputError("--quant auto compares accuracies, and needs --eval data with labels y")
    float_acc = accuracy(run_keras(model.model, ev.x), ev.y)
    equalized: LoadedModel | None = None
    attempts: list[Attempt] = []
    best: tuple[float, AutoChoice] | None = None
    for scheme, method, eq in ATTEMPTS:
        if eq and equalized is None:
            equalized = apply_recipe(model, Recipe.load("equalize"), train=None, calib=calib).model
        m = equalized if eq else model
        cal = Calibration.parse(method)
        tfl = convert_quantized(m, calib, scheme, cal)
        acc = tflite_accuracy(tfl, ev.x, ev.y)
        drop = round(100 * (float_acc - acc), 4)
        est = memory.estimate(read_model(tfl), prof)
        fits = est.flash_bytes <= prof.flash_bytes and est.ram_bytes <= prof.ram_bytes
        attempts.append(Attempt(scheme, cal.label, eq, round(acc, 6), drop, len(tfl), fits))
        choice = AutoChoice(m, tfl, scheme, cal, eq, drop <= max_drop_points, attempts)
        if fits and drop <= max_drop_points:
            return choice
        if fits and (best is None or drop < best[0]):
            best = (drop, choice)
    if best is None:  # nothing fits: the first attempt, so the budget check reports it
        return AutoChoice(model, convert_quantized(model, calib), "int8", Calibration(), False, False, attempts)
    return best[1]
