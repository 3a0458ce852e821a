"""The build's verification on the host: every runtime on the same inputs, then the user's gates.

:func:`verify_on_host` runs the float model (Keras in this process, or the
float ``.tflite``), LiteRT (default and reference kernels) and the TFLM
interpreter (both in child processes, :mod:`edgekit.verify.isolated`) on the
eval data brought into the model's input domain (:mod:`edgekit.verify.inputs`),
and, for a recipe, plain post-training int8 of the input model as the baseline
the recipe must beat. :func:`verdict_for` and :func:`warnings_for` judge the
finished report data. Eval data of sequences (``[N, T, *input]``,
:mod:`edgekit.sequences`) runs as N sequences of T calls on every leg; the
metrics score each sequence's last call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgekit.data import Dataset, take
from edgekit.errors import UnsupportedOpError, VerificationError
from edgekit.sequences import calls_per_sequence, flatten_calls, last_calls
from edgekit.verify.gates import Gates, Verdict


@dataclass(frozen=True)
class HostVerification:
    """What :func:`verify_on_host` measured.

    ``sections`` are the report sections it fills (accuracy, agreement,
    runtimes, verified_on, latency, speedup, ptq_baseline); ``inputs`` the
    verified inputs in the model's input domain; ``failures`` one line per
    runtime that crashed (its numbers are None).
    """

    sections: dict[str, Any]
    inputs: np.ndarray
    failures: tuple[str, ...]


def verify_on_host(loaded, compressed, float_tflite: bytes | None, int8_tflite: bytes, info, ds: Dataset | None, prof,
                   max_eval: int | None, *, data_is_quantized: bool = False, ptq_tflite: bytes | None = None) -> HostVerification:
    """Run every runtime on the eval (or calibration) inputs; accuracy, agreement, bit-exactness, latency.

    LiteRT and TFLM run in child processes (:mod:`edgekit.verify.isolated`).
    ``loaded``/``compressed`` are the input model and the model after the
    recipe; ``ds`` the eval (or calibration) data, None for a ``.tflite``
    without data (seeded generated inputs then check bit-exactness).
    """
    from edgekit.verify import metrics
    from edgekit.verify.runtimes import run_keras
    from edgekit.verify.inputs import to_input_domain
    from edgekit.verify.isolated import Leg, run_legs

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
    calls = None  # sequences of calls (edgekit.sequences): every leg resets the state between sequences only
    if ds is not None:
        ds = take(ds, max_eval)
        calls = calls_per_sequence(ds.x.shape, info.inputs[0].shape)
        source_dtype = info.inputs[0].dtype if loaded.kind == "tflite" else "float32"
        x_model = to_input_domain(flatten_calls(ds.x, calls), info.inputs[0], data_is_quantized=data_is_quantized,
                                  source_dtype=source_dtype, path=ds.path)
        y, source = ds.y, str(ds.path)
    out["verified_on"] = {"source": source, "samples": int(len(x_model)), "labels": y is not None}
    if calls:
        out["verified_on"] |= {"sequences": int(len(ds)), "calls_per_sequence": calls,
                               "scored_on": "each sequence's last call; bit-exactness on every call"}

    from edgekit.tflm_compat import check_tflm

    models: dict[str, bytes] = {"int8": int8_tflite}
    inputs: dict[str, np.ndarray] = {"int8": x_model}
    legs = [Leg("int8_tflite", "litert", "int8", "int8", calls),
            Leg("int8_tflite_ref", "litert-ref", "int8", "int8", calls)]
    run_tflm = not check_tflm(info, allow_float=True)
    if run_tflm:
        legs.append(Leg("int8_tflm", "tflm", "int8", "int8", calls))
    legs.append(Leg("latency_int8", "latency", "int8"))
    if float_tflite is not None:
        models["float"] = float_tflite
        legs.append(Leg("latency_float", "latency", "float"))
        if not loaded.is_keras and ds is not None:
            inputs["float"] = flatten_calls(ds.x, calls).astype(np.float32)
            legs.append(Leg("float", "litert", "float", "float", calls))
    if ptq_tflite is not None:
        models["ptq"] = ptq_tflite
        legs.append(Leg("ptq_int8", "tflm" if prof.is_mcu and run_tflm else "litert", "ptq", "int8", calls))
    res = run_legs(models, inputs, legs)

    outs: dict[str, np.ndarray] = {}
    if loaded.is_keras and ds is not None:
        outs["float"] = run_keras(loaded.model, ds.x)
        out["runtimes"]["accuracy.float"] = "keras (float32, the input model before compression)"
        if compressed is not loaded:
            compressed_out = run_keras(compressed.model, ds.x)
            out["accuracy"]["float_compressed"] = metrics.accuracy(compressed_out, y)
    elif "float" in res and res["float"].ok:
        outs["float"] = res["float"].outputs
        out["runtimes"]["accuracy.float"] = "litert-default (float .tflite)"
    for name, label in (("int8_tflite", "litert-default (LiteRT default kernels, XNNPACK)"),
                        ("int8_tflite_ref", "litert-ref (LiteRT reference kernels)")):
        r = res[name]
        if r.ok:
            outs[name] = r.outputs
            out["runtimes"][f"accuracy.{name}"] = label
        elif r.crash:
            out["runtimes"][f"accuracy.{name}"] = f"failed: {r.failure()}"
        elif not prof.is_mcu:
            raise VerificationError(f"{loaded.path}: LiteRT, the runtime of {prof.name}, cannot load the model: {r.error}")
        else:
            out["runtimes"][f"accuracy.{name}"] = f"skipped: LiteRT cannot load this model ({r.error}); TFLM can"
    if run_tflm:
        r = res["int8_tflm"]
        if r.error_type == "UnsupportedOpError":
            raise UnsupportedOpError(f"{loaded.path}: {r.error}", "run `edgekit inspect MODEL.tflite` to see which ops TFLM lacks")
        if r.ok:
            outs["int8_tflm"] = r.outputs
            out["runtimes"]["accuracy.int8_tflm"] = "tflm-host (tflite-micro interpreter, reference kernels)"
        else:
            out["runtimes"]["accuracy.int8_tflm"] = f"failed: {r.failure()}"
        if "int8_tflm" in outs and "int8_tflite_ref" in outs:
            out["agreement"]["tflm_vs_tflite_bit_exact"] = metrics.bit_exact_fraction(outs["int8_tflm"], outs["int8_tflite_ref"])
            out["agreement"]["tflm_vs_tflite_max_lsb"] = metrics.max_abs_diff(outs["int8_tflm"], outs["int8_tflite_ref"])
    if calls:  # the metrics score each sequence's last call
        outs = {k: last_calls(o, calls) for k, o in outs.items()}
        res = {k: (replace(r, outputs=last_calls(r.outputs, calls)) if r.outputs is not None else r) for k, r in res.items()}
        ds = replace(ds, x=ds.x[:, -1])
    task = ds.task if ds is not None else "classification"
    if ds is not None:
        out["task_metrics"] = _task_metrics(task, outs, info, x_model, ds, data_is_quantized)
        if loaded.is_keras and compressed is not loaded:  # the recipe's float model: what compression alone cost
            out["task_metrics"]["float_compressed"] = _task_metrics(task, {"float": compressed_out}, info, x_model, ds,
                                                                    data_is_quantized)["float"]
        if task == "binary" and "float_compressed" in out["accuracy"]:
            out["accuracy"]["float_compressed"] = out["task_metrics"]["float_compressed"]["accuracy"]
    for key, o in outs.items():
        # binary: the accuracy at 0.5 of the one sigmoid unit, so the accuracy gates and summary apply as they are
        out["accuracy"][key] = out["task_metrics"][key]["accuracy"] if task == "binary" else metrics.accuracy(o, y)
    deploy = "int8_tflm" if prof.is_mcu and "int8_tflm" in outs else "int8_tflite"
    out["agreement"]["deployed_runtime"] = "tflm-host" if deploy == "int8_tflm" else "litert-default"
    if "float" in outs and deploy in outs:
        out["agreement"]["int8_vs_float_top1"] = metrics.top1_agreement(outs[deploy], outs["float"])
        if not metrics.is_classifier(outs["float"]):
            from edgekit.verify.runtimes import dequantize

            deq = dequantize(outs[deploy], info.outputs[0])
            out["agreement"]["int8_vs_float_max_abs"] = metrics.max_abs_diff(deq, outs["float"].reshape(deq.shape))
    if "ptq_int8" in res:
        out["ptq_baseline"] = ptq_baseline(res["ptq_int8"], metrics.accuracy(outs[deploy], y) if deploy in outs else None, y)
    out["runtimes"]["agreement.tflm_vs_tflite_bit_exact"] = "tflm-host vs litert-ref, every output element"
    out["latency"] = {"int8_ms": None, "float_ms": None, "runtime": "litert-default", "label": "host-measured (build machine), not a device figure"}
    out["speedup"] = {"host_latency_ratio": None}
    lat_int8, lat_f = res["latency_int8"], res.get("latency_float")
    if lat_int8.ok:
        out["latency"]["int8_ms"] = round(lat_int8.latency_ms, 5)
        if lat_f is not None and lat_f.ok:
            out["latency"]["float_ms"] = round(lat_f.latency_ms, 5)
            out["speedup"]["host_latency_ratio"] = round(lat_f.latency_ms / lat_int8.latency_ms, 4) if lat_int8.latency_ms > 0 else None
    out["runtimes"]["speedup.host_latency_ratio"] = "litert-default on the build host, float .tflite vs int8 .tflite, single thread"
    if not lat_int8.ok or (lat_f is not None and not lat_f.ok):
        out["runtimes"]["speedup.host_latency_ratio"] = f"failed: {(lat_int8 if not lat_int8.ok else lat_f).failure()}"
    failures = [r.failure() for r in res.values() if r.crash]  # a native crash is a verification failure, whichever leg
    if prof.is_mcu:
        out["runtimes"]["speedup.device"] = "no device figure: the host LiteRT ratio says nothing about a microcontroller; run `edgekit verify --emulator` for instructions per inference"
    return HostVerification(sections=out, inputs=x_model, failures=tuple(failures))


def _task_metrics(task: str, outs: dict[str, np.ndarray], info, x_model: np.ndarray, ds: Dataset,
                  data_is_quantized: bool) -> dict[str, dict[str, float | None]]:
    """Per runtime, the task's metrics (:func:`edgekit.verify.metrics.task_metrics`) on real-valued outputs and inputs."""
    from edgekit.verify import metrics
    from edgekit.verify.runtimes import dequantize

    x_real = dequantize(x_model, info.inputs[0]) if data_is_quantized else ds.x.astype(np.float32)
    real = {k: (o if k == "float" else dequantize(o, info.outputs[0])) for k, o in outs.items()}
    return {k: metrics.task_metrics(task, o.reshape(len(o), *info.outputs[0].shape[1:]), x_real, ds.y) for k, o in real.items()}


def ptq_baseline(r, deployed_accuracy: float | None, y) -> dict[str, Any]:
    """Plain post-training int8 of the input model on the deployed runtime, against the recipe's result."""
    from edgekit.verify import metrics

    if not r.ok:
        return {"accuracy": None, "runtime": r.leg.runtime, "error": r.failure(), "recipe_worse": None}
    acc = metrics.accuracy(r.outputs, y)
    worse = None if acc is None or deployed_accuracy is None else bool(deployed_accuracy < acc)
    return {
        "accuracy": acc,
        "runtime": r.leg.runtime,
        "recipe_worse": worse,
        "better_recipe": "none (plain post-training int8)" if worse else None,
    }


def verdict_for(d: dict[str, Any], gates: Gates) -> Verdict:
    """The user's gates against the deployed runtime's numbers in the report data ``d``."""
    from edgekit.verify.gates import check

    deploy = d["summary"]["accuracy_deployed_runtime"]
    agree = d["agreement"]
    return check(gates, float_accuracy=d["accuracy"].get("float"), deployed_accuracy=d["accuracy"].get(deploy),
                 deployed_runtime=agree.get("deployed_runtime") or deploy,
                 bit_exact=agree.get("tflm_vs_tflite_bit_exact"), bit_exact_what="tflm-host vs litert-ref",
                 metric_drop=metric_drop_for(d))


def metric_drop_for(d: dict[str, Any]):
    """The task's primary metric, float vs the deployed runtime, from the report data ``d`` (None without a task section)."""
    from edgekit.verify.gates import MetricDrop
    from edgekit.verify.metrics import PRIMARY, metric_drop

    task = d.get("task") or {}
    if "name" not in task:
        return None
    per = task.get("metrics") or {}
    deploy = d["summary"]["accuracy_deployed_runtime"]
    name, _, unit = PRIMARY[task["name"]]
    ref, dep = per.get("float") or {}, per.get(deploy) or {}
    return MetricDrop(task["name"], name, unit, ref.get(name), dep.get(name), metric_drop(task["name"], ref, dep))


def warnings_for(d: dict[str, Any]) -> list[str]:
    """Facts the user should see even when no gate failed."""
    out = []
    base = d.get("ptq_baseline") or {}
    if base.get("recipe_worse"):
        deploy = d["summary"]["accuracy_deployed_runtime"]
        out.append(f"recipe {d['recipe'].get('name') or 'given'} made the deployed model worse than plain post-training int8: "
                   f"{100 * d['accuracy'][deploy]:.2f} % vs {100 * base['accuracy']:.2f} % on {base['runtime']}; "
                   f"better: {base['better_recipe']}")
    return out
