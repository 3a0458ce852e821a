"""Read a ``.tflite`` flatbuffer into a plain :class:`ModelInfo`, without importing TensorFlow.

The flatbuffer is parsed with ``ai_edge_litert.schema_py_generated``. Only the
main subgraph (index 0) describes ops, tensors and I/O; the buffers of every
subgraph count towards the weights.

Definitions used throughout edgekit:

- **weights**: tensors backed by a non-empty constant buffer (kernels, biases,
  constant shapes, lookup tables). ``weight_bytes`` counts each buffer once.
- **activations**: every other tensor of the main subgraph (inputs, intermediate
  results, outputs, variables). ``activation_bytes`` is the sum of their sizes,
  i.e. the RAM they would need *without* any buffer reuse; the arena TFLM
  actually needs is smaller because its planner reuses memory (see
  :mod:`edgekit.tflm_host` for the measured figure).
- **layer**: an op is named after its first output tensor, which is how the
  converter names layers (``sequential/conv2d/Relu``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import InputError
from edgekit.model_check import TYPE_BITS, read_model_file

def _enum_names(cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: name, shape, dtype (``"int8"``) and its quantization."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None
    index: int = 0

    @property
    def nbytes(self) -> int:
        """Size of one tensor in bytes."""
        return _nbytes(self.shape, self.dtype.upper())

    def to_dict(self) -> dict[str, Any]:
        """Plain data for reports."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass(frozen=True)
class OperatorInfo:
    """One op of the main subgraph, in execution order."""

    index: int
    op: str
    layer: str
    weight_bytes: int
    activation_bytes: int
    input_dtypes: tuple[str, ...] = ()
    output_dtypes: tuple[str, ...] = ()
    weight_dtypes: tuple[str, ...] = ()
    custom_code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for reports."""
        d = asdict(self)
        for k in ("input_dtypes", "output_dtypes", "weight_dtypes"):
            d[k] = list(d[k])
        return d


@dataclass(frozen=True)
class ModelInfo:
    """What edgekit knows about a ``.tflite`` file (see the module docstring for the definitions)."""

    name: str
    size_bytes: int
    ops: tuple[str, ...]
    operators: tuple[OperatorInfo, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    tensor_count: int
    param_count: int
    weight_bytes: int
    activation_bytes: int
    subgraph_count: int = 1
    weight_dtypes: tuple[str, ...] = ()
    activation_dtypes: tuple[str, ...] = ()
    custom_ops: tuple[str, ...] = ()
    description: str = ""
    tensors: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    @property
    def op_count(self) -> int:
        """Number of distinct ops (what a TFLM op resolver must register)."""
        return len(self.ops)

    @property
    def is_full_int8(self) -> bool:
        """True when every op computes in int8: int8 activations and I/O, no float tensor anywhere.

        int32 (biases, shapes) is allowed; float32 or int16 activations are not.
        """
        if not self.operators:
            return False
        acts = set(self.activation_dtypes) - {"int32", "int64", "bool"}
        return acts == {"int8"} and all(t.dtype == "int8" for t in (*self.inputs, *self.outputs))

    @property
    def is_float(self) -> bool:
        """True when the model computes in float32 (no int8 activations at all)."""
        return "float32" in self.activation_dtypes and "int8" not in self.activation_dtypes and "int16" not in self.activation_dtypes

    def largest_by_weights(self, n: int = 5) -> list[OperatorInfo]:
        """The ``n`` ops with the most weight bytes, largest first (ties keep model order)."""
        ranked = sorted((o for o in self.operators if o.weight_bytes > 0), key=lambda o: (-o.weight_bytes, o.index))
        return ranked[:n]

    def largest_by_activations(self, n: int = 5) -> list[OperatorInfo]:
        """The ``n`` ops with the largest output tensors, largest first."""
        ranked = sorted(self.operators, key=lambda o: (-o.activation_bytes, o.index))
        return ranked[:n]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for reports and ``edgekit inspect --json``."""
        return {
            "name": self.name,
            "size_bytes": self.size_bytes,
            "ops": list(self.ops),
            "op_count": self.op_count,
            "operator_count": len(self.operators),
            "subgraph_count": self.subgraph_count,
            "tensor_count": self.tensor_count,
            "param_count": self.param_count,
            "weight_bytes": self.weight_bytes,
            "activation_bytes": self.activation_bytes,
            "weight_dtypes": list(self.weight_dtypes),
            "activation_dtypes": list(self.activation_dtypes),
            "custom_ops": list(self.custom_ops),
            "is_full_int8": self.is_full_int8,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "operators": [o.to_dict() for o in self.operators],
            "tensors": [dict(t) for t in self.tensors],
        }


def _nbytes(shape: tuple[int, ...] | list[int], type_name: str) -> int:
    n = math.prod(max(int(d), 1) for d in shape) if len(shape) else 1
    return (n * (8 if type_name == "STRING" else TYPE_BITS.get(type_name, 8)) + 7) // 8


def _quant(t: Any) -> tuple[float | None, int | None]:
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None, None
    zp = int(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0
    return float(q.scale[0]), zp


def _parse(buf: bytes, where: str) -> Any:
    from edgekit.model_check import check_tflite

    return check_tflite(buf, where)


def short_layer_name(layer: str) -> str:
    """The Keras layer a (possibly fused) tensor name came from.

    The converter joins fused ops' names with ';' and ends each with the TF op
    (``model/dense_1/MatMul;model/dense_1/Relu`` → ``model/dense_1``).
    """
    first = layer.split(";")[0]
    return first.rsplit("/", 1)[0] if "/" in first else first


def read_model(tflite: bytes | bytearray | Path | str, name: str | None = None) -> ModelInfo:
    """Parse a ``.tflite`` (bytes or a path) into a :class:`ModelInfo`.

    Raises InputError naming the file when it is missing, not a TFLite
    flatbuffer, or corrupt/truncated.
    """
    from ai_edge_litert import schema_py_generated as schema

    if isinstance(tflite, (str, Path)):
        path = Path(tflite)
        where = name or str(path)
        buf = read_model_file(path)
    else:
        buf = bytes(tflite)
        where = name or "<tflite bytes>"
    model = _parse(buf, where)
    type_names = _enum_names(schema.TensorType)
    op_names = _enum_names(schema.BuiltinOperator)
    try:
        return _build_info(model, buf, where, type_names, op_names)
    except InputError:
        raise
    except (IndexError, TypeError, AttributeError, ValueError) as exc:
        raise InputError(f"{where}: not a TFLite flatbuffer (inconsistent contents: {type(exc).__name__})",
                         "the file may be truncated or corrupt; re-export it") from None


def _build_info(model: Any, buf: bytes, where: str, type_names: dict[int, str], op_names: dict[int, str]) -> ModelInfo:
    buffers = model.buffers or []

    def buffer_size(idx: int) -> int:
        if idx <= 0 or idx >= len(buffers):
            return 0
        b = buffers[idx]
        if b.data is not None and len(b.data):
            return len(b.data)
        return int(b.size or 0) if (b.offset or 0) > 1 else 0

    sg = model.subgraphs[0]
    tensors = sg.tensors or []
    io = set(int(i) for i in (sg.inputs if sg.inputs is not None else [])) | set(int(i) for i in (sg.outputs if sg.outputs is not None else []))

    def tname(i: int) -> str:
        n = tensors[i].name
        return n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n or f"tensor_{i}")

    def ttype(i: int) -> str:
        return type_names.get(tensors[i].type, f"TYPE_{tensors[i].type}")

    def tshape(i: int) -> tuple[int, ...]:
        s = tensors[i].shape
        return tuple(int(d) for d in s) if s is not None else ()

    def is_const(i: int) -> bool:
        return i not in io and not tensors[i].isVariable and buffer_size(tensors[i].buffer) > 0

    def spec(i: int) -> TensorSpec:
        scale, zp = _quant(tensors[i])
        return TensorSpec(name=tname(i), shape=tshape(i), dtype=ttype(i).lower(), scale=scale, zero_point=zp, index=i)

    # weights: every non-empty constant buffer in the file, counted once
    const_buffers: dict[int, int] = {}
    param_count = 0
    weight_types: set[str] = set()
    act_types: set[str] = set()
    activation_bytes = 0
    tensor_rows = []
    for i, t in enumerate(tensors):
        typ = ttype(i)
        nbytes = _nbytes(tshape(i), typ)
        const = is_const(i)
        if const:
            if t.buffer not in const_buffers:
                const_buffers[t.buffer] = buffer_size(t.buffer)
                param_count += math.prod(tshape(i)) if tshape(i) else 1
            weight_types.add(typ.lower())
        else:
            activation_bytes += nbytes
            act_types.add(typ.lower())
        scale, zp = _quant(t)
        tensor_rows.append({"index": i, "name": tname(i), "shape": list(tshape(i)), "dtype": typ.lower(),
                            "bytes": const_buffers.get(t.buffer, 0) if const else nbytes, "constant": const,
                            "scale": scale, "zero_point": zp})
    for sub in model.subgraphs[1:]:  # control-flow bodies: their constants are weights too
        sub_io = set(int(i) for i in (sub.inputs if sub.inputs is not None else [])) | set(int(i) for i in (sub.outputs if sub.outputs is not None else []))
        for i, t in enumerate(sub.tensors or []):
            if i not in sub_io and not t.isVariable and buffer_size(t.buffer) > 0 and t.buffer not in const_buffers:
                const_buffers[t.buffer] = buffer_size(t.buffer)
                param_count += math.prod(int(d) for d in t.shape) if t.shape is not None and len(t.shape) else 1

    operators = []
    custom_ops: set[str] = set()
    for k, op in enumerate(sg.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
        name = op_names.get(builtin, f"BUILTIN_{builtin}")
        custom = None
        if name == "CUSTOM":
            custom = (code.customCode or b"").decode("utf-8", "replace") if isinstance(code.customCode, bytes) else str(code.customCode or "")
            custom_ops.add(custom)
        ins = [int(i) for i in (op.inputs if op.inputs is not None else []) if int(i) >= 0]
        outs = [int(i) for i in (op.outputs if op.outputs is not None else []) if int(i) >= 0]
        w_ins = [i for i in ins if is_const(i)]
        a_ins = [i for i in ins if not is_const(i)]
        operators.append(OperatorInfo(
            index=k, op=name, layer=tname(outs[0]) if outs else f"op_{k}",
            weight_bytes=sum(buffer_size(tensors[i].buffer) for i in w_ins),
            activation_bytes=sum(_nbytes(tshape(i), ttype(i)) for i in outs),
            input_dtypes=tuple(ttype(i).lower() for i in a_ins),
            output_dtypes=tuple(ttype(i).lower() for i in outs),
            weight_dtypes=tuple(ttype(i).lower() for i in w_ins),
            custom_code=custom,
        ))
    desc = model.description
    return ModelInfo(
        name=where,
        size_bytes=len(buf),
        ops=tuple(sorted({o.op if o.custom_code is None else f"CUSTOM:{o.custom_code}" for o in operators})),
        operators=tuple(operators),
        inputs=tuple(spec(int(i)) for i in (sg.inputs if sg.inputs is not None else [])),
        outputs=tuple(spec(int(i)) for i in (sg.outputs if sg.outputs is not None else [])),
        tensor_count=len(tensors),
        param_count=int(param_count),
        weight_bytes=int(sum(const_buffers.values())),
        activation_bytes=int(activation_bytes),
        subgraph_count=len(model.subgraphs),
        weight_dtypes=tuple(sorted(weight_types)),
        activation_dtypes=tuple(sorted(act_types)),
        custom_ops=tuple(sorted(custom_ops)),
        description=desc.decode("utf-8", "replace") if isinstance(desc, bytes) else str(desc or ""),
        tensors=tuple(tensor_rows),
    )
