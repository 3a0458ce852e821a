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
own (batch 1), through the model's first input and first output, after a reset
of the model's variables (an LSTM's state). A sample holding T whole inputs
(``x`` of shape ``[N, T, *input shape]``, for a model that keeps state between
calls) is a sequence of T calls: reset before the first, outputs ``[N, T, ...]``,
accuracy on each sequence's last call.

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
from typing import Any, Dict, Optional, Tuple

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


def _run(interpreter, x: np.ndarray, renew=None) -> Tuple[np.ndarray, float, int]:
    """Raw outputs, mean latency per call (ms) and calls per sample (T > 1: sequences, outputs [N, T, ...]).

    ``renew()`` makes a new interpreter: resource variables (VAR_HANDLE), which
    ``reset_all_variables`` leaves alone, start over only in a new one."""
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    scale, zero_point = inp["quantization"]
    xq = quantize(x, scale, zero_point, inp["dtype"])
    shape = tuple(int(d) for d in inp["shape"])
    per_call, per_row = int(np.prod(shape[1:])), int(np.prod(xq.shape[1:]))
    calls = per_row // per_call if per_call and per_row % per_call == 0 else 0
    if calls < 1 or (calls > 1 and tuple(xq.shape[2:]) != shape[1:]):
        raise RunnerError(f"each input has shape {tuple(xq.shape[1:])} but the model takes {shape[1:]}")
    flat = xq.reshape(len(xq) * calls, *shape[1:])
    results = []
    elapsed = 0.0
    for i in range(len(flat)):
        if i % calls == 0:
            if i and renew is not None and "VAR_HANDLE" in {op["op_name"] for op in interpreter._get_ops_details()}:
                interpreter = renew()
            interpreter.reset_all_variables()
        interpreter.set_tensor(inp["index"], flat[i].reshape(shape))
        t0 = time.perf_counter()
        interpreter.invoke()
        elapsed += time.perf_counter() - t0
        results.append(interpreter.get_tensor(out["index"])[0].copy())
    raw = np.stack(results)
    if calls > 1:
        raw = raw.reshape(len(xq), calls, *raw.shape[1:])
    return raw, elapsed * 1000.0 / len(flat), calls


def run(model_path: str, x: np.ndarray, reference: bool = False, runtime: str = "auto", threads: int = 1) -> np.ndarray:
    """Raw outputs ``[N, ...]`` (the output tensor's dtype) of the model on ``x``, one sample at a time."""
    interpreter, _ = make_interpreter(model_path, reference, runtime, threads)
    return _run(interpreter, x, lambda: make_interpreter(model_path, reference, runtime, threads)[0])[0]


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
        x, y = load_inputs(args.inputs)
        interpreter, name = make_interpreter(args.model, args.reference_kernels, args.runtime, args.threads)
        raw, latency_ms, calls = _run(interpreter, x, lambda: make_interpreter(args.model, args.reference_kernels,
                                                                              args.runtime, args.threads)[0])
    except RunnerError as exc:
        print(f"run.py: error: {exc}", file=sys.stderr)
        return 2
    accuracy = top1_accuracy(raw[:, -1] if calls > 1 else raw, y)
    if args.output:
        if args.raw:
            saved = raw
        else:
            scale, zero_point = interpreter.get_output_details()[0]["quantization"]
            saved = dequantize(raw, scale, zero_point)
        np.save(args.output, saved)
    kernels = "reference" if args.reference_kernels else "default"
    result: Dict[str, Any] = {
        "runtime": name,
        "runtime_version": runtime_version(name),
        "kernels": kernels,
        "n": int(len(x)),
        "accuracy": accuracy,
        "mean_latency_ms": round(latency_ms, 6),
        "output": args.output,
    }
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        acc = "n/a (no labels)" if accuracy is None else f"{accuracy:.4f}"
        print(f"{name} ({kernels} kernels): {len(x)} inputs, top-1 accuracy {acc}, mean latency {latency_ms:.3f} ms")
        if args.output:
            print(f"outputs written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
