"""Compression stages and the recipe runner.

``STAGES`` is the explicit registry: stage name → module path. Modules are
imported when a recipe uses them, never at import time (tfmot must not be
imported for Keras 3 models). Add a technique with one line here and a module
following the protocol in :mod:`edgekit.compress.base`.
"""

from __future__ import annotations

import difflib
import importlib
import time
from typing import Any, Callable

from edgekit.compress.base import CompressResult
from edgekit.data import Dataset
from edgekit.errors import InputError
from edgekit.load import LoadedModel

STAGES: dict[str, str] = {
    "prune": "edgekit.compress.prune",
    "structured": "edgekit.compress.structured",
    "lowrank": "edgekit.compress.lowrank",
    "qat": "edgekit.compress.qat",
    "cluster": "edgekit.compress.cluster",
    "distill": "edgekit.compress.distill",
    "equalize": "edgekit.compress.equalize",
    "bias_correct": "edgekit.compress.bias_correct",
}

__all__ = ["STAGES", "CompressResult", "apply_recipe", "stage_module", "stage_config"]


def stage_module(name: str):
    """The module implementing stage ``name``; :class:`InputError` with the closest name when unknown."""
    if name not in STAGES:
        close = difflib.get_close_matches(name, list(STAGES), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"valid stages: {', '.join(STAGES)}"
        raise InputError(f"unknown compression stage {name!r}", hint)
    return importlib.import_module(STAGES[name])


def stage_config(spec) -> Any:
    """The validated ``Config`` of a :class:`~edgekit.recipe.StageSpec` (raises :class:`InputError`)."""
    return stage_module(spec.name).Config.from_dict(dict(spec.params))


# stages that fine-tune through edgekit.compress.finetune, which handles several inputs and outputs
MULTI_IO_STAGES = ("prune", "structured", "lowrank", "cluster")


def apply_recipe(
    loaded: LoadedModel,
    recipe,
    *,
    train: Dataset | None,
    calib: Dataset | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> CompressResult:
    """Run the stages of ``recipe`` in order on a Keras model; return the new model and per-stage details.

    Stages whose module sets ``DATA = "calib"`` get ``calib`` instead of ``train``. A streaming model
    (stateful layers) is compressed through its stateless twin (:mod:`edgekit.compress.stateful_twin`).

    Raises :class:`InputError` for a non-Keras model or a stage that needs
    labelled training data without it, :class:`~edgekit.errors.ConversionError`
    when a stage cannot transform the model.
    """
    if recipe.stages and not loaded.is_keras:
        raise InputError(f"{loaded.path}: compression needs a Keras model (.keras or .h5), not a {loaded.kind} model",
                         "drop --prune/--recipe, or pass the Keras model the file was converted from")
    from dataclasses import replace

    from edgekit.model_loss import compiled_loss

    current = replace(loaded, loss=compiled_loss(loaded)) if loaded.loss is None else loaded
    several = len(loaded.input_shapes) > 1 or len(loaded.output_names) > 1
    for spec in recipe.stages:
        if several and spec.name not in MULTI_IO_STAGES:
            raise InputError(f"{loaded.path}: stage {spec.name} handles models with one input and one output; this one has "
                             f"{len(loaded.input_shapes)} inputs and {len(loaded.output_names)} outputs",
                             f"stages that handle several: {', '.join(MULTI_IO_STAGES)}")
    from edgekit.keras_state import stateful_layers

    twin = None
    if recipe.stages and stateful_layers(loaded.model):  # a streaming model: its stateless twin is compressed
        from edgekit.compress.stateful_twin import make_twin

        streaming = current
        twin = make_twin(streaming, [s.name for s in recipe.stages], train)
        current, train = twin.model, twin.train
    done: list[dict[str, Any]] = []
    for i, spec in enumerate(recipe.stages):
        module = stage_module(spec.name)
        cfg = module.Config.from_dict(dict(spec.params))
        if progress:
            progress(f"compress: {spec.name}")
        t0 = time.perf_counter()
        data = calib if getattr(module, "DATA", "train") == "calib" else train  # label-free stages read the calibration set
        current, details = module.apply(current, cfg, data, seed + i)
        if twin is not None:
            details = {**details, "streaming": twin.to_dict()}
        done.append({"name": spec.name, "params": cfg.to_dict(), "seconds": round(time.perf_counter() - t0, 3), "details": details})
    if twin is not None:
        from edgekit.compress.stateful_twin import put_back

        current = put_back(streaming, twin, current)
    return CompressResult(model=current, stages=done)
