"""The outlier-channel model: the digits CNN whose first conv has two output channels scaled up 400x.

The next conv reads those channels with weights divided by 400, so the float
model computes exactly what the trained one does (ReLU is positively
homogeneous), but the first conv's output range is set by two channels: full
int8 with min-max ranges leaves the other six a handful of levels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.examples import add_outlier_channels


@pytest.fixture(scope="session")
def outlier_dir(tmp_path_factory) -> Path:
    """model.keras (Keras 3, outlier channels), model_clean.keras (before), calib.npz, eval.npz."""
    from edgekit.examples import digits_split, train_digits_cnn

    d = tmp_path_factory.mktemp("outlier")
    for split, (x, y) in digits_split().items():
        np.savez(d / f"{split}.npz", x=x, y=y)
    model = train_digits_cnn("keras3", epochs=8, width=8)
    model.save(d / "model_clean.keras")
    add_outlier_channels(model)
    model.save(d / "model.keras")
    return d
