"""Resource variables (VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE, CALL_ONCE) in edgekit's C runtime.

A streaming model keeps its state in ``tf.Variable`` s: the converter writes a
VAR_HANDLE per variable, READ_VARIABLE / ASSIGN_VARIABLE around the update, and a
CALL_ONCE whose init subgraph assigns the initial values. :func:`resolve` rewrites
that into ops over ordinary *variable tensors* (one per variable, by its container
and shared name), which live in the arena's state area
(:func:`edgekit.aot.lower_state.state_layout`) like SVDF's and the LSTM's state:

- VAR_HANDLE and CALL_ONCE disappear; READ_VARIABLE copies the variable into its
  output, ASSIGN_VARIABLE copies its value into the variable (``ek_copy``).
- The init subgraph must only assign constants, and each constant must equal what
  TFLM's ``Reset()`` puts in the variable (its bytes all zero, or all the zero point
  for int8). TFLM runs CALL_ONCE on the first ``Invoke()`` only; ``Reset()`` then
  refills the variables with that default and does not run it again. With such
  an init, every sequence starts from the same state in TFLM, and
  ``<prefix>_reset`` (which fills the state area with it) is exact. Any other init
  is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.aot.graph import Graph, Op, Tensor
from edgekit.aot.lower import Lowered, _unsupported

RESOURCE_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE")
OPS = RESOURCE_OPS  # the runtime's op set; VAR_HANDLE and CALL_ONCE never reach lower_op (resolve removes them)


@dataclass(frozen=True)
class Variable:
    """One resource variable: its key (container, shared name) and its initial value from the init subgraph."""

    key: tuple[str, str]
    init: Tensor | None


_ARITY = {"VAR_HANDLE": (0, 1), "READ_VARIABLE": (1, 1), "ASSIGN_VARIABLE": (2, 0), "CALL_ONCE": (0, 0)}


def _check_arity(op: Op) -> None:
    n_in, n_out = _ARITY[op.name]
    if len(op.inputs) != n_in or len(op.outputs) != n_out or min((*op.inputs, *op.outputs), default=0) < 0:
        raise _unsupported(op, f"{len(op.inputs)} inputs and {len(op.outputs)} outputs, expected {n_in} and {n_out}")
    if op.name == "CALL_ONCE" and not hasattr(op.options, "initSubgraphIndex"):
        raise _unsupported(op, "its options are missing")


def _key(op: Op) -> tuple[str, str]:
    o = op.options

    def text(v) -> str:
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")

    return text(getattr(o, "container", b"")), text(getattr(o, "sharedName", b""))


def _initial_values(g: Graph) -> dict[tuple[str, str], tuple[Tensor, Op]]:
    """The constant each CALL_ONCE init subgraph assigns to each variable (refused unless all are constants)."""
    subs = g.extra.get("subgraphs", [])
    inits: dict[tuple[str, str], tuple[Tensor, Op]] = {}
    for op in g.ops:
        if op.name != "CALL_ONCE":
            continue
        k = int(op.options.initSubgraphIndex)
        if not 1 <= k <= len(subs):
            raise _unsupported(op, f"init subgraph {k} does not exist")
        sub = subs[k - 1]
        handles = {}
        for o in sub.ops:
            if o.name in _ARITY:
                _check_arity(o)
            if o.name == "VAR_HANDLE":
                handles[o.outputs[0]] = _key(o)
            elif o.name == "ASSIGN_VARIABLE" and o.inputs[0] in handles and sub.is_const(o.inputs[1]):
                inits[handles[o.inputs[0]]] = sub.t(o.inputs[1]), op
            else:
                raise _unsupported(op, f"its init subgraph runs {o.name} on computed values; edgekit lowers an "
                                       "init that assigns constants only")
    return inits


def _reset_value(t: Tensor) -> int:
    """The byte TFLM's Reset() fills a resource variable with: the zero point for a quantized one, else 0."""
    return int(np.int8(t.zp)) if t.zero_point.size else 0


def resolve(g: Graph) -> None:
    """Rewrite ``g``'s resource-variable ops in place into READ_VARIABLE / ASSIGN_VARIABLE over variable tensors
    (see the module docstring); a graph without them is left alone. Raises UnsupportedOpError naming the op."""
    if not any(op.name in RESOURCE_OPS for op in g.ops):
        return
    for op in g.ops:
        if op.name in RESOURCE_OPS:
            _check_arity(op)
    inits = _initial_values(g)
    handle_of: dict[int, tuple[str, str]] = {}
    for op in g.ops:
        if op.name == "VAR_HANDLE":
            handle_of[op.outputs[0]] = _key(op)
    var_of: dict[tuple[str, str], int] = {}
    ops: list[Op] = []
    for op in g.ops:
        if op.name in ("VAR_HANDLE", "CALL_ONCE"):
            continue
        if op.name not in ("READ_VARIABLE", "ASSIGN_VARIABLE"):
            ops.append(op)
            continue
        if op.inputs[0] not in handle_of:
            raise _unsupported(op, "its resource is not a VAR_HANDLE of the main graph")
        key = handle_of[op.inputs[0]]
        value = g.t(op.outputs[0]) if op.name == "READ_VARIABLE" else g.t(op.inputs[1])
        if key not in var_of:
            var_of[key] = _new_variable(g, op, key, value, inits.get(key))
        var = g.t(var_of[key])
        if value.dtype != var.dtype or value.nbytes != var.nbytes:
            raise _unsupported(op, f"'{value.name}' is {value.dtype} {list(value.shape)}, the variable "
                                   f"'{var.name}' {var.dtype} {list(var.shape)}")
        if op.name == "READ_VARIABLE":
            ops.append(Op(op.index, op.name, [var.index], list(op.outputs), None))
        else:
            ops.append(Op(op.index, op.name, [value.index], [var.index], None))
    g.ops[:] = ops


def _new_variable(g: Graph, op: Op, key: tuple[str, str], value: Tensor, init: tuple[Tensor, Op] | None) -> int:
    """Append the variable tensor for ``key`` (shaped and typed as its first use) and check its init
    (``init``: the constant and the CALL_ONCE that assigns it)."""
    if init is not None:
        init, call_once = init
        if init.dtype != value.dtype or init.nbytes != value.nbytes:
            raise _unsupported(op, f"variable '{key[1]}' is initialised as {init.dtype} {list(init.shape)} but used "
                                   f"as {value.dtype} {list(value.shape)}")
        default = _reset_value(init)
        if (init.data.reshape(-1).view(np.uint8) != np.uint8(default & 0xFF)).any():
            raise _unsupported(call_once, f"variable '{key[1]}' starts from a value other than TFLM's reset value; "
                                          "TFLM's Reset() does not run CALL_ONCE again, so later sequences would "
                                          "start elsewhere")
    t = Tensor(len(g.tensors), key[1] or f"variable{len(g.tensors)}", value.shape, value.dtype, value.scale,
               value.zero_point, value.quantized_dimension, None, True)
    if t.dtype == "int8" and t.zp != _reset_value(t):
        raise _unsupported(op, f"variable '{key[1]}' has zero point {t.zp}")
    g.tensors.append(t)
    return t.index


def _copy(g: Graph, op: Op) -> Lowered:
    src, dst = g.t(op.inputs[0]), g.t(op.outputs[0])
    call = f"ek_copy({dst.nbytes}, {{t{src.index}}}, {{t{dst.index}}});"
    if op.name == "READ_VARIABLE":
        return Lowered(op.name, "ek_misc.c", [], call, (), dst.index)
    # ASSIGN_VARIABLE writes the state area, which the planner does not place; it is planned as the
    # last reader of its value (which must stay alive until here)
    return Lowered(op.name, "ek_misc.c", [], call, (src.index,), src.index)


def lowerings() -> dict:
    """The op lowerings this module adds (the ops :func:`resolve` leaves)."""
    return {"READ_VARIABLE": _copy, "ASSIGN_VARIABLE": _copy}
