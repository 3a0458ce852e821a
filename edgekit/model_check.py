"""The model verifier: every ``.tflite`` passes here before anything else trusts it.

:func:`read_model_file` reads a model path (a regular file of bounded size,
never a FIFO or a device); :func:`check_tflite` parses the flatbuffer and
checks it against itself, so that parsers, code generators and runtimes
(LiteRT, TFLM) only ever see a model whose every index points into its table:

- tensor → buffer, operator → opcode, operator inputs/outputs/intermediates →
  tensors (and each input is a subgraph input, a constant, a variable or the
  output of an earlier operator), subgraph inputs/outputs → tensors, control-flow options → subgraphs
  (and no subgraph calls itself, directly or not);
- shapes: non-negative dimensions, at most :data:`MAX_RANK` of them, and a
  product (and byte size) within :data:`MAX_TENSOR_BYTES`;
- constant buffers: inside the file, and exactly shape × dtype bytes;
- quantization: finite, positive scales; zero points inside the dtype's range;
  per-channel arrays as long as the quantized dimension;
- opcodes: a builtin code the schema knows, a version in ``1..MAX_OP_VERSION``,
  a name for custom ops.

A failure is an :class:`~edgekit.errors.InputError` (exit 2) naming the file,
the tensor or op, and the problem.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any

from edgekit.errors import InputError

MAX_MODEL_BYTES = 2**31 - 1  # flatbuffers address 2 GiB
MAX_MODEL_BYTES_MCU = 64 * 2**20  # no microcontroller has more flash than this
MAX_TENSOR_BYTES = 2**31 - 1  # sizes and offsets are int32 in TFLM and in edgekit's C runtime
MAX_RANK = 8
MAX_OP_VERSION = 20  # TFLite's op versions are single digits or low teens; beyond this is corruption
MAX_SUBGRAPHS = 1024

_HINT = "the file may be truncated or corrupt; re-export it with the TFLite converter"

# bits per element of each TFLite tensor type (0: no fixed size)
TYPE_BITS = {
    "FLOAT32": 32, "FLOAT16": 16, "INT32": 32, "UINT8": 8, "INT64": 64, "STRING": 0, "BOOL": 8,
    "INT16": 16, "COMPLEX64": 64, "INT8": 8, "FLOAT64": 64, "COMPLEX128": 128, "UINT64": 64,
    "RESOURCE": 0, "VARIANT": 0, "UINT32": 32, "UINT16": 16, "INT4": 4, "BFLOAT16": 16, "INT2": 2,
    "UINT4": 4, "FLOAT8_E4M3FN": 8, "FLOAT8_E5M2": 8,
}
# zero-point range of the integer types quantization is used with
_ZP_RANGE = {
    "INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767), "UINT16": (0, 65535),
    "INT4": (-8, 7), "UINT4": (0, 15), "INT2": (-2, 1),
    "INT32": (0, 0), "INT64": (0, 0),  # biases: TFLite's quantization spec fixes their zero point at 0
}


def _enum_names(cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def size_limit(mcu: bool = False) -> int:
    """The largest model file edgekit reads: ``EDGEKIT_MAX_MODEL_BYTES``, else 64 MiB for microcontrollers, 2 GiB otherwise."""
    env = os.environ.get("EDGEKIT_MAX_MODEL_BYTES")
    if env:
        try:
            return int(env)
        except ValueError:
            raise InputError(f"EDGEKIT_MAX_MODEL_BYTES={env!r}: not a whole number of bytes") from None
    return MAX_MODEL_BYTES_MCU if mcu else MAX_MODEL_BYTES


def check_regular_file(path: Path, max_bytes: int | None = None) -> int:
    """Raise InputError unless ``path`` is a regular file of at most ``max_bytes``; return its size.

    Uses ``stat`` only: a FIFO, a device (``/dev/zero``) or a socket is refused
    before anything opens it.
    """
    limit = size_limit() if max_bytes is None else max_bytes
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a folder, not a model file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file (a device, FIFO or socket)", "pass a model file")
    if st.st_size > limit:
        raise InputError(f"{path}: {st.st_size:,} bytes is over the {limit:,}-byte model size limit",
                         "set EDGEKIT_MAX_MODEL_BYTES to raise it")
    return st.st_size


def read_model_file(path: str | Path, max_bytes: int | None = None) -> bytes:
    """The bytes of the model file ``path``, read only if it is a regular file within ``max_bytes``."""
    p = Path(path)
    limit = size_limit() if max_bytes is None else max_bytes
    check_regular_file(p, limit)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())  # the file opened, not a swapped-in FIFO
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{p}: not a regular file (a device, FIFO or socket)", "pass a model file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"{p}: over the {limit:,}-byte model size limit", "set EDGEKIT_MAX_MODEL_BYTES to raise it")
    return data


def check_tflite(buf: bytes, where: str) -> Any:
    """Parse ``buf`` and check it (see the module docstring); return the ``ModelT`` object.

    Raises InputError naming ``where`` and the first problem found.
    """
    from ai_edge_litert import schema_py_generated as schema

    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise InputError(f"{where}: not a TFLite flatbuffer (no 'TFL3' identifier)", "pass a .tflite file written by the TFLite converter")
    try:
        model = schema.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as exc:  # the generated parser raises anything on corrupt input
        raise InputError(f"{where}: not a TFLite flatbuffer ({type(exc).__name__}: {str(exc)[:80] or 'corrupt or truncated'})", _HINT) from None
    try:
        _Checker(model, buf, where, schema).run()
    except InputError:
        raise
    except (TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:  # fields of the wrong kind
        raise InputError(f"{where}: inconsistent flatbuffer ({type(exc).__name__})", _HINT) from None
    return model


class _Checker:
    def __init__(self, model: Any, buf: bytes, where: str, schema: Any):
        self.m, self.buf, self.where = model, buf, where
        self.type_names = _enum_names(schema.TensorType)
        self.op_names = _enum_names(schema.BuiltinOperator)
        self.buffers = model.buffers or []
        self.opcodes = model.operatorCodes or []

    def fail(self, what: str) -> None:
        raise InputError(f"{self.where}: {what}", _HINT)

    def run(self) -> None:
        subgraphs = self.m.subgraphs or []
        if not subgraphs:
            self.fail("the model has no subgraph")
        if len(subgraphs) > MAX_SUBGRAPHS:
            self.fail(f"{len(subgraphs)} subgraphs, over the limit of {MAX_SUBGRAPHS}")
        buffer_bytes = [self._buffer(i, b) for i, b in enumerate(self.buffers)]
        opnames = [self._opcode(i, c) for i, c in enumerate(self.opcodes)]
        calls: dict[int, set[int]] = {}
        for s, sg in enumerate(subgraphs):
            calls[s] = self._subgraph(s, sg, buffer_bytes, opnames, len(subgraphs))
        main = subgraphs[0]
        if not len(main.inputs if main.inputs is not None else []) or not len(main.outputs if main.outputs is not None else []):
            self.fail("the main subgraph has no inputs or no outputs; edgekit needs at least one of each")
        self._no_recursion(calls)

    def _buffer(self, i: int, b: Any) -> int | None:
        """Bytes held by buffer ``i`` (None: an empty buffer)."""
        if b is None:
            return None
        if b.data is not None and len(b.data):
            return len(b.data)
        offset, size = int(b.offset or 0), int(b.size or 0)
        if offset > 1:  # buffers stored after the flatbuffer (models over 2 GB)
            if size < 0 or offset + size > len(self.buf):
                self.fail(f"buffer {i}: bytes {offset}..{offset + size} lie outside the {len(self.buf)}-byte file")
            return size if size else None
        return None

    def _opcode(self, i: int, c: Any) -> str:
        code = max(int(c.builtinCode or 0), int(c.deprecatedBuiltinCode or 0))
        name = self.op_names.get(code)
        if name is None or int(c.deprecatedBuiltinCode or 0) < 0:
            self.fail(f"operator code {i}: unknown builtin op {code}")
        version = 1 if c.version is None else int(c.version)
        if not 1 <= version <= MAX_OP_VERSION:
            self.fail(f"operator code {i} ({name}): version {c.version} is not one TFLM or edgekit knows (1..{MAX_OP_VERSION})")
        if name == "CUSTOM" and not c.customCode:
            self.fail(f"operator code {i}: a CUSTOM op without a name")
        return name

    def _subgraph(self, s: int, sg: Any, buffer_bytes: list[int | None], opnames: list[str], n_subgraphs: int) -> set[int]:
        tensors = sg.tensors or []
        n = len(tensors)
        label = "" if s == 0 else f"subgraph {s}: "
        for i, t in enumerate(tensors):
            self._tensor(f"{label}tensor {i} '{_name(t, i)}'", t, buffer_bytes)
        for kind, idx in (("input", sg.inputs), ("output", sg.outputs)):
            for j in (idx if idx is not None else []):
                if not 0 <= int(j) < n:
                    self.fail(f"{label}model {kind} {int(j)} is not a tensor (the subgraph has {n})")
        called: set[int] = set()
        # operators run in order: each input is a subgraph input, a constant, a variable or an earlier output
        written = {int(j) for j in (sg.inputs if sg.inputs is not None else [])}
        written |= {i for i, t in enumerate(tensors) if t.isVariable or buffer_bytes[int(t.buffer or 0)] is not None}
        for k, op in enumerate(sg.operators or []):
            oc = int(op.opcodeIndex or 0)
            if not 0 <= oc < len(opnames):
                self.fail(f"{label}operator {k}: opcode index {oc} is out of range ({len(opnames)} operator codes)")
            where = f"{label}operator {k} ({opnames[oc]})"
            for kind, idx, lo in (("input", op.inputs, -1), ("output", op.outputs, 0), ("intermediate", op.intermediates, 0)):
                for j in (idx if idx is not None else []):
                    if not lo <= int(j) < n:
                        self.fail(f"{where}: {kind} tensor index {int(j)} is out of range ({n} tensors)")
            for j in (op.inputs if op.inputs is not None else []):
                if int(j) >= 0 and int(j) not in written:
                    self.fail(f"{where}: input tensor {int(j)} '{_name(tensors[int(j)], int(j))}' is read before any operator writes it")
            written |= {int(j) for j in (op.outputs if op.outputs is not None else [])}
            for field_name, value in getattr(op.builtinOptions, "__dict__", {}).items():
                if field_name.endswith("SubgraphIndex") or field_name == "subgraph":
                    if not 0 <= int(value) < n_subgraphs:
                        self.fail(f"{where}: {field_name} {int(value)} is not a subgraph ({n_subgraphs} subgraphs)")
                    called.add(int(value))
        return called

    def _tensor(self, where: str, t: Any, buffer_bytes: list[int | None]) -> None:
        tname = self.type_names.get(t.type)
        if tname is None:
            self.fail(f"{where}: unknown tensor type {t.type}")
        shape = [int(d) for d in (t.shape if t.shape is not None else [])]
        if len(shape) > MAX_RANK:
            self.fail(f"{where}: rank {len(shape)} is over {MAX_RANK}")
        if any(d < 0 for d in shape):
            self.fail(f"{where}: negative dimension in shape {shape}")
        elements = math.prod(shape)
        bits = TYPE_BITS.get(tname, 8)
        nbytes = (elements * bits + 7) // 8
        if elements > MAX_TENSOR_BYTES or nbytes > MAX_TENSOR_BYTES:
            self.fail(f"{where}: shape {shape} has {elements:,} elements, over the {MAX_TENSOR_BYTES:,}-byte tensor limit")
        b = int(t.buffer or 0)
        if not 0 <= b < max(len(buffer_bytes), 1):
            self.fail(f"{where}: buffer index {b} is out of range ({len(buffer_bytes)} buffers)")
        held = buffer_bytes[b] if b < len(buffer_bytes) else None
        if held is not None and bits:
            allowed = {nbytes} | ({elements} if bits < 8 else set())  # sub-byte types: packed or one per byte
            if held not in allowed:
                self.fail(f"{where}: its buffer holds {held} bytes but shape {shape} of {tname.lower()} needs {nbytes}")
        self._quant(where, t, tname, shape)

    def _quant(self, where: str, t: Any, tname: str, shape: list[int]) -> None:
        q = t.quantization
        if q is None:
            return
        scale = [] if q.scale is None else [float(v) for v in q.scale]
        zp = [] if q.zeroPoint is None else [int(v) for v in q.zeroPoint]
        if not scale and not zp:
            return
        bad = next((v for v in scale if not (math.isfinite(v) and v > 0.0)), None)
        if bad is not None:
            self.fail(f"{where}: quantization scale {bad} is not a finite positive number")
        if len(zp) not in (0, len(scale)):
            self.fail(f"{where}: {len(scale)} scales but {len(zp)} zero points")
        lo, hi = _ZP_RANGE.get(tname, (-(2**63), 2**63 - 1))
        badzp = next((v for v in zp if not lo <= v <= hi), None)
        if badzp is not None:
            self.fail(f"{where}: zero point {badzp} is outside the {tname.lower()} range {lo}..{hi}")
        if len(scale) > 1:
            qd = int(q.quantizedDimension or 0)
            if len(shape) == 1 and shape[0] == len(scale):
                return  # converters write per-channel biases with the weights' dimension (person_detect: 3 on [8])
            if not 0 <= qd < len(shape):
                self.fail(f"{where}: quantized dimension {qd} is not a dimension of shape {shape}")
            if shape[qd] != len(scale):
                self.fail(f"{where}: {len(scale)} per-channel scales but dimension {qd} of shape {shape} is {shape[qd]}")

    def _no_recursion(self, calls: dict[int, set[int]]) -> None:
        state: dict[int, int] = {}  # 1: on the current path, 2: done
        for root in calls:
            stack = [(root, iter(sorted(calls[root])))]
            if state.get(root):
                continue
            state[root] = 1
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    state[node] = 2
                    stack.pop()
                elif state.get(nxt) == 1:
                    self.fail(f"subgraph {nxt} calls itself through control flow (WHILE/IF/CALL_ONCE recursion)")
                elif not state.get(nxt):
                    state[nxt] = 1
                    stack.append((nxt, iter(sorted(calls[nxt]))))


def _name(t: Any, i: int) -> str:
    n = t.name
    s = n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n or f"tensor_{i}")
    return s if len(s) <= 80 else s[:77] + "..."
