"""Activation ranges for post-training quantization: ``minmax``, ``percentile[:P]`` or ``mse``.

The converter's calibrate-only path (``_experimental_calibrate_only``) returns
a float model whose activation tensors carry the min/max seen on the
calibration samples. ``minmax`` quantizes that as it is (what the plain
converter does). ``percentile`` and ``mse`` first re-run the calibrated model
on the same samples with every tensor kept, and replace each range:

- ``percentile:P`` clips to the P-th percentile of |values| on each side
  (default 99.99), so a handful of outlier values stop setting the step;
- ``mse`` picks, per tensor, the clipped range (a grid of shrink factors of the
  min-max range, 1.0 included) whose int8 fake-quantization has the smallest
  mean squared error on the observed values. It never picks a range whose
  error is worse than min-max's on those values.

The edited model then goes through ``mlir_quantize``, the quantizer the
converter itself calls after calibration. Model inputs and outputs keep their
min-max ranges: they are the I/O the user quantizes and reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.errors import InputError

METHODS = ("minmax", "percentile", "mse")
DEFAULT_PERCENTILE = 99.99
_MAX_VALUES = 1 << 20  # values kept per tensor for the statistics (subsampled evenly)
_SHRINK = np.linspace(1.0, 0.05, 40)


@dataclass(frozen=True)
class Calibration:
    """A calibration method; ``percentile`` is only set for ``percentile``."""

    method: str = "minmax"
    percentile: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> "Calibration":
        """``minmax``, ``percentile``, ``percentile:99.9`` or ``mse``; :class:`InputError` otherwise."""
        if text is None or text == "":
            return cls()
        name, _, arg = str(text).partition(":")
        if name not in METHODS:
            raise InputError(f"--calibration {text!r}: unknown method", "valid: minmax, percentile[:P], mse")
        if name != "percentile":
            if arg:
                raise InputError(f"--calibration {text!r}: {name} takes no argument")
            return cls(name)
        try:
            p = float(arg) if arg else DEFAULT_PERCENTILE
        except ValueError:
            raise InputError(f"--calibration {text!r}: the percentile must be a number, e.g. percentile:99.9") from None
        if not 50.0 < p <= 100.0:
            raise InputError(f"--calibration {text!r}: the percentile must be in (50, 100]")
        return cls(name, p)

    @property
    def label(self) -> str:
        return f"percentile:{self.percentile:g}" if self.method == "percentile" else self.method


def _fake_quant_mse(v: np.ndarray, lo: float, hi: float, levels: int = 256) -> float:
    lo, hi = min(lo, 0.0), max(hi, 0.0)  # TFLite ranges always contain 0
    if hi - lo <= 0:
        return float(np.mean(v**2))
    scale = (hi - lo) / (levels - 1)
    zp = np.round(-lo / scale)
    q = np.clip(np.round(v / scale) + zp, 0, levels - 1)
    return float(np.mean(((q - zp) * scale - v) ** 2))


def choose_range(values: np.ndarray, cal: Calibration) -> tuple[float, float]:
    """The (min, max) range ``cal`` picks for the observed ``values`` of one tensor."""
    v = values.astype(np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if cal.method == "percentile":
        p = cal.percentile
        return min(float(np.percentile(v, 100.0 - p)), 0.0), max(float(np.percentile(v, p)), 0.0)
    if cal.method == "mse":
        errs = [_fake_quant_mse(v, a * lo, a * hi) for a in _SHRINK]
        a = _SHRINK[int(np.argmin(errs))]  # argmin takes the first minimum: 1.0 (min-max) on ties
        return a * lo, a * hi
    return lo, hi


def _activations(calibrated: bytes, x: np.ndarray | tuple[np.ndarray, ...], tensors: list[int],
                 input_names: tuple[str, ...] = ()) -> dict[int, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.quiet import quiet

    with quiet():
        ip = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True, num_threads=1)
        ip.allocate_tensors()
    xs = x if isinstance(x, tuple) else (x,)
    details = ip.get_input_details()
    if len(xs) > 1:  # each array goes to the input of its name, whatever order the converter chose
        details = [_named(details, n) for n in input_names]
    seen: dict[int, list[np.ndarray]] = {i: [] for i in tensors}
    for i in range(len(xs[0])):
        for inp, arr in zip(details, xs):
            ip.set_tensor(inp["index"], arr[i : i + 1].astype(inp["dtype"]))
        ip.invoke()
        for t in tensors:
            seen[t].append(ip.get_tensor(t).ravel().copy())
    out = {}
    for t, parts in seen.items():
        v = np.concatenate(parts)
        out[t] = v[:: max(1, len(v) // _MAX_VALUES)]
    return out


def _named(details: list[dict], name: str) -> dict:
    """The interpreter input called ``name`` (the converter may prefix it, e.g. ``serving_default_<name>:0``)."""
    hits = [d for d in details if d["name"] == name or d["name"].split(":")[0].endswith("_" + name)]
    if len(hits) != 1:
        from edgekit.errors import ConversionError

        raise ConversionError(f"the calibrated model has no single input named {name!r} "
                              f"(found: {', '.join(d['name'] for d in details)})")
    return hits[0]


def edit_ranges(calibrated: bytes, x: np.ndarray | tuple[np.ndarray, ...], cal: Calibration,
                input_names: tuple[str, ...] = ()) -> bytes:
    """The calibrated model with the activation ranges ``cal`` picks for every tensor but the model's inputs and outputs.

    ``x`` is a tuple with one array per input for a model with several, which ``input_names`` name.
    """
    from tensorflow.lite.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(calibrated))
    sg = model.subgraphs[0]
    io = set(sg.inputs) | set(sg.outputs)
    ranged = [i for i, t in enumerate(sg.tensors)
              if i not in io and t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1]
    acts = _activations(calibrated, x, ranged, input_names)
    for i in ranged:
        q = sg.tensors[i].quantization
        if acts[i].size == 0:
            continue
        lo, hi = choose_range(acts[i], cal)
        q.min = np.array([lo], dtype=np.float32)
        q.max = np.array([hi], dtype=np.float32)
    return bytes(fu.convert_object_to_bytearray(model))
