"""``build``: load → compress → convert → quantize → verify → memory → emit → report.

Data flows one way; each stage is timed. The library returns a
:class:`~edgekit.report.Report`; printing is the CLI's job. Output is written
through :mod:`edgekit.outdir` (staged beside ``out_dir``, swapped into place
with a manifest), so a failed build never leaves a half-written folder and
never deletes one edgekit did not write. A build over the target's budget
still writes its report (and the model) before raising
:class:`~edgekit.errors.BudgetError`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edgekit import __version__
from edgekit.data import Dataset, check_against_input, load_data
from edgekit.errors import BudgetError, InputError, VerificationError
from edgekit.load import LoadedModel, load_model
from edgekit.model_check import size_limit
from edgekit.outdir import check_out_dir, staged
from edgekit.report import SCHEMA_VERSION, Report
from edgekit.targets import TargetProfile, get_target

Progress = Callable[[str], None]


@dataclass
class _Timer:
    stages: list[dict[str, Any]] = field(default_factory=list)
    progress: Progress | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.progress:
            self.progress(name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages.append({"name": name, "seconds": round(time.perf_counter() - t0, 3)})


def default_out_dir(model: Path, target: TargetProfile) -> Path:
    """``edgekit-out/<model name>-<target>`` in the current folder."""
    return Path("edgekit-out") / f"{model.stem}-{target.name}"


def _seed_everything(seed: int) -> None:
    import random

    from edgekit.quiet import import_quietly

    tf = import_quietly("tensorflow")

    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    try:
        import keras

        keras.utils.set_random_seed(seed)
    except Exception:  # Keras 3 absent or shadowed by tf_keras: tf/np seeds suffice
        pass


def _load_data(path: str | Path | None, role: str, loaded: LoadedModel) -> Dataset | None:
    if path is None:
        return None
    ds = load_data(path, role)
    check_against_input(ds, loaded.input_shape, role)
    return ds


def build(
    model: str | Path,
    target: str | Path | TargetProfile,
    *,
    calib: str | Path | None = None,
    eval: str | Path | None = None,  # noqa: A002 - mirrors the CLI flag
    train: str | Path | None = None,
    out_dir: str | Path | None = None,
    recipe: Any = None,
    prune: float | None = None,
    fine_tune_epochs: int = 2,
    seed: int = 0,
    codegen: bool = False,
    allow_float: bool = False,
    max_eval: int | None = None,
    progress: Progress | None = None,
    unsafe_deserialization: bool = False,
) -> Report:
    """Build ``model`` for ``target`` and return the report; see the module docstring.

    ``recipe`` is an :class:`edgekit.recipe.Recipe`; without one, ``prune``
    and ``fine_tune_epochs`` make it. Raises :class:`~edgekit.errors.EdgekitError`
    subclasses for every problem the user can act on.
    """
    timer = _Timer(progress=progress)
    prof = target if isinstance(target, TargetProfile) else get_target(target)
    model_path = Path(model)
    out = Path(out_dir) if out_dir is not None else default_out_dir(model_path, prof)
    inputs = (model_path, calib, eval, train)
    check_out_dir(out, inputs)
    if prune is not None and not 0.0 < prune < 1.0:
        raise InputError(f"--prune must be a sparsity between 0 and 1 (exclusive), not {prune}")

    with timer.stage("load"):
        loaded = load_model(model_path, unsafe_deserialization, max_bytes=size_limit(mcu=prof.is_mcu))
        calib_ds = _load_data(calib, "calib", loaded)
        eval_ds = _load_data(eval, "eval", loaded)
        train_ds = _load_data(train, "train", loaded)
        if calib_ds is None and eval_ds is not None:
            calib_ds = eval_ds
        rec = _recipe(recipe, prune, fine_tune_epochs)
        if loaded.kind == "tflite" and rec.stages:
            raise InputError(f"{model_path}: a .tflite cannot be compressed; drop --prune/--recipe or pass the Keras model")
        if loaded.kind != "tflite" and calib_ds is None:
            raise InputError(
                f"{model_path}: full-int8 quantization needs calibration data and none was given",
                "pass --calib DATA (a few hundred representative inputs as .npz with x, or .npy), or --eval DATA with labels to calibrate on and to measure accuracy",
            )
        _seed_everything(seed)

    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "edgekit_version": __version__,
        "seed": seed,
        "input_model": str(model_path.resolve()),
        "model_kind": loaded.kind,
        "target": prof.to_dict(),
        "inputs": {k: (None if v is None else str(Path(v).resolve())) for k, v in (("calib", calib), ("eval", eval), ("train", train))},
        "recipe": rec.to_dict(),
    }

    compressed = loaded
    if rec.stages:
        with timer.stage("compress"):
            from edgekit.compress import apply_recipe

            result = apply_recipe(loaded, rec, train=train_ds, seed=seed, progress=progress)
            compressed = result.model
            data["compression"] = result.stages

    float_tflite: bytes | None = None
    if loaded.kind == "tflite":
        int8_tflite = loaded.tflite
    else:
        from edgekit.convert import convert_float, convert_int8

        with timer.stage("convert"):
            float_tflite = convert_float(loaded)
        with timer.stage("quantize"):
            int8_tflite = convert_int8(compressed, calib_ds, int8_io=True)

    from edgekit.tflite_model import read_model

    info = read_model(int8_tflite, name=str(model_path))
    data["ops"] = list(info.ops)
    if prof.is_mcu:
        from edgekit.tflm_compat import ensure_tflm

        ensure_tflm(info, allow_float=allow_float)

    with timer.stage("verify"):
        vdata = _verify(loaded, compressed, float_tflite, int8_tflite, info, eval_ds or calib_ds, prof, max_eval)
        verify_x = vdata.pop("_x")
        data.update(vdata)

    with timer.stage("memory"):
        from edgekit import memory

        arena = None
        if prof.is_mcu:
            from edgekit.tflm_host import measure_arena

            arena = measure_arena(int8_tflite)
        est = memory.estimate(info, prof, arena)
        data["memory"] = est.to_dict()

    data["sizes"] = {
        "float_tflite_bytes": None if float_tflite is None else len(float_tflite),
        "int8_tflite_bytes": len(int8_tflite),
        "compression_ratio": None if float_tflite is None else round(len(float_tflite) / len(int8_tflite), 4),
    }
    if any(st.name == "cluster" for st in rec.stages):
        from edgekit.compress.cluster import device_weight_bytes

        # clustered weights pay on the device only as n-bit indices + tables (edgekit's C runtime)
        data["sizes"]["clustered_weight_storage"] = device_weight_bytes(int8_tflite).to_dict()
    data["summary"] = _summary(data)

    budget_error: BudgetError | None = None
    try:
        memory.check_budget(est, prof)
    except BudgetError as exc:
        budget_error = exc
        data["error"] = exc.one_line()
    with staged(out, inputs) as tmp:  # the report is written inside: a failure leaves no staging folder
        with timer.stage("emit"):
            (tmp / "model.tflite").write_bytes(int8_tflite)
            if float_tflite is not None:
                (tmp / "reference").mkdir()
                (tmp / "reference" / "model_float.tflite").write_bytes(float_tflite)
            if budget_error is None:  # firmware for a model that cannot fit would not link
                data["outputs"] = _emit(tmp, prof, int8_tflite, info, arena, verify_x, codegen, allow_float)
        data["stages"] = timer.stages
        report = Report(data=data, out_dir=out)
        report.write(tmp)
    if budget_error is not None:
        raise budget_error
    return report


def _recipe(recipe: Any, prune: float | None, epochs: int):
    from edgekit.recipe import Recipe

    if recipe is not None:
        if isinstance(recipe, Recipe):
            return recipe
        return Recipe.load(recipe)
    return Recipe.from_cli(prune=prune, fine_tune_epochs=epochs)


def _verify(loaded, compressed, float_tflite, int8_tflite, info, ds: Dataset | None, prof, max_eval) -> dict[str, Any]:
    """Run every runtime on the eval (or calibration) inputs; accuracy, agreement, bit-exactness, latency."""
    from edgekit import metrics
    from edgekit.runtimes import host_latency, litert_load_error, quantize, run_keras, run_litert

    out: dict[str, Any] = {"accuracy": {"float": None, "int8_tflite": None, "int8_tflite_ref": None, "int8_tflm": None}}
    out["agreement"] = {"int8_vs_float_top1": None, "tflm_vs_tflite_bit_exact": None}
    out["runtimes"] = {}
    if ds is None:
        # a .tflite input without data: generated inputs still check bit-exactness
        rng = np.random.default_rng(0)
        shape = (32, *info.inputs[0].shape[1:])
        dtype = np.dtype(info.inputs[0].dtype)
        x_model = rng.integers(-128, 128, size=shape).astype(dtype) if np.issubdtype(dtype, np.integer) else rng.random(shape, dtype=np.float32)
        y, source = None, "generated (seed 0)"
    else:
        ds = ds if max_eval is None else Dataset(ds.x[:max_eval], None if ds.y is None else ds.y[:max_eval], ds.path)
        x_model = quantize(ds.x, info.inputs[0])
        y, source = ds.y, str(ds.path)
    out["verified_on"] = {"source": source, "samples": int(len(x_model)), "labels": y is not None}

    outs: dict[str, np.ndarray] = {}
    if loaded.is_keras and ds is not None:
        outs["float"] = run_keras(loaded.model, ds.x)
        out["runtimes"]["accuracy.float"] = "keras (float32, the input model before compression)"
        if compressed is not loaded:
            out["accuracy"]["float_compressed"] = metrics.accuracy(run_keras(compressed.model, ds.x), y)
    elif float_tflite is not None and ds is not None:
        outs["float"] = run_litert(float_tflite, ds.x.astype(np.float32))
    litert_error = litert_load_error(int8_tflite)
    if litert_error is None:
        outs["int8_tflite"] = run_litert(int8_tflite, x_model)
        outs["int8_tflite_ref"] = run_litert(int8_tflite, x_model, reference=True)
        out["runtimes"]["accuracy.int8_tflite"] = "litert-default (LiteRT default kernels, XNNPACK)"
        out["runtimes"]["accuracy.int8_tflite_ref"] = "litert-ref (LiteRT reference kernels)"
    elif not prof.is_mcu:
        raise VerificationError(f"{loaded.path}: LiteRT, the runtime of {prof.name}, cannot load the model: {litert_error}")
    else:
        out["runtimes"]["accuracy.int8_tflite"] = f"skipped: LiteRT cannot load this model ({litert_error}); TFLM can"
    from edgekit.tflm_compat import check_tflm

    if not check_tflm(info, allow_float=True):
        from edgekit.tflm_host import run_tflm

        outs["int8_tflm"] = run_tflm(int8_tflite, x_model)
        out["runtimes"]["accuracy.int8_tflm"] = "tflm-host (tflite-micro interpreter, reference kernels)"
        if "int8_tflite_ref" in outs:
            out["agreement"]["tflm_vs_tflite_bit_exact"] = metrics.bit_exact_fraction(outs["int8_tflm"], outs["int8_tflite_ref"])
            out["agreement"]["tflm_vs_tflite_max_lsb"] = metrics.max_abs_diff(outs["int8_tflm"], outs["int8_tflite_ref"])
    for key, o in outs.items():
        out["accuracy"][key] = metrics.accuracy(o, y)
    deploy = "int8_tflm" if prof.is_mcu and "int8_tflm" in outs else "int8_tflite"
    out["agreement"]["deployed_runtime"] = "tflm-host" if deploy == "int8_tflm" else "litert-default"
    if "float" in outs:
        out["agreement"]["int8_vs_float_top1"] = metrics.top1_agreement(outs[deploy], outs["float"])
        if not metrics.is_classifier(outs["float"]):
            from edgekit.runtimes import dequantize

            deq = dequantize(outs[deploy], info.outputs[0])
            out["agreement"]["int8_vs_float_max_abs"] = metrics.max_abs_diff(deq, outs["float"].reshape(deq.shape))
    out["runtimes"]["agreement.tflm_vs_tflite_bit_exact"] = "tflm-host vs litert-ref, every output element"
    out["latency"] = {"int8_ms": None, "float_ms": None, "runtime": "litert-default", "label": "host-measured (build machine), not a device figure"}
    out["speedup"] = {"host_latency_ratio": None}
    if litert_error is None:
        lat_int8 = host_latency(int8_tflite)
        out["latency"]["int8_ms"] = round(lat_int8.mean_ms, 5)
        if float_tflite is not None:
            lat_f = host_latency(float_tflite)
            out["latency"]["float_ms"] = round(lat_f.mean_ms, 5)
            out["speedup"]["host_latency_ratio"] = round(lat_f.mean_ms / lat_int8.mean_ms, 4) if lat_int8.mean_ms > 0 else None
    out["runtimes"]["speedup.host_latency_ratio"] = "litert-default on the build host, float .tflite vs int8 .tflite, single thread"
    out["_x"] = x_model
    return out


def _summary(d: dict[str, Any]) -> dict[str, Any]:
    acc = d["accuracy"]
    deploy = "int8_tflm" if d["target"]["runtime"] == "tflm" and acc.get("int8_tflm") is not None else "int8_tflite"
    lost = None
    if acc.get("float") is not None and acc.get(deploy) is not None:
        lost = round(acc["float"] - acc[deploy], 6)
    return {
        "compression_ratio": d["sizes"]["compression_ratio"],
        "speedup": d["speedup"]["host_latency_ratio"],
        "accuracy_lost": lost,
        "accuracy_deployed_runtime": deploy,
    }


def _emit(folder: Path, prof: TargetProfile, tflite: bytes, info, arena, x_model: np.ndarray, codegen: bool, allow_float: bool) -> dict[str, Any]:
    """Write the deployable files for the target into ``folder``; return what was written."""
    written: dict[str, Any] = {"model": "model.tflite"}
    if not prof.is_mcu:
        from edgekit.emit_rpi import emit_rpi

        written.update(emit_rpi(folder))
        return written
    from edgekit.emit_tflm import emit_tflm_project

    emit_tflm_project(tflite, prof, folder / "tflm", arena=arena, sample_input=x_model[0], allow_float=allow_float)
    written["tflm_project"] = "tflm/"
    if codegen:
        from edgekit.aot.codegen import generate

        res = generate(tflite, folder / "aot")
        written["aot"] = {"folder": "aot/", **res.to_dict()}
    return written
