"""Which layer does int8 quantization hurt? Per-layer error from TFLite's QuantizationDebugger.

The debugger runs the int8 model and, beside every quantized op, the float
op on the dequantized inputs, and compares their outputs. ``rmse_over_scale``
(root-mean-square error divided by the output's quantization step) is the
number to read: about 0.29 (1/sqrt(12)) is pure rounding noise; much more
means that layer's range or weights quantize badly (a QAT stage or a better
calibration set is the fix).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from edgekit.convert import int8_converter, samples_of
from edgekit.data import Dataset
from edgekit.errors import ConversionError, InputError
from edgekit.load import LoadedModel
from edgekit.quiet import quiet

ROUNDING_NOISE = 1 / np.sqrt(12)


@dataclass(frozen=True)
class LayerError:
    """Quantization error of one op's output on the debug samples."""

    op: str
    tensor: int
    name: str
    scale: float
    zero_point: int
    rmse: float
    rmse_over_scale: float
    max_abs_error: float
    mean_error: float
    layer: str = ""  # the Keras layer the op came from ("" when the name does not map to one)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QuantDebugReport:
    """Per-layer errors of the full-int8 model, in graph order, on ``samples`` inputs."""

    samples: int
    layers: tuple[LayerError, ...]

    def worst(self) -> LayerError | None:
        """The layer with the largest ``rmse_over_scale``."""
        return max(self.layers, key=lambda r: r.rmse_over_scale, default=None)

    def worst_layers(self, n: int = 5) -> list[LayerError]:
        """The ``n`` layers with the largest ``rmse_over_scale``, worst first."""
        return sorted(self.layers, key=lambda r: r.rmse_over_scale, reverse=True)[:n]

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst()
        return {"samples": self.samples, "worst": worst.name if worst else None, "layers": [r.to_dict() for r in self.layers]}


def keras_layer_names(tensor_names: list[str], model) -> list[str]:
    """The Keras layer of ``model`` each converted tensor (in graph order) comes from, ``""`` when none.

    A tensor name starts ``<model scope>/<layer scope>/``; the converter traces
    under uniquified scopes (layer ``conv2d_1`` may appear as ``conv2d_1_2``),
    so names are not inverted by rule: each new scope goes to the next layer,
    in model order, whose name equals it or prefixes it followed by ``_``;
    a scope seen before keeps its layer; a tensor with no layer scope (the
    output ``Identity`` of a layer's fused activation) goes to the layer before.
    """
    from edgekit.tflite_model import short_layer_name

    layers = [lyr.name for lyr in model.layers]
    seen: dict[str, str] = {}
    pos = 0
    out = []
    for tname in tensor_names:
        parts = short_layer_name(tname).split("/")
        scope = parts[1] if len(parts) >= 2 else parts[0]
        if scope not in seen:
            for k in range(pos, len(layers)):
                if scope == layers[k] or scope.startswith(layers[k] + "_"):
                    seen[scope], pos = layers[k], k + 1
                    break
        # no layer of its own (the model's output "Identity" after a fused softmax): the op belongs to the layer before
        out.append(seen.get(scope, out[-1] if out else ""))
    return out


def layer_errors(loaded: LoadedModel, calib: Dataset, debug: Dataset | None = None, max_samples: int = 64) -> QuantDebugReport:
    """Quantize ``loaded`` (calibrated on ``calib``) and measure each op's output error on ``debug`` (default: ``calib``).

    Raises :class:`InputError` for a model that cannot be converted (``.tflite``),
    :class:`ConversionError` when the debugger fails.
    """
    import tensorflow as tf

    if not (loaded.is_keras or loaded.kind == "saved_model"):
        raise InputError(f"{loaded.path}: per-layer quantization error needs the float model, not a {loaded.kind} file")
    cal = calib.x[:max_samples]
    dbg = (debug or calib).x[:max_samples]
    conv = int8_converter(loaded, cal, int8_io=False)
    buf = io.StringIO()
    try:
        with quiet():
            debugger = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=samples_of(dbg))
            debugger.run()
            debugger.layer_statistics_dump(buf)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"{loaded.path}: quantization debugger failed: {first[:300]}") from None
    rows = _parse(buf.getvalue())
    if loaded.is_keras:
        rows = [replace(r, layer=n) for r, n in zip(rows, keras_layer_names([r.name for r in rows], loaded.model))]
    return QuantDebugReport(len(dbg), tuple(rows))


def _parse(csv_text: str) -> list[LayerError]:
    lines = [ln for ln in csv_text.strip().splitlines() if ln]
    if not lines:
        return []
    header = lines[0].split(",")
    rows = []
    for line in lines[1:]:
        parts = line.split(",", len(header) - 1)
        rec = dict(zip(header, parts))
        scale = float(rec["scale"])
        rmse = float(np.sqrt(float(rec["mean_squared_error"])))
        rows.append(
            LayerError(
                op=rec["op_name"],
                tensor=int(float(rec["tensor_idx"])),
                name=rec["tensor_name"].split(";")[0],
                scale=scale,
                zero_point=int(float(rec["zero_point"])),
                rmse=rmse,
                rmse_over_scale=rmse / scale if scale else 0.0,
                max_abs_error=float(rec["max_abs_error"]),
                mean_error=float(rec["mean_error"]),
            )
        )
    return rows


def tflite_accuracy(tflite: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a ``.tflite`` model on LiteRT's reference kernels (int8 or float inputs handled)."""
    from edgekit.verify.metrics import accuracy
    from edgekit.verify.runtimes import run_litert
    from edgekit.verify.inputs import quantize
    from edgekit.tflite_model import read_model

    spec = read_model(tflite).inputs[0]
    return accuracy(run_litert(tflite, quantize(x, spec), reference=True), y)
