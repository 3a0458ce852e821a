"""What int16 activations cost against int8 for the same model, measured for the build report.

An int16x8 build's arena is measured by the TFLM interpreter as every build's is;
:func:`int16_cost` measures the arena of plain int8 of the same model too, so the
report states the cost as two measured figures, not as a rule of thumb.
Instructions per inference come from ``edgekit verify --emulator``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgekit.tflm_host import ArenaMeasurement, measure_arena


@dataclass(frozen=True)
class Int16Cost:
    """TFLM arenas of the int16x8 model and of plain int8 of the same model (both measured)."""

    arena_bytes: int
    int8_arena_bytes: int
    activation_bytes: int | None  # of the arena: planned (non-persistent) tensors
    int8_activation_bytes: int | None
    runtime: str
    instructions: str = "`edgekit verify --emulator` measures edgekit's C runtime per inference (emulator section)"

    @property
    def arena_ratio(self) -> float:
        """int16x8 arena over int8 arena."""
        return self.arena_bytes / self.int8_arena_bytes

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``report.json`` → ``quantization.cost``."""
        return asdict(self) | {"arena_ratio": round(self.arena_ratio, 3)}


def int16_cost(arena: ArenaMeasurement, int8_tflite: bytes) -> Int16Cost:
    """The cost of the int16x8 model whose arena is ``arena`` against ``int8_tflite``, its plain int8 conversion."""
    int8 = measure_arena(int8_tflite)
    return Int16Cost(arena_bytes=arena.used_bytes, int8_arena_bytes=int8.used_bytes,
                     activation_bytes=arena.head_bytes, int8_activation_bytes=int8.head_bytes, runtime=arena.runtime)
