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
    runtimes, verified_on, latency, speedup, ptq_baseline, and the task
    metrics: ``task_metrics`` for one output, ``task_outputs`` per output for
    several); ``inputs`` the verified inputs in the model's input domain, one
    array per model input; ``failures`` one line per runtime that crashed
    (its numbers are None).
    """

    sections: dict[str, Any]
    inputs: tuple[np.ndarray, ...]
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
    from edgekit.verify.runtimes import dequantize
    from edgekit.verify.inputs import to_input_domain
    from edgekit.verify.isolated import Leg, run_legs

    out: dict[str, Any] = {"accuracy": {"float": None, "int8_tflite": None, "int8_tflite_ref": None, "int8_tflm": None}}
    out["agreement"] = {"int8_vs_float_top1": None, "tflm_vs_tflite_bit_exact": None}
    out["runtimes"] = {}
    if ds is None:
        # a .tflite input without data: generated inputs still check bit-exactness
        rng = np.random.default_rng(0)
        xs_model = []
        for spec in info.inputs:
            shape = (32, *spec.shape[1:])
            dtype = np.dtype(spec.dtype)
            xs_model.append(rng.integers(-128, 128, size=shape).astype(dtype) if np.issubdtype(dtype, np.integer)
                            else rng.random(shape, dtype=np.float32))
        x_model = tuple(xs_model)
        source = "generated (seed 0)"
    calls = None  # sequences of calls (edgekit.sequences): every leg resets the state between sequences only
    if ds is not None:
        ds = take(ds, max_eval)
        if not ds.multi_io:  # data.check_against_input refuses sequences for several inputs or outputs
            calls = calls_per_sequence(ds.x.shape, info.inputs[0].shape)
        x_model = tuple(to_input_domain(flatten_calls(x, calls), spec, data_is_quantized=data_is_quantized,
                                        source_dtype=spec.dtype if loaded.kind == "tflite" else "float32", path=ds.path)
                        for x, spec in zip(ds.xs, info.inputs))
        source = str(ds.path)
    out["verified_on"] = {"source": source, "samples": int(len(x_model[0])), "labels": ds is not None and ds.has_labels}
    if calls:
        out["verified_on"] |= {"sequences": int(len(ds)), "calls_per_sequence": calls,
                               "scored_on": "each sequence's last call; bit-exactness on every call"}

    from edgekit.litert_compat import litert_skip_reason
    from edgekit.tflm_compat import check_tflm

    # a model LiteRT is known to corrupt memory on: not run for a microcontroller (the pipeline refuses it for Linux)
    skip_litert = litert_skip_reason(info, prof.name) if prof.is_mcu else None
    if skip_litert:
        out["verified_on"]["not_run"] = {"runtimes": ["litert-default", "litert-ref"], "reason": skip_litert}
    models: dict[str, bytes] = {"int8": int8_tflite}
    inputs: dict[str, tuple[np.ndarray, ...]] = {"int8": x_model}
    legs = [] if skip_litert else [Leg("int8_tflite", "litert", "int8", "int8", calls),
                                   Leg("int8_tflite_ref", "litert-ref", "int8", "int8", calls)]
    run_tflm = not check_tflm(info, allow_float=True)
    if run_tflm:
        legs.append(Leg("int8_tflm", "tflm", "int8", "int8", calls))
    if not skip_litert:
        legs.append(Leg("latency_int8", "latency", "int8"))
    if float_tflite is not None:
        models["float"] = float_tflite
        if not skip_litert:
            legs.append(Leg("latency_float", "latency", "float"))
        if not loaded.is_keras and ds is not None:
            inputs["float"] = tuple(flatten_calls(x, calls).astype(np.float32) for x in ds.xs)
            legs.append(Leg("float", "litert", "float", "float", calls))
    if ptq_tflite is not None:
        models["ptq"] = ptq_tflite
        legs.append(Leg("ptq_int8", "tflm" if prof.is_mcu and run_tflm else "litert", "ptq", "int8", calls))
    res = run_legs(models, inputs, legs)

    outs: dict[str, tuple[np.ndarray, ...]] = {}
    if loaded.is_keras and ds is not None:
        outs["float"] = _keras_outputs(loaded.model, ds, calls)
        out["runtimes"]["accuracy.float"] = "keras (float32, the input model before compression)"
        if compressed is not loaded:
            compressed_out = tuple(last_calls(o, calls) for o in _keras_outputs(compressed.model, ds, calls))
            out["accuracy"]["float_compressed"] = _accuracy(compressed_out, ds)
    elif "float" in res and res["float"].ok:
        outs["float"] = res["float"].outputs
        out["runtimes"]["accuracy.float"] = "litert-default (float .tflite)"
    for name, label in (("int8_tflite", "litert-default (LiteRT default kernels, XNNPACK)"),
                        ("int8_tflite_ref", "litert-ref (LiteRT reference kernels)")):
        if skip_litert:
            out["runtimes"][f"accuracy.{name}"] = f"skipped: {skip_litert}"
            continue
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
            pairs = list(zip(outs["int8_tflm"], outs["int8_tflite_ref"]))
            out["agreement"]["tflm_vs_tflite_bit_exact"] = metrics.bit_exact_fraction(*map(metrics.join_outputs, zip(*pairs)))
            out["agreement"]["tflm_vs_tflite_max_lsb"] = max(metrics.max_abs_diff(a, b) for a, b in pairs)
    if calls:  # the metrics score each sequence's last call
        outs = {k: tuple(last_calls(o, calls) for o in per) for k, per in outs.items()}
        res = {k: (replace(r, outputs=tuple(last_calls(o, calls) for o in r.outputs)) if r.outputs is not None else r)
               for k, r in res.items()}
        ds = replace(ds, x=ds.x[:, -1])
    multi = len(info.outputs) > 1
    tasks = ds.tasks if ds is not None else ("classification",) * len(info.outputs)
    if ds is not None:
        per_output = [_task_metrics(tasks[j], {k: o[j] for k, o in outs.items()}, info, j, x_model, ds, data_is_quantized)
                      for j in range(len(info.outputs))]
        if loaded.is_keras and compressed is not loaded:  # the recipe's float model: what compression alone cost
            for j, m in enumerate(per_output):
                m["float_compressed"] = _task_metrics(tasks[j], {"float": compressed_out[j]}, info, j, x_model, ds,
                                                      data_is_quantized)["float"]
        if multi:
            out["task_outputs"] = [{"output": spec.name, "index": j, "metrics": m} for j, (spec, m) in enumerate(zip(info.outputs, per_output))]
        else:
            out["task_metrics"] = per_output[0]
            if tasks[0] == "binary" and "float_compressed" in out["accuracy"]:
                out["accuracy"]["float_compressed"] = out["task_metrics"]["float_compressed"]["accuracy"]
    if not multi:
        for key, o in outs.items():
            # binary: the accuracy at 0.5 of the one sigmoid unit, so the accuracy gates and summary apply as they are
            out["accuracy"][key] = out["task_metrics"][key]["accuracy"] if tasks[0] == "binary" else metrics.accuracy(o[0], ds.y if ds else None)
    else:
        out["runtimes"]["accuracy"] = "several outputs: each output's metrics, per runtime, are in task.outputs"
    deploy = "int8_tflm" if prof.is_mcu and "int8_tflm" in outs else "int8_tflite"
    out["agreement"]["deployed_runtime"] = "tflm-host" if deploy == "int8_tflm" else "litert-default"
    if "float" in outs and deploy in outs:
        agree = [metrics.top1_agreement(a, b) for a, b in zip(outs[deploy], outs["float"])]
        out["agreement"]["int8_vs_float_top1"] = agree[0] if not multi else min((a for a in agree if a is not None), default=None)
        abs_diff = [metrics.max_abs_diff(dequantize(a, spec), b.reshape(a.shape))
                    for a, b, spec in zip(outs[deploy], outs["float"], info.outputs) if not metrics.is_classifier(b)]
        if abs_diff:
            out["agreement"]["int8_vs_float_max_abs"] = max(abs_diff)
    if "ptq_int8" in res:
        out["ptq_baseline"] = ptq_baseline(res["ptq_int8"], _accuracy(outs[deploy], ds) if deploy in outs and ds is not None else None, ds)
    out["runtimes"]["agreement.tflm_vs_tflite_bit_exact"] = (f"not measured: {skip_litert}" if skip_litert
                                                             else "tflm-host vs litert-ref, every output element")
    out["latency"] = {"int8_ms": None, "float_ms": None, "runtime": "litert-default", "label": "host-measured (build machine), not a device figure"}
    out["speedup"] = {"host_latency_ratio": None}
    lat_int8, lat_f = res.get("latency_int8"), res.get("latency_float")  # no latency legs when LiteRT is not run
    if lat_int8 is not None and lat_int8.ok:
        out["latency"]["int8_ms"] = round(lat_int8.latency_ms, 5)
        if lat_f is not None and lat_f.ok:
            out["latency"]["float_ms"] = round(lat_f.latency_ms, 5)
            out["speedup"]["host_latency_ratio"] = round(lat_f.latency_ms / lat_int8.latency_ms, 4) if lat_int8.latency_ms > 0 else None
    if lat_int8 is None:
        out["runtimes"]["speedup.host_latency_ratio"] = f"skipped: {skip_litert}"
    elif not lat_int8.ok or (lat_f is not None and not lat_f.ok):
        out["runtimes"]["speedup.host_latency_ratio"] = f"failed: {(lat_int8 if not lat_int8.ok else lat_f).failure()}"
    else:
        out["runtimes"]["speedup.host_latency_ratio"] = "litert-default on the build host, float .tflite vs int8 .tflite, single thread"
    failures = [r.failure() for r in res.values() if r.crash]  # a native crash is a verification failure, whichever leg
    if prof.is_mcu:
        out["runtimes"]["speedup.device"] = "no device figure: the host LiteRT ratio says nothing about a microcontroller; run `edgekit verify --emulator` for instructions per inference"
    return HostVerification(sections=out, inputs=x_model, failures=tuple(failures))


def _keras_outputs(model, ds: Dataset, calls: int | None) -> tuple[np.ndarray, ...]:
    """Float outputs of a Keras model on ``ds``; a streaming model (stateful layers) runs call by call, one row per call."""
    from edgekit.keras_state import run_calls, stateful_layers
    from edgekit.verify.runtimes import run_keras_io

    if stateful_layers(model):  # rows that are not sequences are independent calls, each from a reset state
        return (run_calls(model, flatten_calls(ds.x, calls), calls or 1),)
    return run_keras_io(model, ds.x)


def _accuracy(outs: tuple[np.ndarray, ...], ds: Dataset | None) -> float | None:
    """Top-1 accuracy of a one-output model's outputs (None for several outputs: they are judged per output)."""
    from edgekit.verify import metrics

    if ds is None or len(outs) != 1:
        return None
    return metrics.accuracy(outs[0], ds.y)


def _task_metrics(task: str, outs: dict[str, np.ndarray], info, j: int, x_model: tuple[np.ndarray, ...], ds: Dataset,
                  data_is_quantized: bool) -> dict[str, dict[str, float | None]]:
    """Per runtime, output ``j``'s task metrics (:func:`edgekit.verify.metrics.task_metrics`) on real values."""
    from edgekit.verify import metrics
    from edgekit.verify.runtimes import dequantize

    x_real = dequantize(x_model[0], info.inputs[0]) if data_is_quantized else ds.xs[0].astype(np.float32)
    spec = info.outputs[j]
    real = {k: (o if k == "float" else dequantize(o, spec)) for k, o in outs.items()}
    return {k: metrics.task_metrics(task, o.reshape(len(o), *spec.shape[1:]), x_real, ds.ys[j]) for k, o in real.items()}


def ptq_baseline(r, deployed_accuracy: float | None, ds: Dataset | None) -> dict[str, Any]:
    """Plain post-training int8 of the input model on the deployed runtime, against the recipe's result."""
    if not r.ok:
        return {"accuracy": None, "runtime": r.leg.runtime, "error": r.failure(), "recipe_worse": None}
    acc = _accuracy(r.outputs, ds)
    worse = None if acc is None or deployed_accuracy is None else bool(deployed_accuracy < acc)
    return {
        "accuracy": acc,
        "runtime": r.leg.runtime,
        "recipe_worse": worse,
        "better_recipe": "none (plain post-training int8)" if worse else None,
    }


def verdict_for(d: dict[str, Any], gates: Gates) -> Verdict:
    """The user's gates against the deployed runtime's numbers in the report data ``d``.

    With several outputs ``--max-metric-drop`` applies to every output and the
    accuracy gates to every output that has an accuracy (classification,
    binary); each gate's result is the worst output's, named in its detail.
    """
    from edgekit.verify.gates import check

    deploy = d["summary"]["accuracy_deployed_runtime"]
    agree = d["agreement"]
    runtime = agree.get("deployed_runtime") or deploy
    outputs = (d.get("task") or {}).get("outputs")
    if not outputs:
        return check(gates, float_accuracy=d["accuracy"].get("float"), deployed_accuracy=d["accuracy"].get(deploy),
                     deployed_runtime=runtime, bit_exact=agree.get("tflm_vs_tflite_bit_exact"),
                     bit_exact_what=_bit_exact_what(d), metric_drop=metric_drop_for(d))
    # the accuracy gates judge the outputs that have an accuracy (classification, binary); all of them when none has
    scored = [s for s in outputs if s["name"] in ("classification", "binary")] or outputs
    accuracy_gates = replace(gates, require_bit_exact=False, max_metric_drop=None)
    per: dict[str, list] = {}
    for section, drop in zip(outputs, per_output_drops(d)):
        m = section.get("metrics") or {}
        acc = lambda k: (m.get(k) or {}).get("accuracy")  # noqa: E731
        judged = [check(Gates(max_metric_drop=gates.max_metric_drop), float_accuracy=None, deployed_accuracy=None,
                        deployed_runtime=runtime, bit_exact=None, bit_exact_what="", metric_drop=drop)]
        if section in scored:
            judged.append(check(accuracy_gates, float_accuracy=acc("float"), deployed_accuracy=acc(deploy),
                                deployed_runtime=runtime, bit_exact=None, bit_exact_what=""))
        for v in judged:
            for g in v.gates:
                per.setdefault(g.gate, []).append((section["output"], g))
    results = []
    for candidates in per.values():
        name, worst = min(candidates, key=lambda c: _badness(c[1]))
        results.append(replace(worst, detail=f"output {name}: {worst.detail}"))
    bits = check(Gates(require_bit_exact=gates.require_bit_exact), float_accuracy=None, deployed_accuracy=None,
                 deployed_runtime=runtime, bit_exact=agree.get("tflm_vs_tflite_bit_exact"), bit_exact_what=_bit_exact_what(d))
    return Verdict((*results, *bits.gates))


def _bit_exact_what(d: dict[str, Any]) -> str:
    """What the build's bit-exactness compares, and why it was not measured when LiteRT was not run."""
    not_run = (d.get("verified_on") or {}).get("not_run")
    return "tflm-host vs litert-ref" + (f"; {not_run['reason']}" if not_run else "")


def _badness(g) -> tuple:
    """Sort key: failed before passed, unmeasured first, then the furthest past (or nearest to) the limit."""
    if g.value is None:
        return (0, 0.0)
    over = (g.limit - g.value) if g.gate == "min-accuracy" else (g.value - g.limit)
    return (0 if not g.passed else 1, -over)


def per_output_drops(d: dict[str, Any]) -> list:
    """Each output's :class:`~edgekit.verify.gates.MetricDrop`, float vs the deployed runtime (empty for one output)."""
    from edgekit.verify.gates import MetricDrop
    from edgekit.verify.metrics import PRIMARY, metric_drop

    deploy = d["summary"]["accuracy_deployed_runtime"]
    out = []
    for section in (d.get("task") or {}).get("outputs") or ():
        per = section.get("metrics") or {}
        name, _, unit = PRIMARY[section["name"]]
        ref, dep = per.get("float") or {}, per.get(deploy) or {}
        out.append(MetricDrop(section["name"], name, unit, ref.get(name), dep.get(name), metric_drop(section["name"], ref, dep)))
    return out


def metric_drop_for(d: dict[str, Any]):
    """The task's primary metric, float vs the deployed runtime, from the report data ``d`` (None without a task section).

    With several outputs: the output whose drop is largest (an unmeasured drop first).
    """
    from edgekit.verify.gates import MetricDrop
    from edgekit.verify.metrics import PRIMARY, metric_drop

    task = d.get("task") or {}
    if "name" not in task:
        return None
    if task.get("outputs"):
        drops = per_output_drops(d)
        return max(drops, key=lambda m: float("inf") if m.drop is None else m.drop)
    per = task.get("metrics") or {}
    deploy = d["summary"]["accuracy_deployed_runtime"]
    name, _, unit = PRIMARY[task["name"]]
    ref, dep = per.get("float") or {}, per.get(deploy) or {}
    return MetricDrop(task["name"], name, unit, ref.get(name), dep.get(name), metric_drop(task["name"], ref, dep))


def warnings_for(d: dict[str, Any]) -> list[str]:
    """Facts the user should see even when no gate failed."""
    out = []
    not_run = (d.get("verified_on") or {}).get("not_run")
    if not_run:
        out.append(not_run["reason"])
    base = d.get("ptq_baseline") or {}
    if base.get("recipe_worse"):
        deploy = d["summary"]["accuracy_deployed_runtime"]
        out.append(f"recipe {d['recipe'].get('name') or 'given'} made the deployed model worse than plain post-training int8: "
                   f"{100 * d['accuracy'][deploy]:.2f} % vs {100 * base['accuracy']:.2f} % on {base['runtime']}; "
                   f"better: {base['better_recipe']}")
    return out
