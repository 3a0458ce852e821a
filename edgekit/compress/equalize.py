"""Cross-layer equalization (CLE): balance the per-channel weight ranges of consecutive layers, no training.

For two layers A → B joined through a positively homogeneous chain (ReLU or
linear activation, max/average pooling, Flatten, Dropout), channel ``c`` of
A's output can be divided by ``s_c > 0`` if B's weights reading channel ``c``
are multiplied by ``s_c``: ``relu(x / s) * s = relu(x)``, so the float model
computes the same function (up to float rounding). With
``s_c = sqrt(r1_c / r2_c)`` (``r1_c``: largest |weight| of A's output channel
``c`` incl. its bias path; ``r2_c``: largest |weight| of B reading ``c``) both
ranges become ``sqrt(r1_c r2_c)``, so per-tensor activation ranges and
per-channel weight scales no longer waste their levels on a few outlier
channels (Nagel et al. 2019, "Data-free quantization"; AIMET's CLE).

A and B are Conv2D, DepthwiseConv2D (depth multiplier 1) or Dense. ReLU6 is
not equalized: scaling would move its clip at 6 per channel, changing the
model; such pairs are listed as skipped. Works on both Keras kinds (it edits
the weights of a copy; the architecture is unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.compress.base import StageConfig, same_kind
from edgekit.compress.finetune import copy_model
from edgekit.data import Dataset
from edgekit.load import LoadedModel

NAME = "equalize"
WEIGHTED = ("Conv2D", "DepthwiseConv2D", "Dense")
# layers that commute with a positive per-channel scale and keep the channel axis last
PASS_THROUGH = ("MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Dropout", "Flatten", "ZeroPadding2D")


@dataclass(frozen=True)
class Config(StageConfig):
    """``iterations``: sweeps over all pairs (one suffices for a single pair; chains converge over a few)."""

    STAGE = NAME

    iterations: int = 4

    def __post_init__(self):
        self._check(isinstance(self.iterations, int) and 1 <= self.iterations <= 100, f"iterations must be an integer in 1..100, not {self.iterations!r}")


def _act(layer) -> str:
    cfg = layer.get_config()
    kind = type(layer).__name__
    if kind == "ReLU":
        plain = cfg.get("max_value") is None and not cfg.get("negative_slope") and not cfg.get("threshold")
        return "relu" if plain else "relu6" if cfg.get("max_value") == 6 else "other"
    if kind == "Activation" or kind in WEIGHTED:
        a = cfg.get("activation", "linear")
        return a if isinstance(a, str) else "other"
    return "linear"


def _tensors(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def find_pairs(model) -> tuple[list[tuple[Any, Any, bool]], list[dict[str, str]]]:
    """The (A, B, through_flatten) layer pairs that can be equalized, and the skipped candidates with the reason."""
    consumers: dict[int, list] = {}
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        for t in _tensors(layer.input):
            consumers.setdefault(id(t), []).append(layer)
    outputs = {id(t) for t in _tensors(model.outputs)}
    pairs, skipped = [], []
    for a in model.layers:
        if type(a).__name__ not in WEIGHTED or not _depthwise_ok(a):
            continue
        act = _act(a)
        cur, flat = a, False
        while True:
            nxt = consumers.get(id(cur.output), [])
            if id(cur.output) in outputs or len(nxt) != 1:
                reason = "its output is a model output" if id(cur.output) in outputs else f"{len(nxt)} layers read its output"
                break
            b = nxt[0]
            kind = type(b).__name__
            if kind in WEIGHTED:
                reason = None if _depthwise_ok(b) else "depthwise multiplier != 1"
                break
            if kind in ("ReLU", "Activation"):
                act = _act(b) if act == "linear" else (act if _act(b) == "linear" else "other")
            elif kind not in PASS_THROUGH:
                reason = f"{kind} between them does not commute with a per-channel scale"
                break
            flat = flat or kind == "Flatten"
            cur = b
        if reason is None and act not in ("relu", "linear"):
            reason = f"{act} activation (a per-channel scale would change it)"
        if reason is None:
            pairs.append((a, b, flat))
        elif consumers.get(id(a.output)):
            skipped.append({"layer": a.name, "reason": reason})
    return pairs, skipped


def _depthwise_ok(layer) -> bool:
    return type(layer).__name__ != "DepthwiseConv2D" or int(layer.get_config().get("depth_multiplier", 1)) == 1


def _out_channels(layer, k: np.ndarray) -> np.ndarray:
    """A's kernel as [channels, everything else] (a view-free copy)."""
    if type(layer).__name__ == "DepthwiseConv2D":
        return np.moveaxis(k[:, :, :, 0], -1, 0).reshape(k.shape[2], -1)
    return np.moveaxis(k, -1, 0).reshape(k.shape[-1], -1)


def _in_channels(layer, k: np.ndarray, c: int) -> np.ndarray:
    """B's kernel viewed as [..., c (channel of A), rest] so that axis -2 indexes A's channels."""
    if type(layer).__name__ == "DepthwiseConv2D":
        return k[:, :, :, 0][..., None].reshape(-1, k.shape[2], 1)
    if type(layer).__name__ == "Dense":
        return k.reshape(-1, c, k.shape[-1])  # Flatten of NHWC puts the channel last: row = position * C + c
    return k.reshape(-1, k.shape[-2], k.shape[-1])


def _scale_pair(a, b) -> float:
    wa, wb = a.get_weights(), b.get_weights()
    ka = wa[0]
    c = ka.shape[2] if type(a).__name__ == "DepthwiseConv2D" else ka.shape[-1]
    r1 = np.abs(_out_channels(a, ka)).max(axis=1)
    kb = _in_channels(b, wb[0], c)
    r2 = np.abs(kb).max(axis=(0, 2))
    s = np.ones(c)
    ok = (r1 > 0) & (r2 > 0)
    s[ok] = np.sqrt(r1[ok] / r2[ok])
    if type(a).__name__ == "DepthwiseConv2D":
        wa[0] = (ka / s[None, None, :, None]).astype(ka.dtype)
    else:
        wa[0] = (ka / s).astype(ka.dtype)
    if len(wa) > 1:
        wa[1] = (wa[1] / s).astype(wa[1].dtype)
    wb[0] = (kb * s[None, :, None]).reshape(wb[0].shape).astype(wb[0].dtype)
    a.set_weights(wa)
    b.set_weights(wb)
    return float(np.abs(np.log(s)).max())


def apply(loaded: LoadedModel, cfg: Config, train: Dataset | None, seed: int) -> tuple[LoadedModel, dict]:
    """Equalize every pair :func:`find_pairs` finds; details list the pairs, the skipped layers and the ranges before and after."""
    model = copy_model(loaded.model)
    pairs, skipped = find_pairs(model)
    before = {a.name: _range_ratio(a) for a, _, _ in pairs}
    moves = []
    for _ in range(cfg.iterations):
        moves.append(round(max((_scale_pair(a, b) for a, b, _ in pairs), default=0.0), 6))
    rows = [{"layers": [a.name, b.name], "through_flatten": flat, "weight_range_ratio_before": before[a.name],
             "weight_range_ratio_after": _range_ratio(a)} for a, b, flat in pairs]
    return same_kind(loaded, model), {"pairs": rows, "skipped": skipped, "max_log_scale_per_sweep": moves}


def _range_ratio(layer) -> float:
    """Largest / smallest per-output-channel |weight| range of ``layer``: 1 is perfectly balanced."""
    r = np.abs(_out_channels(layer, layer.get_weights()[0])).max(axis=1)
    r = r[r > 0]
    return round(float(r.max() / r.min()), 4) if r.size else 1.0
