"""Can TensorFlow Lite for Microcontrollers run this model? Checked before anything is emitted.

Four kinds of problem, each named with the op and the layer it came from:

1. ops TFLM has no kernel for (the op list is ``edgekit/data/tflm_ops.txt``,
   generated from the ``tflite-micro`` runtime's ``Register_<OP>`` symbols by
   ``scripts/gen_tflm_ops.py``), including TF Select (Flex) and unknown custom ops;
2. hybrid (dynamic-range) ops: float activations with int8 weights, which TFLM
   kernels refuse, and float16 weights, which TFLM's DEQUANTIZE refuses;
3. int16 activations on ops whose TFLM kernels have no int16 path
   (:data:`INT16_OPS` lists the ops whose reference kernels accept int16);
4. float32 compute: TFLM runs it, but the weights take 4x the flash of int8, so
   it is refused unless the caller passes ``allow_float=True``.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

from edgekit.errors import UnsupportedOpError
from edgekit.tflite_model import ModelInfo, OperatorInfo

_DATA = Path(__file__).resolve().parent / "data" / "tflm_ops.txt"

# Custom ops TFLM ships kernels for, and the MicroMutableOpResolver method that registers each.
TFLM_CUSTOM_OPS = {"TFLite_Detection_PostProcess": "AddDetectionPostprocess"}

# Ops whose TFLM reference kernels have an int16-activation (16x8) path, from the
# kernels' Eval type switches in tflite-micro (tensorflow/lite/micro/kernels/*.cc); tests run
# 16x8 models through the real interpreter to keep this table honest (EXP, LOG and
# RESIZE_BILINEAR have no int16 path; RSQRT, SQUARED_DIFFERENCE and LEAKY_RELU do).
INT16_OPS = frozenset({
    "ADD", "SUB", "MUL", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV",
    "SOFTMAX", "LOGISTIC", "TANH", "QUANTIZE", "DEQUANTIZE", "AVERAGE_POOL_2D", "MAX_POOL_2D",
    "SVDF", "UNIDIRECTIONAL_SEQUENCE_LSTM", "CONCATENATION", "RESHAPE", "SQUEEZE", "EXPAND_DIMS",
    "STRIDED_SLICE", "PAD", "PADV2", "MEAN", "REDUCE_MAX", "SUM", "LEAKY_RELU", "RELU", "RELU6",
    "MAXIMUM", "MINIMUM", "TRANSPOSE", "BATCH_MATMUL", "SQUARED_DIFFERENCE", "SPLIT", "SPLIT_V",
    "PACK", "UNPACK", "SLICE", "GATHER", "ZEROS_LIKE", "SHAPE", "BROADCAST_TO", "FILL", "RSQRT",
})

# Ops that legitimately take or produce float tensors inside an int8 model (float I/O).
_FLOAT_BOUNDARY_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})

_IRREGULAR_METHODS = {
    "PADV2": "AddPadV2", "CUMSUM": "AddCumSum", "BATCH_MATMUL": "AddBatchMatMul",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
}


@lru_cache(maxsize=1)
def tflm_builtin_ops() -> frozenset[str]:
    """The builtin ops the pinned TFLM can run (from ``edgekit/data/tflm_ops.txt``)."""
    lines = _DATA.read_text().splitlines()
    return frozenset(l.strip() for l in lines if l.strip() and not l.startswith("#"))


def resolver_method(op: str) -> str:
    """The ``MicroMutableOpResolver`` method registering ``op`` (``CONV_2D`` -> ``AddConv2D``).

    ``op`` is a builtin name or ``CUSTOM:<code>`` for a custom op TFLM ships.
    """
    if op.startswith("CUSTOM:"):
        return TFLM_CUSTOM_OPS[op.split(":", 1)[1]]
    if op in _IRREGULAR_METHODS:
        return _IRREGULAR_METHODS[op]
    words = [w[:1].upper() + w[1:].lower() for w in op.split("_")]
    name = "".join(words).replace("2d", "2D")
    return "Add" + name


def _is_hybrid(o: OperatorInfo) -> bool:
    return (o.op not in _FLOAT_BOUNDARY_OPS and "float32" in o.input_dtypes
            and any(d in ("int8", "uint8", "int4") for d in o.weight_dtypes))


def _group(found: list[tuple[str, OperatorInfo]]) -> "OrderedDict[str, list[OperatorInfo]]":
    groups: OrderedDict[str, list[OperatorInfo]] = OrderedDict()
    for key, o in found:
        groups.setdefault(key, []).append(o)
    return groups


def where_layers(ops: list[OperatorInfo]) -> str:
    """Where the ops sharing one problem are, for one-line errors: ``layer 'X'`` or ``layer 'X' and N more``."""
    more = f" and {len(ops) - 1} more" if len(ops) > 1 else ""
    return f"layer '{ops[0].layer}'{more}"


def check_tflm(info: ModelInfo, *, allow_float: bool = False) -> list[str]:
    """Every reason TFLM cannot (or, for float, should not) run ``info``; empty when it can.

    Each problem is one line naming the op, the layer it came from and what to do.
    """
    supported = tflm_builtin_ops()
    missing, hybrid, int16, floats, half = [], [], [], [], []
    for o in info.operators:
        if o.custom_code is not None:
            if o.custom_code not in TFLM_CUSTOM_OPS:
                missing.append((f"CUSTOM:{o.custom_code}", o))
            continue
        if o.op not in supported:
            missing.append((o.op, o))
            continue
        if _is_hybrid(o):
            hybrid.append((o.op, o))
        elif "int16" in (*o.input_dtypes, *o.output_dtypes) and o.op not in INT16_OPS:
            int16.append((o.op, o))
        elif o.op not in _FLOAT_BOUNDARY_OPS and "float32" in (*o.input_dtypes, *o.output_dtypes):
            floats.append((o.op, o))
        if "float16" in o.weight_dtypes:
            half.append((o.op, o))
    problems = []
    for op, ops in _group(missing).items():
        if op.startswith("CUSTOM:Flex"):
            fix = "it is a TF Select (Flex) op; rewrite the model with TFLite builtin ops"
        elif op.startswith("CUSTOM:"):
            fix = f"TFLM ships no kernel for this custom op; register your own with AddCustom or replace it (TFLM custom ops: {', '.join(TFLM_CUSTOM_OPS)})"
        else:
            fix = "replace that layer with ops TFLM supports (see edgekit/data/tflm_ops.txt), or deploy to a LiteRT target"
        problems.append(f"{op} ({where_layers(ops)}): TFLM has no kernel for this op; {fix}")
    for op, ops in _group(hybrid).items():
        problems.append(f"{op} ({where_layers(ops)}): hybrid (dynamic-range) op with float activations and int8/float16 weights, "
                        "which TFLM cannot run; quantize the model to full int8 with a representative dataset "
                        "(edgekit build --calib DATA.npz)")
    for op, ops in _group(half).items():
        problems.append(f"{op} ({where_layers(ops)}): float16 weights, which TFLM cannot dequantize; "
                        "quantize the model to full int8 with a representative dataset (edgekit build --calib DATA.npz)")
    for op, ops in _group(int16).items():
        problems.append(f"{op} ({where_layers(ops)}): int16 activations, but TFLM's {op} kernel has no int16 path; "
                        "quantize with int8 activations instead of 16x8")
    if floats and not allow_float:
        n = len(floats)
        kinds = ", ".join(_group(floats))
        problems.append(f"float model: {n} op(s) compute in float32 ({kinds}; first at layer '{floats[0][1].layer}'); "
                        "TFLM runs them but float weights take 4x the flash of int8 and float math is slow on a "
                        "microcontroller; quantize to int8, or pass --allow-float to emit it anyway")
    return problems


def ensure_tflm(info: ModelInfo, allow_float: bool = False) -> None:
    """Raise UnsupportedOpError (exit 4) listing every problem :func:`check_tflm` finds, in one line."""
    problems = check_tflm(info, allow_float=allow_float)
    if not problems:
        return
    if all(p.startswith("float model:") for p in problems):
        raise UnsupportedOpError(f"{info.name}: not emitting a float model for TFLM without --allow-float: " + problems[0])
    raise UnsupportedOpError(f"{info.name}: TFLM cannot run this model: " + "; ".join(problems))


def float_ops(info: ModelInfo) -> list[OperatorInfo]:
    """Ops that compute in float32 (not counting the QUANTIZE/DEQUANTIZE at a float I/O boundary)."""
    return [o for o in info.operators if o.op not in _FLOAT_BOUNDARY_OPS and "float32" in (*o.input_dtypes, *o.output_dtypes)]
