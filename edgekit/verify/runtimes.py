"""Run a model on the runtimes edgekit compares, one sample at a time.

Each function returns raw outputs ``[N, *output shape without batch]`` and is
named by the label the report gives its numbers:

- ``keras``: the float Keras model (the accuracy reference);
- ``litert-default``: LiteRT with its default kernels (XNNPACK), what a Pi runs;
- ``litert-ref``: LiteRT's reference kernels (``OpResolverType.BUILTIN_REF``),
  the closest to TFLM;
- ``tflm-host``: the TFLM interpreter from the ``tflite-micro`` package
  (see :mod:`edgekit.tflm_host`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edgekit.quiet import quiet
from edgekit.tflite_model import TensorSpec


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Raw outputs to float32 values (``scale * (q - zero_point)``); float tensors pass through."""
    if spec.scale is None or not np.issubdtype(q.dtype, np.integer):
        return q.astype(np.float32)
    return (np.float32(spec.scale) * (q.astype(np.float32) - np.float32(spec.zero_point))).astype(np.float32)


def run_keras(model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Float outputs of a one-output Keras model (either Keras kind)."""
    return run_keras_io(model, x, batch_size)[0]


def run_keras_io(model, x: np.ndarray | tuple[np.ndarray, ...], batch_size: int = 64) -> tuple[np.ndarray, ...]:
    """Float outputs of a Keras model, one array per output in Keras' order; ``x`` is a tuple for several inputs."""
    feed = [a.astype(np.float32) for a in x] if isinstance(x, tuple) else x.astype(np.float32)
    out = model.predict(feed, batch_size=batch_size, verbose=0)
    if isinstance(out, dict):
        from edgekit.load import keras_io_names

        out = [out[n] for n in keras_io_names(model)[1]]
    if not isinstance(out, (list, tuple)):
        out = [out]
    return tuple(np.asarray(o) for o in out)


def _litert(tflite: bytes, reference: bool):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    with quiet():  # "Created TensorFlow Lite XNNPACK delegate" goes straight to fd 2
        ip = Interpreter(model_content=tflite, experimental_op_resolver_type=kind, num_threads=1)
        ip.allocate_tensors()
    return ip


def run_litert(tflite: bytes, x: np.ndarray, *, reference: bool = False, calls_per_sequence: int | None = None) -> np.ndarray:
    """Raw outputs of LiteRT for a one-input, one-output model; ``x`` is already in the model's input dtype, one row per sample.

    See :func:`run_litert_io` for ``calls_per_sequence``.
    """
    return _one(run_litert_io(tflite, (x,), reference=reference, calls_per_sequence=calls_per_sequence), "run_litert")


def _one(outs: tuple[np.ndarray, ...], who: str) -> np.ndarray:
    if len(outs) != 1:
        raise ValueError(f"{who}: the model has {len(outs)} outputs; use {who}_io")
    return outs[0]


def run_litert_io(tflite: bytes, xs: tuple[np.ndarray, ...], *, reference: bool = False,
                  calls_per_sequence: int | None = None) -> tuple[np.ndarray, ...]:
    """Raw outputs of LiteRT, one array per model output (the model's order); ``xs`` one array per input, in its dtype.

    The model's state is reset before every row, or with ``calls_per_sequence=T``
    before every T rows (sequences of calls, as :func:`edgekit.tflm_host.run_tflm`):
    variable tensors (an LSTM's state, which TFLite keeps from one invoke to the
    next) by ``reset_all_variables``; resource variables (VAR_HANDLE), which that
    leaves alone, by a new interpreter.
    """
    ip = _litert(tflite, reference)
    fresh = "VAR_HANDLE" in {op["op_name"] for op in ip._get_ops_details()}
    ins = ip.get_input_details()
    outs = ip.get_output_details()
    if len(xs) != len(ins):
        raise ValueError(f"run_litert: the model has {len(ins)} inputs, {len(xs)} arrays given")
    every = calls_per_sequence or 1
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for i in range(len(xs[0])):
        if i % every == 0:
            if fresh and i:
                ip = _litert(tflite, reference)
            ip.reset_all_variables()
        for inp, x in zip(ins, xs):
            ip.set_tensor(inp["index"], x[i].reshape(tuple(inp["shape"])))
        ip.invoke()
        for r, out in zip(results, outs):
            r.append(ip.get_tensor(out["index"])[0].copy())
    return tuple(np.stack(r) for r in results)


@dataclass(frozen=True)
class Latency:
    """Mean wall-clock milliseconds per inference on this host (``runtime`` names the kernels)."""

    mean_ms: float
    runs: int
    runtime: str


def host_latency(tflite: bytes, *, runs: int = 50, reference: bool = False) -> Latency:
    """Time ``runs`` inferences on a zero input after 5 warm-up runs (single thread)."""
    ip = _litert(tflite, reference)
    for inp in ip.get_input_details():
        ip.set_tensor(inp["index"], np.zeros(inp["shape"], dtype=inp["dtype"]))
    for _ in range(5):
        ip.invoke()
    t0 = time.perf_counter()
    for _ in range(runs):
        ip.invoke()
    ms = (time.perf_counter() - t0) * 1000 / runs
    return Latency(mean_ms=ms, runs=runs, runtime="litert-ref" if reference else "litert-default")
