#!/usr/bin/env python3
"""Run an edgekit build's model.tflite on a Raspberry Pi (or any Linux board).

Shipped by edgekit beside model.tflite. It needs only numpy and one of
``ai-edge-litert`` (preferred) or ``tflite-runtime`` (the fallback, with
numpy<2); it does not import edgekit. Python 3.9+.

    python run.py INPUTS [--model PATH] [--output OUT.npy] [--raw]
                  [--reference-kernels] [--runtime {auto,litert,tflite_runtime}]
                  [--threads N] [--json]

INPUTS is a .npy of inputs ``[N, ...]`` or a .npz with ``x`` (and optional
integer labels ``y``, which turn on top-1 accuracy). Each sample runs on its
own (batch 1), after a reset of the model's variables (an LSTM's state). A
model with several inputs takes a .npz with one array per input, ``x0``,
``x1``, ... in the model's input order or ``x_<input name>``; with several
outputs, labels are ``y0``, ``y1``, ... (or ``y_<output name>``), accuracy is
given per output, and ``--output`` gets a .npz with ``out0``, ``out1``, ...
(one array per output, in the model's order). For a one-input model that keeps
state between calls, a sample holding T whole inputs (``x`` of shape
``[N, T, *input shape]``) is a sequence of T calls: reset before the first,
outputs ``[N, T, ...]``, accuracy on each sequence's last call.

Input semantics (the same as edgekit's host verification):
- inputs already of the model's input dtype (e.g. int8) pass through untouched;
- float inputs for an integer input tensor are quantized as TFLite's QUANTIZE
  op does: ``round(x / scale) + zero_point`` with rounding half away from zero
  (C's ``round``, not numpy's half-to-even ``np.round``), clipped to the dtype.
  This is bit for bit what TFLite's reference QUANTIZE kernel computes (a
  float-input model's own QUANTIZE op under XNNPACK can differ at exact ties);
- float inputs for a float model are cast to its dtype.
Outputs are written dequantized to float32 (``scale * (q - zero_point)``), or in
the output tensor's own dtype with ``--raw``.

Default kernels are the runtime's (XNNPACK on a Pi); ``--reference-kernels``
selects TFLite's reference kernels (``OpResolverType.BUILTIN_REF``), slower
but the same on every CPU.

Exit codes: 0 ok, 2 bad input or missing runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

RUNTIMES = ("litert", "tflite_runtime")
INSTALL_HINT = "install one with: pip install ai-edge-litert numpy  (or: pip install tflite-runtime 'numpy<2')"


class RunnerError(Exception):
    """A problem with the inputs, the model or the installed runtime (exit code 2)."""


def _interpreter_module(runtime: str = "auto") -> Tuple[str, Any]:
    """The interpreter module of ``runtime`` and its name; ``auto`` prefers LiteRT."""
    wanted = RUNTIMES if runtime == "auto" else (runtime,)
    for name in wanted:
        try:
            if name == "litert":
                from ai_edge_litert import interpreter as module
            elif name == "tflite_runtime":
                from tflite_runtime import interpreter as module
            else:
                raise RunnerError(f"unknown runtime {name!r}; choose auto, litert or tflite_runtime")
            return name, module
        except ImportError:
            continue
    raise RunnerError(f"no TFLite runtime found ({', '.join(wanted)}); {INSTALL_HINT}")


def runtime_version(runtime: str) -> Optional[str]:
    """The installed version of ``litert`` or ``tflite_runtime``, if known."""
    try:
        if runtime == "litert":
            import ai_edge_litert as package
        else:
            import tflite_runtime as package
        return getattr(package, "__version__", None)
    except ImportError:
        return None


def _named(data: Any, kind: str, i: int, name: str) -> Optional[str]:
    """The array of tensor ``i`` (``x0`` or ``x_<name>``; likewise ``y``) present in ``data``, if any."""
    for key in (f"{kind}{i}", f"{kind}_{name}"):
        if key in data.files:
            return key
    return None


def load_inputs_io(path: str, input_names: List[str], output_names: List[str]) -> Tuple[List[np.ndarray], List[Optional[np.ndarray]]]:
    """One input array per model input and one label array (or None) per output; see the module docstring."""
    if len(input_names) <= 1 and len(output_names) <= 1:
        x, y = load_inputs(path)
        return [x], [y]
    if not os.path.isfile(path):
        raise RunnerError(f"{path}: no such input file")
    if not path.endswith(".npz"):
        raise RunnerError(f"{path}: a model with several inputs or outputs takes a .npz with x0, x1, ... (and y0, y1, ...)")
    try:
        with np.load(path, allow_pickle=False) as data:
            xs = []
            for i, name in enumerate(input_names):
                key = "x" if len(input_names) == 1 and "x" in data.files else _named(data, "x", i, name)
                if key is None:
                    raise RunnerError(f"{path}: no array x{i} (or x_{name}) for input {i} (found: {', '.join(data.files) or 'nothing'})")
                xs.append(data[key])
            ys = []
            for j, name in enumerate(output_names):
                key = "y" if len(output_names) == 1 and "y" in data.files else _named(data, "y", j, name)
                ys.append(None if key is None else data[key])
    except (ValueError, OSError) as exc:
        raise RunnerError(f"{path}: not a readable numpy file ({exc})") from None
    for i, x in enumerate(xs):
        if x.ndim < 1 or len(x) != len(xs[0]) or len(x) == 0:
            raise RunnerError(f"{path}: input array {i} holds {len(x) if x.ndim else 0} samples, expected {len(xs[0])}")
    for j, y in enumerate(ys):
        if y is not None and len(y) != len(xs[0]):
            raise RunnerError(f"{path}: labels of output {j} have {len(y)} entries for {len(xs[0])} samples")
    return xs, ys


def load_inputs(path: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Read ``x`` (and labels ``y`` if present) from a .npz, or ``x`` from a .npy."""
    if not os.path.isfile(path):
        raise RunnerError(f"{path}: no such input file")
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                if "x" not in data.files:
                    raise RunnerError(f"{path}: the .npz has no array 'x' (found: {', '.join(data.files) or 'nothing'})")
                x = data["x"]
                y = data["y"] if "y" in data.files else None
        elif path.endswith(".npy"):
            x, y = np.load(path, allow_pickle=False), None
        else:
            raise RunnerError(f"{path}: inputs must be a .npy or a .npz with 'x'")
    except (ValueError, OSError) as exc:
        raise RunnerError(f"{path}: not a readable numpy file ({exc})") from None
    if x.ndim < 1 or len(x) == 0:
        raise RunnerError(f"{path}: 'x' holds no samples")
    if y is not None and len(y) != len(x):
        raise RunnerError(f"{path}: 'y' has {len(y)} labels for {len(x)} samples")
    return x, y


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """Inputs in the model's input dtype, as TFLite's QUANTIZE computes them (see the module docstring)."""
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    if not np.issubdtype(dtype, np.integer):
        return x.astype(dtype)
    if np.issubdtype(x.dtype, np.integer):
        raise RunnerError(f"inputs are {x.dtype} but the model takes {dtype}; pass floats or {dtype}")
    if not scale:
        raise RunnerError(f"the model's {dtype} input has no quantization scale; pass {dtype} inputs")
    v = x.astype(np.float32) / np.float32(scale)
    q = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)) + zero_point
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Raw outputs as float32 values; float outputs and unquantized tensors pass through."""
    if not scale or not np.issubdtype(q.dtype, np.integer):
        return q.astype(np.float32)
    return (np.float32(scale) * (q.astype(np.float32) - np.float32(zero_point))).astype(np.float32)


def make_interpreter(model_path: str, reference: bool = False, runtime: str = "auto", threads: int = 1):
    """An allocated interpreter for ``model_path`` and the runtime's name."""
    name, module = _interpreter_module(runtime)
    if not os.path.isfile(model_path):
        raise RunnerError(f"{model_path}: no such model file")
    kind = module.OpResolverType.BUILTIN_REF if reference else module.OpResolverType.AUTO
    try:
        interpreter = module.Interpreter(model_path=model_path, experimental_op_resolver_type=kind, num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise RunnerError(f"{model_path}: {name} cannot load the model ({first})") from None
    return interpreter, name


def _run(interpreter, xs: List[np.ndarray], renew=None) -> Tuple[List[np.ndarray], float, int]:
    """Raw outputs (one array per model output) for ``xs`` (one array per model input), the mean latency per
    call (ms) and the calls per sample (T > 1: sequences of calls, one-input models only; outputs [N, T, ...]).

    ``renew()`` makes a new interpreter: resource variables (VAR_HANDLE), which
    ``reset_all_variables`` leaves alone, start over only in a new one."""
    ins = interpreter.get_input_details()
    outs = interpreter.get_output_details()
    if len(xs) != len(ins):
        raise RunnerError(f"the model has {len(ins)} inputs but {len(xs)} input arrays were given")
    xqs, shapes, calls = [], [], 1
    for x, inp in zip(xs, ins):
        scale, zero_point = inp["quantization"]
        xq = quantize(x, scale, zero_point, inp["dtype"])
        shape = tuple(int(d) for d in inp["shape"])
        per_call, per_row = int(np.prod(shape[1:])), int(np.prod(xq.shape[1:]))
        if per_row != per_call:
            calls = per_row // per_call if len(ins) == 1 and per_call and per_row % per_call == 0 else 0
            if calls < 2 or tuple(xq.shape[2:]) != shape[1:]:
                where = "each input" if len(ins) == 1 else f"each sample of input {len(xqs)}"
                raise RunnerError(f"{where} has shape {tuple(xq.shape[1:])} but the model takes {shape[1:]}")
            xq = xq.reshape(len(xq) * calls, *shape[1:])
        xqs.append(xq)
        shapes.append(shape)
    n_calls = len(xqs[0])
    results: List[list] = [[] for _ in outs]
    elapsed = 0.0
    for i in range(n_calls):
        if i % calls == 0:
            if i and renew is not None and "VAR_HANDLE" in {op["op_name"] for op in interpreter._get_ops_details()}:
                interpreter = renew()
            interpreter.reset_all_variables()
        for xq, shape, inp in zip(xqs, shapes, ins):
            interpreter.set_tensor(inp["index"], xq[i].reshape(shape))
        t0 = time.perf_counter()
        interpreter.invoke()
        elapsed += time.perf_counter() - t0
        for r, out in zip(results, outs):
            r.append(interpreter.get_tensor(out["index"])[0].copy())
    raws = [np.stack(r) for r in results]
    if calls > 1:
        raws = [r.reshape(n_calls // calls, calls, *r.shape[1:]) for r in raws]
    return raws, elapsed * 1000.0 / n_calls, calls


def run(model_path: str, x: Any, reference: bool = False, runtime: str = "auto", threads: int = 1) -> Any:
    """Raw outputs ``[N, ...]`` (the output tensor's dtype) of the model on ``x``, one sample at a time.

    ``x`` is one array, or a list with one per model input; a model with several outputs gives a list of arrays.
    """
    interpreter, _ = make_interpreter(model_path, reference, runtime, threads)
    renew = lambda: make_interpreter(model_path, reference, runtime, threads)[0]  # noqa: E731
    outs = _run(interpreter, list(x) if isinstance(x, (list, tuple)) else [x], renew)[0]
    return outs[0] if len(outs) == 1 else outs


def top1_accuracy(outputs: np.ndarray, labels: Optional[np.ndarray]) -> Optional[float]:
    """Top-1 accuracy (argmax over the last axis), or None without labels or score rows."""
    if labels is None or outputs.ndim < 2 or outputs.shape[-1] < 2:
        return None
    if outputs.ndim > 2:
        outputs = outputs.reshape(len(outputs), -1, outputs.shape[-1])[:, 0, :]
    return float((outputs.argmax(axis=-1) == labels.reshape(-1)).mean())


def main(argv: Optional[list] = None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", help=".npy of inputs [N, ...] or .npz with x (and optional labels y)")
    parser.add_argument("--model", default=os.path.join(here, "model.tflite"), help="the .tflite model (default: model.tflite beside run.py)")
    parser.add_argument("--output", help="write the outputs to this .npy")
    parser.add_argument("--raw", action="store_true", help="write outputs in the tensor's dtype instead of dequantized float32")
    parser.add_argument("--reference-kernels", action="store_true", help="use TFLite's reference kernels (BUILTIN_REF)")
    parser.add_argument("--runtime", choices=("auto",) + RUNTIMES, default="auto", help="which runtime to import (auto: LiteRT, else tflite_runtime)")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1, as edgekit verified)")
    parser.add_argument("--json", action="store_true", help="print one JSON line of results")
    args = parser.parse_args(argv)
    try:
        interpreter, name = make_interpreter(args.model, args.reference_kernels, args.runtime, args.threads)
        in_names = [d["name"] for d in interpreter.get_input_details()]
        out_details = interpreter.get_output_details()
        xs, ys = load_inputs_io(args.inputs, in_names, [d["name"] for d in out_details])
        raws, latency_ms, calls = _run(interpreter, xs, lambda: make_interpreter(args.model, args.reference_kernels,
                                                                                 args.runtime, args.threads)[0])
    except RunnerError as exc:
        print(f"run.py: error: {exc}", file=sys.stderr)
        return 2
    accuracies = [top1_accuracy(raw[:, -1] if calls > 1 else raw, y) for raw, y in zip(raws, ys)]
    accuracy = accuracies[0] if len(raws) == 1 else None
    if args.output:
        saved = [raw if args.raw else dequantize(raw, *d["quantization"]) for raw, d in zip(raws, out_details)]
        if len(saved) == 1:
            np.save(args.output, saved[0])
        else:
            with open(args.output, "wb") as f:  # exactly this path (np.savez would append .npz)
                np.savez(f, **{f"out{j}": a for j, a in enumerate(saved)})
    kernels = "reference" if args.reference_kernels else "default"
    result: Dict[str, Any] = {
        "runtime": name,
        "runtime_version": runtime_version(name),
        "kernels": kernels,
        "n": int(len(xs[0])),
        "accuracy": accuracy,
        "mean_latency_ms": round(latency_ms, 6),
        "output": args.output,
    }
    if len(raws) > 1:
        result["accuracy_per_output"] = accuracies
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        shown = ["n/a (no labels)" if a is None else f"{a:.4f}" for a in accuracies]
        acc = shown[0] if len(shown) == 1 else "per output " + ", ".join(shown)
        print(f"{name} ({kernels} kernels): {len(xs[0])} inputs, top-1 accuracy {acc}, mean latency {latency_ms:.3f} ms")
        if args.output:
            print(f"outputs written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
