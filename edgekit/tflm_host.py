"""The TFLM interpreter on the build host (``tflite-micro`` package, reference kernels).

- :func:`run_tflm` runs a model sample by sample (runtime label ``tflm-host``).
- :func:`measure_arena` reads the arena TFLM actually allocates
  (``RecordingMicroAllocator``'s "Arena allocation total") and searches for the
  smallest arena with which the model still allocates and runs. Both happen in
  child processes: ``print_allocations()`` writes to C-level stderr, and a
  too-small arena may crash the process instead of raising.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import UnsupportedOpError, VerificationError

RUNTIME_LABEL = "tflm-host"
# Arena TFLM's allocator needs is always above this many bytes per model byte: used
# only to pick the generous arena run_tflm gives the host interpreter.
_HOST_ARENA_MIN = 1 << 20


@dataclass(frozen=True)
class ArenaMeasurement:
    """Arena bytes TFLM allocated for the model (``used_bytes``) and the smallest arena that works."""

    used_bytes: int
    min_bytes: int
    runtime: str = RUNTIME_LABEL
    probes: int = 0
    head_bytes: int | None = None  # non-persistent (planned, reused) tensor memory
    tail_bytes: int | None = None  # persistent memory: kernel data, tensor structs, node/registration table

    def to_dict(self) -> dict:
        """Plain data for reports."""
        return asdict(self)


def _host_arena(tflite: bytes) -> int:
    from edgekit.tflite_model import read_model

    info = read_model(tflite)
    return max(_HOST_ARENA_MIN, 2 * info.activation_bytes + 65536)


def _interpreter(tflite: bytes, arena: int):
    from tflite_micro import runtime

    try:
        return runtime.Interpreter.from_bytes(bytes(tflite), arena_size=arena)
    except RuntimeError as exc:
        raise UnsupportedOpError(f"the TFLM interpreter could not load the model ({exc})",
                                 "run `edgekit inspect MODEL.tflite` to see which ops TFLM lacks") from None


def run_tflm(tflite: bytes, x: np.ndarray, calls_per_sequence: int | None = None) -> np.ndarray:
    """Raw outputs of the TFLM interpreter for a one-output model; see :func:`run_tflm_io`."""
    outs = run_tflm_io(tflite, (x,), calls_per_sequence)
    if len(outs) != 1:
        raise VerificationError(f"run_tflm: the model has {len(outs)} outputs; use run_tflm_io")
    return outs[0]


def run_tflm_io(tflite: bytes, xs: tuple[np.ndarray, ...], calls_per_sequence: int | None = None) -> tuple[np.ndarray, ...]:
    """Raw outputs of the TFLM interpreter, one array per model output, for ``xs`` (one array per input).

    Each array of ``xs`` has one row per invoke, in that input's dtype.

    Each row of ``x`` holds one whole input tensor in any shape of the same size
    (``[N, *input shape without batch]`` for the usual batch-1 model, or flat
    bytes). Each row is one ``invoke()``. The interpreter is reset (its variable
    tensors and resource variables back to their initial values) between rows, so
    stateful models start fresh, or with ``calls_per_sequence=T`` only every T
    rows: rows ``k*T .. k*T+T-1`` are one sequence of calls whose state carries
    from call to call. Returns ``[N, *output shape]`` in the output dtype,
    without the batch axis when the model's batch is 1.
    """
    from edgekit.tflite_model import read_model

    info = read_model(tflite)
    ip = _interpreter(tflite, _host_arena(tflite))
    if len(xs) != len(info.inputs):
        raise VerificationError(f"run_tflm: the model has {len(info.inputs)} inputs, {len(xs)} arrays given")
    ins = [ip.get_input_details(i) for i in range(len(xs))]
    outs = [ip.get_output_details(j) for j in range(len(info.outputs))]
    row_shapes = []
    for out in outs:
        shape = tuple(int(d) for d in out["shape"])
        row_shapes.append(shape[1:] if shape and shape[0] == 1 else shape)
    xs = tuple(np.asarray(x) for x in xs)
    for x, inp in zip(xs, ins):
        if x.dtype != np.dtype(inp["dtype"]):
            raise VerificationError(f"run_tflm: input dtype {x.dtype} differs from the model's {np.dtype(inp['dtype'])}",
                                    "quantize the inputs first (edgekit.verify.inputs.quantize)")
    n_rows = len(xs[0])
    if calls_per_sequence is not None and (calls_per_sequence < 1 or n_rows % calls_per_sequence):
        raise VerificationError(f"run_tflm: {n_rows} rows are not whole sequences of {calls_per_sequence} calls")
    every = calls_per_sequence or 1
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for n in range(n_rows):
        for i, (x, inp) in enumerate(zip(xs, ins)):
            ip.set_input(x[n].reshape(tuple(int(d) for d in inp["shape"])), i)
        ip.invoke()
        for j, r in enumerate(results):
            r.append(np.array(ip.get_output(j)).reshape(row_shapes[j]))
        if (n + 1) % every == 0:
            ip.reset()
    return tuple(np.stack(r) if r else np.zeros((0, *shape), dtype=np.dtype(out["dtype"]))
                 for r, shape, out in zip(results, row_shapes, outs))


# The probe runs in a child: it loads the model with each arena size given on the
# command line (mode "fit": AllocateTensors only, where TFLM plans all its memory;
# "run" and "alloc" also invoke once; "alloc" then reports print_allocations()),
# and prints one JSON line per size as it goes, so a crash at one size still
# leaves the answers before it.
_PROBE = r"""
import json, os, sys
import numpy as np
from tflite_micro import runtime
buf = open(sys.argv[1], "rb").read()
mode = sys.argv[2]
for size in map(int, sys.argv[3:]):
    print(json.dumps({"size": size, "started": True}), flush=True)
    try:
        ip = runtime.Interpreter.from_bytes(buf, arena_size=size)
        if mode == "fit":
            raise StopIteration
        for i in range(64):
            try:
                d = ip.get_input_details(i)
            except Exception:
                break
            ip.set_input(np.zeros(d["shape"], d["dtype"]), i)
        ip.invoke()
        ok = True
    except StopIteration:
        ok = True
    except Exception as exc:
        ok = False
    if ok and mode == "alloc":
        sys.stderr.flush()
        r, w = os.pipe()
        saved = os.dup(2)
        os.dup2(w, 2)
        ip.print_allocations()
        os.dup2(saved, 2)
        os.close(w)
        text = os.read(r, 1 << 20).decode("utf-8", "replace")
        print(json.dumps({"size": size, "ok": ok, "alloc": text}), flush=True)
    else:
        print(json.dumps({"size": size, "ok": ok}), flush=True)
"""


def _probe(path: Path, sizes: list[int], mode: str = "fit") -> dict[int, dict]:
    """Try each arena size in one child process; a size that crashes the child counts as failing."""
    results: dict[int, dict] = {}
    pending = list(sizes)
    while pending:
        proc = subprocess.run([sys.executable, "-c", _PROBE, str(path), mode, *map(str, pending)],
                              capture_output=True, text=True, timeout=300)
        started = None
        for line in proc.stdout.splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("started"):
                started = rec["size"]
            else:
                results[rec["size"]] = rec
                started = None
        if started is not None and started not in results:  # the child died on this size
            results[started] = {"size": started, "ok": False, "crashed": proc.returncode}
        elif not any(s in results for s in pending):
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise VerificationError(f"the TFLM arena probe failed before trying any size: {last}")
        pending = [s for s in pending if s not in results]
    return results


def _allocations(alloc_text: str) -> dict[str, int]:
    """``total``/``head``/``tail`` bytes from RecordingMicroAllocator's printout."""
    found = dict(re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", alloc_text))
    if "total" not in found:
        raise VerificationError("TFLM's print_allocations() did not report the arena total",
                                "the tflite-micro package may have changed its output; see edgekit env")
    return {k: int(v) for k, v in found.items()}


def measure_arena(tflite: bytes) -> ArenaMeasurement:
    """Measure the arena TFLM uses for ``tflite`` and the smallest arena that still works.

    The used figure comes from TFLM's RecordingMicroAllocator with a generous
    arena. The minimum is searched on multiples of 16 bytes (TFLM's arena
    alignment) between half the used size and a size that works, seven sizes
    per child process, each child only allocating; the minimum found is then
    confirmed with one inference (and walked up if that fails).
    """
    with tempfile.TemporaryDirectory(prefix="edgekit-arena-") as d:
        path = Path(d) / "model.tflite"
        path.write_bytes(bytes(tflite))
        big = _host_arena(tflite)
        first = _probe(path, [big], mode="alloc")[big]
        if not first.get("ok"):
            raise UnsupportedOpError("the TFLM interpreter could not allocate or run the model with a "
                                     f"{big:,}-byte arena", "run `edgekit inspect MODEL.tflite` to see what TFLM lacks")
        alloc = _allocations(first["alloc"])
        used = alloc["total"]
        probes = 1
        lo = max(16, used // 2 // 16 * 16)
        hi = (used + 15) // 16 * 16
        # the minimum is usually at or just below the reported figure: try there first
        near = [lo, *(p for p in (hi - 4096, hi - 512, hi - 64, hi - 16) if p > lo), hi, hi + 64, hi + 1024]
        res = _probe(path, near)
        probes += len(near)
        working = [p for p in near if res[p]["ok"]]
        if not working:  # needs more than it reports (host buffer alignment): walk up
            hi = 2 * hi
            while not _probe(path, [hi])[hi]["ok"]:
                probes += 1
                hi *= 2
        else:
            hi = min(working)
        lo = max([p for p in near if not res[p]["ok"] and p < hi], default=0)
        while hi - lo > 16:  # invariant: lo fails (or is 0), hi works
            step = max(16, (hi - lo) // 8 // 16 * 16)
            points = sorted({p for p in range(lo + step, hi, step)})[:7]
            res = _probe(path, points)
            probes += len(points)
            ok = [p for p in points if res[p]["ok"]]
            hi = min(ok, default=hi)
            lo = max([p for p in points if not res[p]["ok"] and p < hi], default=lo)
        while not _probe(path, [hi], mode="run")[hi]["ok"]:
            probes += 1
            hi += 16
        return ArenaMeasurement(used_bytes=used, min_bytes=hi, probes=probes + 1,
                                head_bytes=alloc.get("head"), tail_bytes=alloc.get("tail"))
