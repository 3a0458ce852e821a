"""Parse a ``.tflite`` flatbuffer into a small list of tensors and ops for the AOT code generator.

Only the main subgraph is read. Constants come out as numpy arrays; quantization
parameters keep their float32 values exactly as stored (never rounded through
another API), because the host-side multipliers must match TFLM's bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import UnsupportedOpError
from edgekit.model_check import check_tflite, read_model_file, size_limit

# TensorType enum value -> numpy dtype (only the types the runtime can meet)
_DTYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8, 6: np.bool_}
_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8", 17: "int4"}


@dataclass
class Tensor:
    """One tensor of the main subgraph: shape, dtype, quantization, and data when constant."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: np.ndarray  # float32, empty when not quantized
    zero_point: np.ndarray  # int64, empty when not quantized
    quantized_dimension: int = 0
    data: np.ndarray | None = None  # constant contents, shaped
    is_variable: bool = False  # state an op keeps between calls (SVDF's activation state)

    @property
    def nbytes(self) -> int:
        """Size in bytes (1 byte per element for types the runtime never stores)."""
        return self.size * _ITEMSIZE.get(self.dtype, 1)

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def zp(self) -> int:
        """The per-tensor zero point (0 when not quantized)."""
        return int(self.zero_point[0]) if self.zero_point.size else 0

    @property
    def s(self) -> np.float32:
        """The per-tensor scale as float32 (first entry for per-channel tensors)."""
        return np.float32(self.scale[0]) if self.scale.size else np.float32(0.0)


# ops that bring more subgraphs with them: named when parse refuses such a model
MULTI_SUBGRAPH_OPS = ("ASSIGN_VARIABLE", "CALL_ONCE", "IF", "READ_VARIABLE", "VAR_HANDLE", "WHILE")
_ITEMSIZE = {"float32": 4, "int32": 4, "int64": 8, "int16": 2, "float16": 2}


@dataclass
class Op:
    """One op in execution order: builtin name, tensor indices (-1 = absent optional input), options."""

    index: int
    name: str
    inputs: list[int]
    outputs: list[int]
    options: Any = None


@dataclass
class Graph:
    """The main subgraph: tensors, ops in order, and the model's input and output tensor indices."""

    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    extra: dict[str, Any] = field(default_factory=dict)

    def t(self, index: int) -> Tensor:
        """The tensor at ``index``."""
        return self.tensors[index]

    def is_const(self, index: int) -> bool:
        """True when tensor ``index`` has constant data."""
        return index >= 0 and self.tensors[index].data is not None


def _op_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as s

    return {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def read_bytes(tflite: bytes | Path | str) -> bytes:
    """The flatbuffer bytes of ``tflite`` (bytes, or a path to a ``.tflite`` file)."""
    if isinstance(tflite, (bytes, bytearray)):
        return bytes(tflite)
    return read_model_file(tflite, size_limit(mcu=True))


def parse(tflite: bytes | Path | str) -> Graph:
    """Parse ``tflite`` into a :class:`Graph` (raises InputError for a file that is not a TFLite model)."""
    from ai_edge_litert import schema_py_generated as s

    buf = read_bytes(tflite)
    where = tflite if not isinstance(tflite, (bytes, bytearray)) else "model"
    m = check_tflite(buf, str(where))
    names = _op_names()
    if len(m.subgraphs) > 1:
        main_ops = {names.get(max(int(m.operatorCodes[o.opcodeIndex].builtinCode),
                                  int(m.operatorCodes[o.opcodeIndex].deprecatedBuiltinCode)), "?")
                    for o in m.subgraphs[0].operators or []}
        named = sorted(main_ops & set(MULTI_SUBGRAPH_OPS))
        if not named or set(named) & {"IF", "WHILE"}:
            raise UnsupportedOpError(
                f"{where}: {len(m.subgraphs)} subgraphs"
                + (f" (ops {', '.join(named)})" if named else "")
                + "; edgekit's AOT runtime runs single-subgraph models only",
                "control flow (WHILE/IF) is not supported; use the TFLM runtime (edgekit build --target cortex-m4 "
                "without --codegen)",
            )
    main = _subgraph(m, buf, 0, names)
    # resource variables: CALL_ONCE's init subgraphs, resolved by edgekit.aot.lower_vars
    main.extra["subgraphs"] = [_subgraph(m, buf, k, names) for k in range(1, len(m.subgraphs))]
    return main


def _subgraph(m: Any, buf: bytes, index: int, names: dict[int, str]) -> Graph:
    g = m.subgraphs[index]
    tensors: list[Tensor] = []
    for i, t in enumerate(g.tensors or []):
        q = t.quantization
        scale = np.asarray(q.scale if q is not None and q.scale is not None else [], dtype=np.float32)
        zp = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], dtype=np.int64)
        dtype = _TYPE_NAMES.get(t.type, f"type{t.type}")
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        data = None
        b = m.buffers[t.buffer] if t.buffer < len(m.buffers) else None
        if b is not None and b.data is not None and len(b.data) and t.type in _DTYPES:
            data = np.frombuffer(bytes(np.asarray(b.data, dtype=np.uint8)), dtype=_DTYPES[t.type]).copy()
            data = data.reshape(shape) if shape or data.size == 1 else data
        elif b is not None and b.offset:  # large models store buffers after the flatbuffer
            raw = buf[b.offset : b.offset + b.size]
            if t.type in _DTYPES:
                data = np.frombuffer(raw, dtype=_DTYPES[t.type]).copy().reshape(shape)
        name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name or f"t{i}")
        qd = int(q.quantizedDimension) if q is not None else 0
        tensors.append(Tensor(i, name, shape, dtype, scale, zp, qd, data, bool(t.isVariable)))
    ops: list[Op] = []
    for k, o in enumerate(g.operators or []):
        code = m.operatorCodes[o.opcodeIndex]
        c = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = names.get(c, f"BUILTIN_{c}")
        if name == "CUSTOM":
            cc = code.customCode.decode("utf-8", "replace") if isinstance(code.customCode, bytes) else code.customCode
            name = f"CUSTOM({cc})"
        ins = [int(x) for x in (o.inputs if o.inputs is not None else [])]
        outs = [int(x) for x in (o.outputs if o.outputs is not None else [])]
        ops.append(Op(k, name, ins, outs, o.builtinOptions))
    return Graph(tensors, ops, [int(x) for x in g.inputs], [int(x) for x in g.outputs])
