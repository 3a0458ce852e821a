"""A seeded, structure-aware mutator of ``.tflite`` flatbuffers, for the fuzz tests and ``bench/fuzz.py``.

:func:`mutate` makes one hostile variant of a model, as an attacker or a broken
converter would: raw byte flips, truncation, or an edit of one field through
the flatbuffer object API (tensor shape, type or buffer index, opcode index,
operator inputs/outputs out of range, quantization scale 0/NaN/inf/negative,
zero point out of range, huge dimensions, op version, subgraph I/O). The same
``(model, seed)`` always gives the same bytes.
"""

from __future__ import annotations

import random
from pathlib import Path

import flatbuffers
from ai_edge_litert import schema_py_generated as schema

BAD_SCALES = (0.0, float("nan"), float("inf"), -1.0, -0.5, 1e-45, 3.4e38)
BAD_INTS = (-2**31, -129, -2, -1, 0, 1, 3, 127, 128, 255, 256, 2**15, 2**16, 2**31 - 1)
HUGE_DIMS = (0, 2**16, 2**20, 2**31 - 1, 46341, 65536 * 3)


def model_files(shared: Path) -> list[Path]:
    """The ``.tflite`` files under ``shared`` (sorted, so seeds pick the same model everywhere)."""
    return sorted(shared.rglob("*.tflite"))


def pack(model: schema.ModelT) -> bytes:
    """The flatbuffer bytes of ``model`` (a ``ModelT``), with the TFL3 identifier."""
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _byte_flips(buf: bytes, rng: random.Random) -> bytes:
    out = bytearray(buf)
    for _ in range(rng.choice((1, 1, 2, 4, 8, 32))):
        i = rng.randrange(len(out))
        out[i] = rng.choice((0x00, 0xFF, 0x7F, 0x80, rng.randrange(256), out[i] ^ (1 << rng.randrange(8))))
    return bytes(out)


def _truncate(buf: bytes, rng: random.Random) -> bytes:
    return buf[: rng.randrange(len(buf))]


def _pick(items, rng: random.Random):
    return items[rng.randrange(len(items))] if items is not None and len(items) else None


def _edit(model: schema.ModelT, rng: random.Random) -> str:
    """Change one field of ``model`` in place; return what was changed."""
    sg = model.subgraphs[0]
    tensors, ops = sg.tensors or [], sg.operators or []
    n = len(tensors)
    kind = rng.choice(("shape", "type", "buffer", "opcode_index", "op_input", "op_output", "scale", "zero_point",
                       "huge_dim", "version", "builtin", "io", "qdim", "drop_input", "rank"))
    t = _pick(tensors, rng)
    op = _pick(ops, rng)
    if kind in ("shape", "huge_dim", "rank") and t is not None:
        shape = list(t.shape) if t.shape is not None else []
        if kind == "rank":
            shape = shape + [1] * rng.randrange(1, 12) if rng.random() < 0.5 else shape[: rng.randrange(len(shape) + 1)]
        elif shape:
            shape[rng.randrange(len(shape))] = rng.choice(HUGE_DIMS) if kind == "huge_dim" else rng.choice((-1, 0, 1, 2, 3, 7))
        else:
            shape = [rng.choice(HUGE_DIMS)]
        t.shape = shape
    elif kind == "type" and t is not None:
        t.type = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 17, 25, 100))
    elif kind == "buffer" and t is not None:
        t.buffer = rng.choice((0, len(model.buffers), len(model.buffers) + 7, 2**31 - 1, rng.randrange(max(len(model.buffers), 1))))
    elif kind == "opcode_index" and op is not None:
        op.opcodeIndex = rng.choice((len(model.operatorCodes), 255, 2**31 - 1, rng.randrange(len(model.operatorCodes))))
    elif kind in ("op_input", "op_output") and op is not None:
        cur = op.inputs if kind == "op_input" else op.outputs
        lst = list(cur) if cur is not None and len(cur) else [0]
        lst[rng.randrange(len(lst))] = rng.choice((-2, -1, n, n + 100, 2**31 - 1, rng.randrange(max(n, 1))))
        if kind == "op_input":
            op.inputs = lst
        else:
            op.outputs = lst
    elif kind == "drop_input" and op is not None and op.inputs is not None and len(op.inputs):
        op.inputs = list(op.inputs)[:-1]
    elif kind in ("scale", "zero_point", "qdim") and t is not None and t.quantization is not None and t.quantization.scale is not None:
        q = t.quantization
        if kind == "scale":
            s = list(q.scale)
            s[rng.randrange(len(s))] = rng.choice(BAD_SCALES)
            q.scale = s
        elif kind == "zero_point":
            z = list(q.zeroPoint) if q.zeroPoint is not None and len(q.zeroPoint) else [0]
            z[rng.randrange(len(z))] = rng.choice(BAD_INTS)
            q.zeroPoint = z
        else:
            q.quantizedDimension = rng.choice((-1, 1, 2, 3, 4, 9))
    elif kind == "version":
        c = _pick(model.operatorCodes, rng)
        if c is not None:
            c.version = rng.choice((-1, 0, 1, 2, 5, 13, 99, 2**31 - 1))
    elif kind == "builtin":
        c = _pick(model.operatorCodes, rng)
        if c is not None:
            c.builtinCode = rng.choice((0, 3, 4, 9, 22, 25, 32, 114, 150, 209, 300, 2**31 - 1))
            c.deprecatedBuiltinCode = min(c.builtinCode, 127)
    elif kind == "io":
        lst = list(sg.inputs if rng.random() < 0.5 else sg.outputs)
        if lst:
            lst[rng.randrange(len(lst))] = rng.choice((-1, n, n + 5, rng.randrange(max(n, 1))))
            sg.inputs = lst
    return kind


def mutate(buf: bytes, seed: int) -> tuple[bytes, str]:
    """One mutated copy of the model ``buf`` for ``seed``, and the kind of mutation."""
    rng = random.Random(seed)
    r = rng.random()
    if r < 0.25:
        return _byte_flips(buf, rng), "byte_flips"
    if r < 0.33:
        return _truncate(buf, rng), "truncate"
    model = schema.ModelT.InitFromPackedBuf(buf, 0)
    kinds = [_edit(model, rng) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
    return pack(model), "+".join(kinds)
