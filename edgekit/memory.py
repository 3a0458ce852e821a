"""Flash and RAM the deployed model needs on a target, and the budget check.

Every figure in :attr:`MemoryEstimate.breakdown` names where it comes from.

Microcontrollers (TFLM):

- flash = model bytes (the ``.tflite`` array, stored as is)
  + TFLM runtime core (:data:`TFLM_CORE_FLASH`)
  + one kernel per distinct op (:data:`TFLM_KERNEL_FLASH`, default :data:`TFLM_KERNEL_FLASH_DEFAULT`).
- RAM = tensor arena (measured on the host, plus :func:`arena_with_margin`'s margin)
  + runtime state (interpreter and op resolver objects, :func:`runtime_state_bytes`)
  + I/O buffers (one input and one output copy the application keeps).

Linux boards (LiteRT):

- flash = model file bytes;
- RAM = model bytes (the interpreter maps the file) + activation bytes (every
  non-constant tensor, no reuse: an upper bound) + :data:`LITERT_RUNTIME_RAM`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgekit.errors import BudgetError
from edgekit.targets import TargetProfile
from edgekit.tflite_model import ModelInfo, OperatorInfo, short_layer_name
from edgekit.tflm_host import ArenaMeasurement

# TFLM's own figures (tensorflow.org/lite/microcontrollers overview): the core runtime
# fits in 16 KB on a Cortex-M3, and 22 KB with the ops of the micro_speech keyword
# model (4 kernels, so about 1.5 KB per reference kernel).
TFLM_CORE_FLASH = 16 * 1024
# Per-kernel code size: edgekit's deliberately generous estimate (not measured here):
# 1-2 KB per simple kernel, 3-12 KB for the convolution/matmul/recurrent families, whose
# optimized (CMSIS-NN) versions are several times larger than the reference ones.
TFLM_KERNEL_FLASH_DEFAULT = 2 * 1024
TFLM_KERNEL_FLASH = {
    "CONV_2D": 8 * 1024, "DEPTHWISE_CONV_2D": 8 * 1024, "FULLY_CONNECTED": 4 * 1024,
    "TRANSPOSE_CONV": 8 * 1024, "SVDF": 6 * 1024, "UNIDIRECTIONAL_SEQUENCE_LSTM": 12 * 1024,
    "BATCH_MATMUL": 6 * 1024, "SOFTMAX": 4 * 1024, "ADD": 4 * 1024, "MUL": 4 * 1024, "SUB": 4 * 1024,
    "AVERAGE_POOL_2D": 3 * 1024, "MAX_POOL_2D": 3 * 1024, "LOGISTIC": 3 * 1024, "TANH": 3 * 1024,
    "RESHAPE": 1024, "SQUEEZE": 1024, "EXPAND_DIMS": 1024, "QUANTIZE": 3 * 1024, "DEQUANTIZE": 3 * 1024,
}
# MicroInterpreter + MicroAllocator objects and bookkeeping outside the arena (32-bit target),
# plus one TFLMRegistration (about 40 B) per op in the MicroMutableOpResolver.
TFLM_INTERPRETER_STATE = 1024
TFLM_RESOLVER_BYTES_PER_OP = 48
# Arena margin above the host measurement: the host is 64-bit, and a 32-bit device
# needs the same or less, but kernels built with CMSIS-NN may ask for scratch buffers
# the reference kernels do not. 10% and at least 1 KiB, rounded up to 16 bytes.
ARENA_MARGIN_FRACTION = 0.10
ARENA_MARGIN_MIN = 1024
# LiteRT on Linux: RSS growth from importing ai_edge_litert 2.3.0 (23.7 MB) and creating
# an interpreter with XNNPACK for a tiny model (3.4 MB), measured on the x86-64 build host.
LITERT_RUNTIME_RAM = 27 * 1024 * 1024


def arena_with_margin(arena: ArenaMeasurement) -> int:
    """The ``tensor_arena`` size edgekit emits: the measured need plus the documented margin."""
    need = max(arena.used_bytes, arena.min_bytes)
    size = need + max(ARENA_MARGIN_MIN, int(need * ARENA_MARGIN_FRACTION))
    return (size + 15) // 16 * 16


def runtime_state_bytes(info: ModelInfo) -> int:
    """RAM TFLM needs outside the arena: interpreter state plus the op resolver's table."""
    return TFLM_INTERPRETER_STATE + TFLM_RESOLVER_BYTES_PER_OP * info.op_count


def _layer(o: OperatorInfo, nbytes: int) -> dict[str, Any]:
    return {"layer": o.layer, "op": o.op, "index": o.index, "bytes": nbytes}


@dataclass(frozen=True)
class MemoryEstimate:
    """Flash and RAM of the deployment on one target, against that target's budget."""

    target: str
    runtime: str
    flash_bytes: int
    ram_bytes: int
    flash_budget_bytes: int
    ram_budget_bytes: int
    arena_bytes: int | None
    arena_min_bytes: int | None
    arena_alloc_bytes: int | None
    fits: bool
    breakdown: dict[str, Any] = field(default_factory=dict)
    largest_layers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def fits_flash(self) -> bool:
        return self.flash_bytes <= self.flash_budget_bytes

    @property
    def fits_ram(self) -> bool:
        return self.ram_bytes <= self.ram_budget_bytes

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``report.json`` (``memory`` section)."""
        d = asdict(self)
        d["flash_used_fraction"] = round(self.flash_bytes / self.flash_budget_bytes, 6)
        d["ram_used_fraction"] = round(self.ram_bytes / self.ram_budget_bytes, 6)
        return d


def estimate(info: ModelInfo, target: TargetProfile, arena: ArenaMeasurement | None = None, *, top: int = 5) -> MemoryEstimate:
    """Flash and RAM for ``info`` on ``target`` (see the module docstring for each figure's source).

    For TFLM targets without a measured ``arena``, the arena is bounded by the
    model's total activation bytes (no reuse) and the breakdown says so.
    """
    largest = {
        "weights": [_layer(o, o.weight_bytes) for o in info.largest_by_weights(top)],
        "activations": [_layer(o, o.activation_bytes) for o in info.largest_by_activations(top)],
    }
    io_bytes = sum(t.nbytes for t in (*info.inputs, *info.outputs))
    bd: dict[str, Any] = {}
    if target.is_mcu:
        kernels = {op: TFLM_KERNEL_FLASH.get(op, TFLM_KERNEL_FLASH_DEFAULT) for op in info.ops}
        flash = info.size_bytes + TFLM_CORE_FLASH + sum(kernels.values())
        bd["flash.model_bytes"] = {"bytes": info.size_bytes, "source": "the .tflite file, stored as a const array"}
        bd["flash.tflm_core"] = {"bytes": TFLM_CORE_FLASH, "source": "TFLM docs: core runtime fits in 16 KB on a Cortex-M3"}
        bd["flash.tflm_kernels"] = {"bytes": sum(kernels.values()), "per_op": kernels,
                                    "source": "edgekit estimate per kernel (1-12 KB, generous for CMSIS-NN builds; TFLM docs imply ~1.5 KB per reference kernel), not measured"}
        if arena is not None:
            alloc = arena_with_margin(arena)
            bd["ram.arena"] = {"bytes": alloc, "measured_used": arena.used_bytes, "measured_min": arena.min_bytes,
                               "measured_head": arena.head_bytes, "measured_tail": arena.tail_bytes,
                               "source": f"{arena.runtime} RecordingMicroAllocator total, plus margin max(1 KiB, 10%)"}
        else:
            alloc = (info.activation_bytes + 15) // 16 * 16
            bd["ram.arena"] = {"bytes": alloc, "source": "upper bound: all activation tensors without reuse (arena not measured)"}
        state = runtime_state_bytes(info)
        bd["ram.runtime_state"] = {"bytes": state, "source": "MicroInterpreter state ~1 KiB + 48 B per op in the resolver (estimate)"}
        bd["ram.io_buffers"] = {"bytes": io_bytes, "source": "one copy of the inputs and outputs kept by the application"}
        ram = alloc + state + io_bytes
    else:
        alloc = None
        flash = info.size_bytes
        bd["flash.model_bytes"] = {"bytes": info.size_bytes, "source": "the .tflite file on the board's storage"}
        bd["ram.model_bytes"] = {"bytes": info.size_bytes, "source": "the interpreter maps the whole file"}
        bd["ram.activations"] = {"bytes": info.activation_bytes, "source": "every non-constant tensor, no reuse (upper bound)"}
        bd["ram.litert_runtime"] = {"bytes": LITERT_RUNTIME_RAM, "source": "RSS growth of ai_edge_litert 2.3.0 + XNNPACK interpreter, measured on the x86-64 host"}
        ram = info.size_bytes + info.activation_bytes + LITERT_RUNTIME_RAM
    return MemoryEstimate(
        target=target.name, runtime=target.runtime,
        flash_bytes=int(flash), ram_bytes=int(ram),
        flash_budget_bytes=target.flash_bytes, ram_budget_bytes=target.ram_bytes,
        arena_bytes=None if arena is None else arena.used_bytes,
        arena_min_bytes=None if arena is None else arena.min_bytes,
        arena_alloc_bytes=alloc,
        fits=flash <= target.flash_bytes and ram <= target.ram_bytes,
        breakdown=bd, largest_layers=largest,
    )


def _consumers(items: list[dict[str, Any]], n: int = 3) -> str:
    return ", ".join(f"{short_layer_name(it['layer'])} ({it['op']}, {it['bytes']:,} B)" for it in items[:n])


def arena_floor(info: ModelInfo) -> int:
    """Bytes below which no arena can go: the largest one operator's outputs, or the largest model input
    (TFLM keeps both in the arena).

    A model whose floor exceeds the RAM budget cannot fit, and probing TFLM's arena
    on it can take minutes (a fuzzed person_detect with a huge dimension took 300 s;
    a keyword_scrambled whose 200 MB input only QUANTIZE reads, 14 s of CPU).
    """
    return max([o.activation_bytes for o in info.operators] + [t.nbytes for t in info.inputs], default=0)


def check_budget(est: MemoryEstimate, target: TargetProfile) -> None:
    """Raise BudgetError (exit 3) when ``est`` exceeds ``target``'s flash or RAM, naming both numbers and the biggest layers."""
    parts = []
    if est.flash_bytes > target.flash_bytes:
        parts.append(f"flash {est.flash_bytes:,} B > budget {target.flash_bytes:,} B "
                     f"(largest weights: {_consumers(est.largest_layers.get('weights', []))})")
    if est.ram_bytes > target.ram_bytes:
        parts.append(f"RAM {est.ram_bytes:,} B > budget {target.ram_bytes:,} B "
                     f"(largest activations: {_consumers(est.largest_layers.get('activations', []))})")
    if parts:
        raise BudgetError(f"model does not fit {target.name}: " + "; ".join(parts),
                          "prune or shrink the largest layers, or pick a target with more memory (edgekit targets)")
