"""Static memory planner: every intermediate tensor gets an offset in one arena.

The plan is data (buffers with sizes, lifetimes and offsets); the generated C,
the report and the linker script all read it.

- A *step* is one op: the tensors it reads and the tensor it writes (SPLIT writes several).
- Tensors whose data is identical (RESHAPE and friends) share one buffer.
- An elementwise op may write over an input that dies at that op (in place),
  unless that input is the caller's read-only input buffer.
- The model's input lives in the caller's ``in`` buffer and its output in the
  caller's ``out`` buffer, so neither takes arena space; a buffer merged with
  them lives there too.
- A windowed op (conv, depthwise, pooling) writes its output in address order
  and reads its input in address order too, so its output may start ``D`` bytes
  before an input that dies at that op and overlap the rest of it: every byte
  written is one no later output element reads. ``D`` comes from the op's
  geometry (:func:`edgekit.aot.lower.overlap_distance`). With it the arena can
  be smaller than the "lower bound" (the largest sum of tensors alive at once).
- Arena buffers are placed greedily (largest first, lowest offset that does not
  overlap any buffer alive at the same time, as TFLM's GreedyMemoryPlanner);
  a few orderings are tried and the smallest arena kept.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

ALIGN = 4  # float I/O intermediates need 4-byte alignment; int8 needs none


@dataclass(frozen=True)
class Step:
    """One op as the planner sees it."""

    reads: tuple[int, ...]
    write: int
    alias_of: int | None = None  # the output is this input, byte for byte (RESHAPE)
    inplace: tuple[int, ...] = ()  # inputs the output may overwrite (same byte size)
    overlap: tuple[int, int] | None = None  # (input, D): output may start D bytes before that input
    also_writes: tuple[int, ...] = ()  # further outputs of the op (SPLIT): fresh buffers, no reuse tricks


@dataclass(frozen=True)
class Buffer:
    """A piece of memory holding one or more tensors (aliases) over steps ``first..last``."""

    tensors: tuple[int, ...]
    size: int
    first: int
    last: int
    home: str  # "arena", "input" or "output"
    offset: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MemoryPlan:
    """Where every non-constant tensor lives; ``arena_bytes`` is the arena the generated C declares."""

    buffers: tuple[Buffer, ...]
    arena_bytes: int
    lower_bound_bytes: int  # largest sum of arena buffers alive at one step
    unshared_bytes: int  # arena needed with no reuse at all (every intermediate tensor on its own)
    aliased_steps: int  # steps that needed no new memory (aliases and in-place ops)
    overlapped_steps: int = 0  # steps whose output overlaps its dying input
    tensor_buffer: dict[int, int] = field(default_factory=dict)

    def location(self, tensor: int) -> tuple[str, int]:
        """(home, offset) of ``tensor``."""
        b = self.buffers[self.tensor_buffer[tensor]]
        return b.home, b.offset

    def to_dict(self) -> dict[str, Any]:
        return {
            "arena_bytes": self.arena_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "unshared_bytes": self.unshared_bytes,
            "aliased_steps": self.aliased_steps,
            "overlapped_steps": self.overlapped_steps,
            "buffers": [b.to_dict() for b in self.buffers],
        }


def _align(v: int) -> int:
    return (v + ALIGN - 1) // ALIGN * ALIGN


def plan_memory(steps: list[Step], sizes: dict[int, int], model_input: int | Sequence[int], model_output: int | Sequence[int], *,
                io_in_arena: bool = False) -> MemoryPlan:
    """Plan ``steps`` (in execution order); ``sizes`` gives the byte size of every non-constant tensor.

    ``io_in_arena``: the model's input and output are arena buffers too (the application writes the
    input into the arena and reads the output there), so their bytes are shared like any other's.
    A model with several inputs or outputs passes them as sequences and needs ``io_in_arena``:
    every input is live from the start and every output to the end.
    """
    ins = [model_input] if isinstance(model_input, int) else list(model_input)
    outs = [model_output] if isinstance(model_output, int) else list(model_output)
    if (len(ins) > 1 or len(outs) > 1) and not io_in_arena:
        raise ValueError("several model inputs or outputs are planned in the arena (io_in_arena=True)")
    model_input, model_output = ins[0], outs[0]
    n = len(steps)
    first = {t: n for t in sizes}
    last = {t: -1 for t in sizes}
    for t in ins:
        first[t] = -1
    for i, s in enumerate(steps):
        for w in (s.write, *s.also_writes):
            first[w] = min(first[w], i)
            last[w] = max(last[w], i)
        for r in s.reads:
            if r in sizes:
                last[r] = max(last[r], i)
    for t in outs:
        last[t] = n
    for t in ins:
        last[t] = max(last[t], -1)

    parent = {t: t for t in sizes}

    def find(t: int) -> int:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    def members(root: int) -> list[int]:
        return [t for t in sizes if find(t) == root]

    def home(root: int) -> str:
        if io_in_arena:
            return "arena"
        ms = members(root)
        return "input" if model_input in ms else ("output" if model_output in ms else "arena")

    aliased = 0
    for i, s in enumerate(steps):
        if s.alias_of is not None and s.alias_of in sizes:
            a, b = find(s.alias_of), find(s.write)
            if {home(a), home(b)} != {"input", "output"}:
                parent[b] = a
                aliased += 1
                continue
        for cand in s.inplace:
            if cand not in sizes:
                continue
            g = find(cand)
            if home(g) == "input" or sizes[cand] != sizes[s.write]:
                continue
            if max(last[t] for t in members(g)) != i:
                continue  # someone reads the input after this op
            if home(g) == "output" and home(find(s.write)) == "output":
                continue
            parent[find(s.write)] = g
            aliased += 1
            break

    groups: dict[int, list[int]] = {}
    for t in sorted(sizes):
        groups.setdefault(find(t), []).append(t)
    buffers = []
    for root in sorted(groups):
        ts = groups[root]
        buffers.append(
            Buffer(tuple(ts), max(sizes[t] for t in ts), min(first[t] for t in ts), max(last[t] for t in ts), home(root))
        )
    arena_ids = [k for k, b in enumerate(buffers) if b.home == "arena"]
    buffer_of = {t: k for k, b in enumerate(buffers) for t in b.tensors}
    pairs: dict[tuple[int, int], int] = {}  # (output buffer, input buffer) -> D
    for i, s in enumerate(steps):
        if s.overlap is None or s.overlap[0] not in sizes:
            continue
        bo, bi = buffer_of[s.write], buffer_of[s.overlap[0]]
        if bo != bi and buffers[bi].last == i and buffers[bo].first == i and buffers[bo].home == buffers[bi].home == "arena":
            pairs[(bo, bi)] = s.overlap[1]

    lower = 0
    for i in range(n):
        lower = max(lower, sum(buffers[k].size for k in arena_ids if buffers[k].first <= i <= buffers[k].last))

    best: dict[int, int] | None = None
    best_size = -1
    orders = [
        sorted(arena_ids, key=lambda k: (-buffers[k].size, buffers[k].first, k)),
        sorted(arena_ids, key=lambda k: (-buffers[k].size, -buffers[k].first, k)),
        sorted(arena_ids, key=lambda k: (-buffers[k].first, k)),
        sorted(arena_ids, key=lambda k: (-(buffers[k].last - buffers[k].first), -buffers[k].size, k)),
        sorted(arena_ids, key=lambda k: (buffers[k].first, -buffers[k].size, k)),
        sorted(arena_ids, key=lambda k: (-buffers[k].size * (buffers[k].last - buffers[k].first + 1), k)),
    ]
    for order in orders:
        offsets = _greedy(buffers, order, pairs)
        size = max((offsets[k] + buffers[k].size for k in arena_ids), default=0)
        if best is None or size < best_size:
            best, best_size = offsets, size
    assert best is not None
    placed = tuple(
        Buffer(b.tensors, b.size, b.first, b.last, b.home, best.get(k, 0)) for k, b in enumerate(buffers)
    )
    tensor_buffer = {t: k for k, b in enumerate(placed) for t in b.tensors}
    unshared = sum(_align(sizes[t]) for t in sizes if io_in_arena or t not in (model_input, model_output))
    overlapped = sum(1 for (bo, bi), d in pairs.items() if _overlaps(best, buffers, bo, bi))
    return MemoryPlan(placed, _align(best_size), lower, unshared, aliased, overlapped_steps=overlapped, tensor_buffer=tensor_buffer)


def _overlaps(offsets: dict[int, int], buffers: list[Buffer], a: int, b: int) -> bool:
    return offsets[a] < offsets[b] + buffers[b].size and offsets[b] < offsets[a] + buffers[a].size


def _greedy(buffers: list[Buffer], order: list[int], pairs: dict[tuple[int, int], int]) -> dict[int, int]:
    """Place each buffer at the lowest offset that clashes with no placed buffer alive at the same time."""
    offsets: dict[int, int] = {}
    for k in order:
        b = buffers[k]
        live = [j for j in offsets if not (buffers[j].last < b.first or b.last < buffers[j].first)]
        cands = {0}
        for j in live:
            cands.add(_align(offsets[j] + buffers[j].size))
            if (j, k) in pairs:  # k is the input: it may start D after the output j
                cands.add(_align(offsets[j] + pairs[(j, k)]))
            if (k, j) in pairs and offsets[j] - pairs[(k, j)] >= 0:  # k is the output
                cands.add((offsets[j] - pairs[(k, j)]) // ALIGN * ALIGN)
        for off in sorted(cands):
            if all(_fits(off, b.size, offsets[j], buffers[j].size, pairs.get((k, j)), pairs.get((j, k))) for j in live):
                offsets[k] = off
                break
    return offsets


def _fits(off: int, size: int, other: int, other_size: int, d_as_output: int | None, d_as_input: int | None) -> bool:
    if off + size <= other or other + other_size <= off:
        return True
    if d_as_output is not None:  # we write over the dying input `other`, starting D before it
        return other - off >= d_as_output
    if d_as_input is not None:  # `other` is the output that overlaps us
        return off - other >= d_as_input
    return False
