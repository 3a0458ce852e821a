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
from edgekit.verify.gates import Gates

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


def _load_data(path: str | Path | None, role: str, loaded: LoadedModel, task: str | tuple[str, ...] = "classification") -> Dataset | None:
    if path is None:
        return None
    ds = load_data(path, role, task, loaded.input_names, loaded.output_names)
    check_against_input(ds, loaded.input_shape, role, loaded.input_shapes, loaded.input_names)
    if role == "calib":  # calibration needs representative calls, not sequences
        from edgekit.sequences import flatten_dataset

        ds = flatten_dataset(ds, loaded.input_shape)
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
    quant: str | None = None,
    calibration: str | None = None,
    progress: Progress | None = None,
    gates: Gates | None = None,
    data_is_quantized: bool = False,
    task: str | None = None,
    custom_objects: str | None = None,
    unsafe_deserialization: bool = False,
) -> Report:
    """Build ``model`` for ``target`` and return the report; see the module docstring.

    ``recipe`` is an :class:`edgekit.recipe.Recipe`; without one, ``prune``
    and ``fine_tune_epochs`` make it. ``quant`` is a scheme of
    :data:`edgekit.convert.SCHEMES`, ``calibration`` a method
    :meth:`edgekit.calibrate.Calibration.parse` reads (either, when None,
    from the recipe, else int8 / minmax); ``quant="auto"`` picks
    the first scheme of :data:`edgekit.quant_auto.ATTEMPTS` within
    ``gates.max_accuracy_drop`` points of float (default 1) that fits. Raises :class:`~edgekit.errors.EdgekitError`
    subclasses for every problem the user can act on.

    ``gates`` are the user's limits: the report gets a ``verdict`` section and
    a broken gate raises VerificationError (exit 6) after the full build is
    written. ``data_is_quantized`` passes integer data to a ``.tflite``'s
    integer input unchanged (see :mod:`edgekit.verify.inputs`). ``task`` is
    one of :data:`edgekit.task.TASKS`; None infers it from the model's head.
    ``custom_objects`` is a ``--custom-objects`` spec
    (:mod:`edgekit.custom_objects`) for models with custom layers.
    """
    gates = gates or Gates()
    timer = _Timer(progress=progress)
    prof = target if isinstance(target, TargetProfile) else get_target(target)
    model_path = Path(model)
    out = Path(out_dir) if out_dir is not None else default_out_dir(model_path, prof)
    inputs = (model_path, calib, eval, train)
    check_out_dir(out, inputs)
    if prune is not None and not 0.0 < prune < 1.0:
        raise InputError(f"--prune must be a sparsity between 0 and 1 (exclusive), not {prune}")
    rec = _recipe(recipe, prune, fine_tune_epochs)
    quant = quant or rec.quant or "int8"
    cal = _check_quant(quant, calibration or rec.calibration, prof)

    with timer.stage("load"):
        from edgekit.custom_objects import load_custom_objects

        objects = load_custom_objects(custom_objects) if custom_objects else None
        loaded = load_model(model_path, objects, unsafe_deserialization, max_bytes=size_limit(mcu=prof.is_mcu))
        from edgekit import task as tasks
        from edgekit.tflite_model import read_model

        per_output = tasks.choose_per_output(task, loaded, read_model(loaded.tflite, name=str(model_path)) if loaded.kind == "tflite" else None)
        chosen = per_output[0]
        task_names = chosen.name if len(per_output) == 1 else tuple(t.name for t in per_output)
        calib_ds = _load_data(calib, "calib", loaded, task_names)
        eval_ds = _load_data(eval, "eval", loaded, task_names)
        train_ds = _load_data(train, "train", loaded, task_names)
        if calib_ds is None and eval_ds is not None:
            from edgekit.sequences import flatten_dataset

            calib_ds = flatten_dataset(eval_ds, loaded.input_shape)
        if data_is_quantized and loaded.kind != "tflite":
            raise InputError(f"{model_path}: --data-is-quantized needs a .tflite with an integer input; "
                             f"a {loaded.kind} model takes real values", "drop --data-is-quantized")
        several = len(loaded.input_shapes) > 1 or len(loaded.output_names) > 1
        if several and quant == "auto":
            raise InputError(f"{model_path}: --quant auto judges one output's accuracy; this model has "
                             f"{len(loaded.input_shapes)} inputs and {len(loaded.output_names)} outputs", "pass --quant int8 or int16x8")
        if loaded.kind == "tflite" and rec.stages:
            raise InputError(f"{model_path}: a .tflite cannot be compressed; drop --prune/--recipe or pass the Keras model")
        from edgekit.convert import CALIBRATED

        if loaded.kind != "tflite" and calib_ds is None and quant in (*CALIBRATED, "auto"):
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
        "data_is_quantized": data_is_quantized,
        "task": tasks.report_section(per_output, loaded.output_names),
        "quantization": {"scheme": quant if loaded.kind != "tflite" else "as given (.tflite input)",
                         "calibration": cal.label if quant in (*CALIBRATED, "auto") and loaded.kind != "tflite" else None},
    }

    compressed = loaded
    if rec.stages:
        with timer.stage("compress"):
            from edgekit.compress import apply_recipe

            result = apply_recipe(loaded, rec, train=train_ds, calib=calib_ds, seed=seed, progress=progress)
            compressed = result.model
            data["compression"] = result.stages

    float_tflite: bytes | None = None
    ptq_tflite: bytes | None = None
    if loaded.kind == "tflite":
        int8_tflite = loaded.tflite
    else:
        from edgekit.convert import convert_float, convert_quantized

        with timer.stage("convert"):
            float_tflite = convert_float(loaded)
        with timer.stage("quantize"):
            if quant == "auto":
                from edgekit.quant_auto import choose

                choice = choose(compressed, calib_ds, eval_ds, prof,
                                1.0 if gates.max_accuracy_drop is None else gates.max_accuracy_drop)
                compressed, int8_tflite = choice.model, choice.tflite
                data["quantization"].update({"scheme": choice.scheme, "calibration": choice.calibration.label, "auto": choice.to_dict()})
            else:
                int8_tflite = convert_quantized(compressed, calib_ds, quant, cal)
            # the baseline a recipe must beat: plain post-training quantization of the same input model
            ptq_tflite = (convert_quantized(loaded, calib_ds, data["quantization"]["scheme"], cal)
                          if rec.stages else None)

    from edgekit.tflite_model import read_model

    info = read_model(int8_tflite, name=str(model_path))
    data["ops"] = list(info.ops)
    if prof.is_mcu:
        from edgekit.tflm_compat import ensure_tflm

        ensure_tflm(info, allow_float=allow_float)
    else:  # LiteRT ships: a model it is known to corrupt memory on is refused before it runs (exit 4)
        from edgekit.litert_compat import ensure_litert

        ensure_litert(info, prof.name)

    with timer.stage("verify"):
        from edgekit.verify.host import verify_on_host

        checked = verify_on_host(loaded, compressed, float_tflite, int8_tflite, info, eval_ds or calib_ds, prof,
                                 max_eval, data_is_quantized=data_is_quantized, ptq_tflite=ptq_tflite)
        data.update(checked.sections)
        data["task"]["metrics"] = data.pop("task_metrics", None)
        for section, measured in zip(data["task"].get("outputs", ()), data.pop("task_outputs", ())):
            section["metrics"] = measured["metrics"]
        verify_x, failures = checked.inputs, list(checked.failures)

    if "VAR_HANDLE" in info.ops:  # TF's QuantizationDebugger corrupted the heap on resource variables (TF 2.21)
        data["quant_debug"] = {"skipped": "the model keeps state in resource variables, which TensorFlow's "
                                          "QuantizationDebugger cannot run"}
    elif compressed.kind != "tflite" and data["quantization"]["scheme"] == "int8" and calib_ds is not None and not calib_ds.multi_io:
        with timer.stage("diagnose"):
            data["quant_debug"] = _diagnose(compressed, calib_ds, eval_ds, prof, data, quant == "auto")

    with timer.stage("memory"):
        from edgekit import memory

        arena = None
        # a model whose largest activation exceeds the RAM budget is not probed (memory.arena_floor)
        if prof.is_mcu and not failures and memory.arena_floor(info) <= prof.ram_bytes:  # after a runtime crash nothing more runs the model
            from edgekit.tflm_host import measure_arena

            arena = measure_arena(int8_tflite)
            if data["quantization"]["scheme"] == "int16x8" and compressed.kind != "tflite":
                from edgekit.convert import convert_quantized
                from edgekit.quant_cost import int16_cost

                data["quantization"]["cost"] = int16_cost(arena, convert_quantized(compressed, calib_ds, "int8")).to_dict()
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
    from edgekit.verify.host import metric_drop_for, per_output_drops, verdict_for, warnings_for

    drop = metric_drop_for(data)
    data["task"].update({"primary_metric": drop.metric, "unit": drop.unit, "metric_drop": drop.drop})
    for section, d in zip(data["task"].get("outputs", ()), per_output_drops(data)):
        section.update({"primary_metric": d.metric, "unit": d.unit, "metric_drop": d.drop})
    verdict = verdict_for(data, gates)
    data["verdict"] = verdict.to_dict()
    data["warnings"] = warnings_for(data)
    if failures:
        data["failures"] = failures

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
            # firmware for a model that cannot fit would not link; none for a model a runtime crashed on
            if budget_error is None and not failures:
                data["outputs"] = _emit(tmp, prof, int8_tflite, info, arena, verify_x, codegen, allow_float)
        from edgekit.verify.shipped import hash_files

        data["shipped"] = hash_files(tmp)
        data["stages"] = timer.stages
        report = Report(data=data, out_dir=out)
        report.write(tmp)
    if failures:  # before the budget: without the runtime that crashed, the memory figures are estimates only
        raise VerificationError(f"{model_path}: {failures[0]}", "the other runtimes' numbers are in report.json; the failed runtime is marked there")
    if budget_error is not None:
        raise budget_error
    gate_error = verdict.error()
    if gate_error is not None:
        raise gate_error
    return report


def _check_quant(quant: str, calibration: str | None, prof: TargetProfile):
    """The parsed calibration method; :class:`InputError` for an unknown scheme or one the target's runtime cannot run."""
    from edgekit.calibrate import Calibration
    from edgekit.convert import check_scheme

    if quant != "auto":
        check_scheme(quant)
    if prof.is_mcu and quant in ("float16", "dynamic"):
        raise InputError(f"--quant {quant} is for Linux targets: {prof.name} runs TFLM, which has no hybrid (dynamic-range) or float16-weight kernels",
                         "use --quant int8 or int16x8")
    cal = Calibration.parse(calibration)
    if cal.method != "minmax" and quant not in ("int8",):
        raise InputError(f"--calibration {cal.label} works with --quant int8 only", "drop --calibration, or use --quant int8")
    return cal


HINT_DROP_POINTS = 1.0  # accuracy lost (points) above which the build measures remedies and prints a hint
DIAGNOSE_SAMPLES = 32


def _diagnose(model: LoadedModel, calib: Dataset, ev: Dataset | None, prof: TargetProfile, data: dict[str, Any], auto: bool) -> dict[str, Any]:
    """Per-layer int8 error (five worst layers by Keras name); past :data:`HINT_DROP_POINTS`, the measured remedies and a one-line hint."""
    from edgekit.errors import ConversionError
    from edgekit.quant_debug import layer_errors

    try:
        rep = layer_errors(model, calib, ev, max_samples=DIAGNOSE_SAMPLES)
    except ConversionError as exc:  # e.g. a QAT model: already quantized, the debugger cannot re-quantize it
        return {"error": exc.one_line(), "worst_layers": [], "hint": None}
    worst = rep.worst_layers(5)
    out: dict[str, Any] = {
        "samples": rep.samples,
        "runtime": "TFLite QuantizationDebugger (int8 op vs float op on the dequantized inputs, min-max ranges)",
        "worst_layers": [{"layer": w.layer or w.name, "op": w.op, "rmse_over_scale": round(w.rmse_over_scale, 4), "rmse": round(w.rmse, 6)} for w in worst],
        "hint": None,
    }
    acc = data["accuracy"]
    deployed = acc.get("int8_tflm") if prof.is_mcu and acc.get("int8_tflm") is not None else acc.get("int8_tflite")
    if acc.get("float") is None or deployed is None or not worst:
        return out
    drop = 100 * (acc["float"] - deployed)
    if drop <= HINT_DROP_POINTS:
        return out
    where = f"accuracy dropped {drop:.1f} points; worst layer {worst[0].layer or worst[0].name} ({worst[0].rmse_over_scale:.1f} quantization steps RMS error)"
    if auto:
        out["hint"] = f"{where}; no scheme --quant auto tried held the accuracy (see quantization.auto); try a qat recipe with --train"
        return out
    from edgekit.quant_auto import measure_remedies

    remedies = measure_remedies(model, calib, ev, prof)
    out["remedies"] = [{"flag": flag, "accuracy": a.accuracy, "drop_points": a.drop_points, "fits": a.fits} for flag, a in remedies]
    helped = sorted((a.drop_points, flag) for flag, a in remedies if a.fits and a.drop_points < drop - HINT_DROP_POINTS)
    if helped:
        measured = ", ".join(f"{flag} loses {d:.1f}" for d, flag in helped)
        out["hint"] = f"{where}; measured: {measured} points: use {helped[0][1]}"
    else:
        out["hint"] = f"{where}; --recipe equalize, --quant int16x8 and --calibration mse did not help (measured); try a qat recipe with --train"
    return out


def _recipe(recipe: Any, prune: float | None, epochs: int):
    from edgekit.recipe import Recipe

    if recipe is not None:
        if isinstance(recipe, Recipe):
            return recipe
        return Recipe.load(recipe)
    return Recipe.from_cli(prune=prune, fine_tune_epochs=epochs)


def _summary(d: dict[str, Any]) -> dict[str, Any]:
    acc = d["accuracy"]
    # the TFLM interpreter's numbers when it ran (also for tasks without an accuracy, e.g. regression)
    ran_tflm = acc.get("int8_tflm") is not None or d.get("agreement", {}).get("deployed_runtime") == "tflm-host"
    deploy = "int8_tflm" if d["target"]["runtime"] == "tflm" and ran_tflm else "int8_tflite"
    lost = None
    if acc.get("float") is not None and acc.get(deploy) is not None:
        lost = round(acc["float"] - acc[deploy], 6)
    return {
        "compression_ratio": d["sizes"]["compression_ratio"],
        # a microcontroller has no LiteRT: the host ratio is not its speed-up (see emulator.instructions_per_inference)
        "speedup": None if d["target"]["runtime"] == "tflm" else d["speedup"]["host_latency_ratio"],
        "speedup_source": "no device figure (microcontroller target)" if d["target"]["runtime"] == "tflm" else "litert-default, build host",
        "accuracy_lost": lost,
        "accuracy_deployed_runtime": deploy,
    }


def _emit(folder: Path, prof: TargetProfile, tflite: bytes, info, arena, x_model: tuple[np.ndarray, ...], codegen: bool,
          allow_float: bool) -> dict[str, Any]:
    """Write the deployable files for the target into ``folder``; return what was written."""
    written: dict[str, Any] = {"model": "model.tflite"}
    if not prof.is_mcu:
        from edgekit.emit_rpi import emit_rpi

        written.update(emit_rpi(folder))
        return written
    from edgekit.emit_tflm import emit_tflm_project

    emit_tflm_project(tflite, prof, folder / "tflm", arena=arena, sample_input=tuple(x[0] for x in x_model), allow_float=allow_float)
    written["tflm_project"] = "tflm/"
    if codegen:
        from edgekit.aot.codegen import generate

        res = generate(tflite, folder / "aot")
        written["aot"] = {"folder": "aot/", **res.to_dict()}
    return written
