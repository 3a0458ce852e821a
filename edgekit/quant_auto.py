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


class _Trials:
    """Converts and measures one attempt at a time; the equalized model is made once, on first use."""

    def __init__(self, model: LoadedModel, calib: Dataset, ev: Dataset, prof: TargetProfile):
        from edgekit.verify.metrics import accuracy
        from edgekit.verify.runtimes import run_keras

        if ev is None or not ev.has_labels:
            raise InputError("measuring quantization schemes compares accuracies, and needs --eval data with labels y")
        self.model, self.calib, self.ev, self.prof = model, calib, ev, prof
        self.float_acc = accuracy(run_keras(model.model, ev.x), ev.y)
        self._equalized: LoadedModel | None = None

    def model_for(self, equalized: bool) -> LoadedModel:
        if equalized and self._equalized is None:
            from edgekit.compress import apply_recipe
            from edgekit.recipe import Recipe

            self._equalized = apply_recipe(self.model, Recipe.load("equalize"), train=None, calib=self.calib).model
        return self._equalized if equalized else self.model

    def run(self, scheme: str, method: str, equalized: bool) -> tuple[Attempt, bytes]:
        from edgekit import memory
        from edgekit.convert import convert_quantized
        from edgekit.quant_debug import tflite_accuracy
        from edgekit.tflite_model import read_model

        cal = Calibration.parse(method)
        tfl = convert_quantized(self.model_for(equalized), self.calib, scheme, cal)
        acc = tflite_accuracy(tfl, self.ev.x, self.ev.y)
        est = memory.estimate(read_model(tfl), self.prof)
        fits = est.flash_bytes <= self.prof.flash_bytes and est.ram_bytes <= self.prof.ram_bytes
        return Attempt(scheme, cal.label, equalized, round(acc, 6), round(100 * (self.float_acc - acc), 4), len(tfl), fits), tfl


# what each remedy is called on the command line, for the hint
REMEDIES: dict[tuple[str, str, bool], str] = {
    ("int8", "mse", False): "--calibration mse",
    ("int8", "minmax", True): "--recipe equalize",
    ("int16x8", "minmax", False): "--quant int16x8",
}


def measure_remedies(model: LoadedModel, calib: Dataset, ev: Dataset, prof: TargetProfile) -> list[tuple[str, Attempt]]:
    """Each training-free remedy of :data:`REMEDIES` measured on ``model``: (command-line flag, attempt)."""
    trials = _Trials(model, calib, ev, prof)
    return [(flag, trials.run(*key)[0]) for key, flag in REMEDIES.items()]


def choose(model: LoadedModel, calib: Dataset, ev: Dataset | None, prof: TargetProfile, max_drop_points: float) -> AutoChoice:
    """Try :data:`ATTEMPTS` in order on ``model``; see the module docstring."""
    from edgekit.convert import convert_quantized

    trials = _Trials(model, calib, ev, prof)
    attempts: list[Attempt] = []
    best: tuple[float, AutoChoice] | None = None
    for scheme, method, eq in ATTEMPTS:
        att, tfl = trials.run(scheme, method, eq)
        attempts.append(att)
        choice = AutoChoice(trials.model_for(eq), tfl, scheme, Calibration.parse(method), eq, att.drop_points <= max_drop_points, attempts)
        if att.fits and att.drop_points <= max_drop_points:
            return choice
        if att.fits and (best is None or att.drop_points < best[0]):
            best = (att.drop_points, choice)
    if best is None:  # nothing fits: the first attempt, so the budget check reports it
        return AutoChoice(model, convert_quantized(model, calib), "int8", Calibration(), False, False, attempts)
    return best[1]
