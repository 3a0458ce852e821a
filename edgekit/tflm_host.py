"""The TFLM interpreter on the build host (``tflite-micro`` package, reference kernels).

- :func:`run_tflm` runs a model sample by sample (runtime label ``tflm-host``).
- :func:`measure_arena` reads the arena TFLM actually allocates
  (``RecordingMicroAllocator``'s "Arena allocation total") and searches for the
  smallest arena with which the model still allocates and runs. The probes run
  in a child process (``print_allocations()`` writes to C-level stderr, and a
  too-small arena may crash the process instead of raising): one server per
  thread that imports tflite_micro once and forks for each probe, killed when
  a probe hangs, and dying with edgekit.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
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
    return _host_arena_of(bytes(tflite))


@lru_cache(maxsize=4)  # measure_arena and run_tflm of one model parse it once
def _host_arena_of(tflite: bytes) -> int:
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


# The arena probe server: a child that imports tflite_micro once and answers one JSON line per request on
# its own copy of stdout (fd 1 itself goes to stderr, so nothing the native code prints can break the
# protocol). {"load": PATH} reads a model; {"size": N, "mode": M} loads it with an N-byte arena (mode "fit":
# AllocateTensors only, where TFLM plans all its memory; "run" and "alloc" also invoke once; "alloc" then
# reports print_allocations()). Each probe runs in a fork of the server, so a size that crashes TFLM
# (reported as failing, with the signal) leaves the server and its imports intact and no state behind.
_SERVER = r"""
import ctypes, json, os, select, sys, tempfile
proto = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
try:
    import numpy as np
    from tflite_micro import runtime
except Exception as exc:
    proto.write(json.dumps({"ready": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
    sys.exit(1)

def probe(buf, size, mode):
    try:
        ip = runtime.Interpreter.from_bytes(buf, arena_size=size)
        if mode != "fit":
            for i in range(64):
                try:
                    d = ip.get_input_details(i)
                except Exception:
                    break
                ip.set_input(np.zeros(d["shape"], d["dtype"]), i)
            ip.invoke()
    except Exception:
        return {"size": size, "ok": False}
    rec = {"size": size, "ok": True}
    if mode == "alloc":
        sys.stderr.flush()
        with tempfile.TemporaryFile() as f:
            os.dup2(f.fileno(), 2)
            ip.print_allocations()
            f.seek(0)
            rec["alloc"] = f.read().decode("utf-8", "replace")
    return rec

def infer(src, dst):
    from edgekit.tflm_host import run_tflm_io
    try:
        with np.load(src, allow_pickle=False) as f:
            xs = tuple(f[f"x{i}"] for i in range(len(f.files)))
        np.savez(dst, **{f"y{j}": y for j, y in enumerate(run_tflm_io(buf, xs))})
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error_type": type(exc).__name__, "error": getattr(exc, "message", str(exc)),
                "hint": getattr(exc, "hint", None)}

proto.write(json.dumps({"ready": True}) + "\n")
buf = None
for line in sys.stdin:
    req = json.loads(line)
    if "load" in req:
        buf = open(req["load"], "rb").read()
        proto.write(json.dumps({"loaded": True}) + "\n")
        continue
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL: die with the server
        except Exception:
            pass
        if "infer" in req:
            answer = infer(req["infer"], req["out"])
        else:
            answer = probe(buf, req["size"], req["mode"])
        with os.fdopen(w, "w") as out:
            out.write(json.dumps(answer))
        os._exit(0)
    os.close(w)
    answer, cpu, limit = b"", 0.0, req["cpu_limit"]
    while True:  # read the fork's answer; kill it once it has spent the request's CPU budget
        if select.select([r], [], [], 0.05)[0]:
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            answer += chunk
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                cpu = sum(int(v) for v in f.read().rsplit(")", 1)[1].split()[11:13]) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
        if cpu > limit:
            os.kill(pid, 9)
            answer = json.dumps({"size": req.get("size"), "ok": False, "hung": round(cpu, 1)}).encode()
            break
    os.close(r)
    answer = answer.decode()
    _, status = os.waitpid(pid, 0)
    if not answer:
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        answer = json.dumps({"size": req.get("size"), "ok": False, "crashed": code})
    proto.write(answer + "\n")
"""
# CPU seconds one probe (load, allocate, one invoke) or one inference may spend before the model counts as
# hanging TFLM (the largest MLPerf Tiny model takes 0.1 s); wall-clock seconds the server may stay silent.
PROBE_CPU_S = 5.0
PROBE_TIMEOUT_S = 120.0
_START_TIMEOUT_S = 300.0  # importing tflite_micro on a loaded machine


class _ProbeServer:
    """One arena probe server child, with the model it has loaded."""

    def __init__(self) -> None:
        from edgekit.child_process import child_env, die_with_parent

        self.proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, preexec_fn=die_with_parent, env=child_env())
        self.model: Path | None = None
        self._pending = b""  # read from the pipe, not yet a whole line
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        msg = self._read(_START_TIMEOUT_S)
        if not msg or not msg.get("ready"):
            self.close()
            why = (msg or {}).get("error", "it exited" if self.proc.returncode is not None else "it did not answer")
            raise VerificationError(f"the TFLM arena probe could not start: {why}",
                                    "check the tflite-micro package with `edgekit env`")

    def ask(self, request: dict, timeout: float) -> dict | None:
        """The answer to ``request``, or None when the server died on it; raises TimeoutError when it hangs."""
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        msg = self._read(timeout)
        if msg is None and self.proc.poll() is None:
            raise TimeoutError
        return msg

    def _read(self, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sel.select(left):
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self.proc.wait()
                return None
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> int:
        """Stop the server (kill it: it holds no state worth saving) and return its exit status."""
        if self.proc.poll() is None:
            self.proc.kill()
        self._sel.close()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        return self.proc.wait()


# One server per thread: the kernel kills a child when the thread that started it exits (die_with_parent).
_servers = threading.local()
_all_servers: list[_ProbeServer] = []


def _server() -> _ProbeServer:
    srv = getattr(_servers, "srv", None)
    if srv is None or srv.proc.poll() is not None:
        _all_servers[:] = [s for s in _all_servers if s.proc.poll() is None]  # poll() reaps the dead (exited threads')
        srv = _servers.srv = _ProbeServer()
        _all_servers.append(srv)
    return srv


def _drop_server() -> int | None:
    srv = getattr(_servers, "srv", None)
    _servers.srv = None
    if srv is None:
        return None
    if srv in _all_servers:
        _all_servers.remove(srv)
    return srv.close()


@atexit.register
def _close_servers() -> None:
    for srv in list(_all_servers):
        srv.close()
    _all_servers.clear()


def _ask(path: Path, request: dict, what: str) -> dict | None:
    """The server's answer to ``request`` about the model at ``path``; None when the server died (drop it)."""
    srv = _server()
    try:
        if srv.model != path:
            srv.model = None
            if srv.ask({"load": str(path)}, PROBE_TIMEOUT_S) is None:
                return None
            srv.model = path
        return srv.ask(request, PROBE_TIMEOUT_S)
    except TimeoutError:
        _drop_server()
        raise VerificationError(f"the TFLM interpreter did not finish {what} within {PROBE_TIMEOUT_S:.0f} s "
                                "(the model hangs it)", "run `edgekit inspect MODEL.tflite` and check the model's shapes") from None


def _probe_one(path: Path, size: int, mode: str) -> dict:
    what = f"with a {size:,}-byte arena"
    answer = _ask(path, {"size": size, "mode": mode, "cpu_limit": PROBE_CPU_S}, what)
    if answer is None:  # the server died on this size
        return {"size": size, "ok": False, "crashed": _drop_server()}
    _raise_if_hung(answer, what)
    return answer


def _raise_if_hung(answer: dict, what: str) -> None:
    if "hung" in answer:
        raise VerificationError(f"the TFLM interpreter did not finish {what} within {answer['hung']:g} s of CPU "
                                "(the model hangs it)", "run `edgekit inspect MODEL.tflite` and check the model's shapes")


def run_tflm_contained(tflite: bytes, xs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """:func:`run_tflm_io` in a fork of the probe server: a model that crashes TFLM is a VerificationError, not a crash.

    For callers in edgekit's own process (emit's expected output); the verifier's legs already run in a child.
    """
    import signal

    with tempfile.TemporaryDirectory(prefix="edgekit-tflm-") as d:
        path, src, dst = Path(d) / "model.tflite", Path(d) / "x.npz", Path(d) / "y.npz"
        path.write_bytes(bytes(tflite))
        np.savez(src, **{f"x{i}": np.asarray(x) for i, x in enumerate(xs)})
        rows = len(xs[0]) if xs else 0
        what = f"running {rows} input(s)"
        answer = _ask(path, {"infer": str(src), "out": str(dst), "cpu_limit": PROBE_CPU_S * max(1, rows)}, what)
        if answer is not None:
            _raise_if_hung(answer, what)
        if answer is None or "crashed" in answer:
            code = _drop_server() if answer is None else answer["crashed"]
            why = signal.Signals(-code).name if isinstance(code, int) and code < 0 else f"exit status {code}"
            raise VerificationError(f"the TFLM interpreter crashed ({why}) running the model, in its child process",
                                    "run `edgekit inspect MODEL.tflite` and check the model's shapes")
        if not answer["ok"]:
            kind = {"UnsupportedOpError": UnsupportedOpError}.get(answer["error_type"], VerificationError)
            message = answer["error"] if answer["error_type"] in ("UnsupportedOpError", "VerificationError") \
                else f"the TFLM interpreter failed: {answer['error_type']}: {answer['error'][:200]}"
            raise kind(message, answer.get("hint"))
        with np.load(dst, allow_pickle=False) as f:
            return tuple(f[f"y{j}"] for j in range(len(f.files)))


def _probe(path: Path, sizes: list[int], mode: str = "fit") -> dict[int, dict]:
    """Try each arena size in the probe server child; a size that crashes it counts as failing."""
    return {size: _probe_one(path, size, mode) for size in sizes}


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
    arena. The minimum is the smallest multiple of 16 bytes (TFLM's arena
    alignment) with which the model allocates: usually the used figure rounded
    up, confirmed by that size allocating and 16 bytes less not; otherwise
    searched between half the used size and a size that works. The minimum is
    then confirmed with one inference (and searched upwards if that fails). All probes
    run in the probe server child, reused across probes and models.
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
        hi = (used + 15) // 16 * 16
        quick = [hi, hi - 16] if hi > 16 else [hi]
        res = _probe(path, quick)
        probes = 1 + len(quick)
        if res[hi]["ok"] and (hi <= 16 or not res[hi - 16]["ok"]):
            minimum = hi
        else:
            minimum, more = _search_minimum(path, used)
            probes += more
        minimum, more = _confirm_with_inference(path, minimum, big)  # "alloc" ran the model once with `big`
        probes += more
        return ArenaMeasurement(used_bytes=used, min_bytes=minimum, probes=probes,
                                head_bytes=alloc.get("head"), tail_bytes=alloc.get("tail"))


def _search_minimum(path: Path, used: int) -> tuple[int, int]:
    """(smallest multiple of 16 that allocates, probes spent) when it is not the used figure rounded up."""
    lo = max(16, used // 2 // 16 * 16)
    hi = (used + 15) // 16 * 16
    near = [lo, *(p for p in (hi - 4096, hi - 512, hi - 64, hi - 16) if p > lo), hi, hi + 64, hi + 1024]
    res = _probe(path, near)
    probes = len(near)
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
    return hi, probes


def _confirm_with_inference(path: Path, minimum: int, ran: int) -> tuple[int, int]:
    """(smallest multiple of 16 from ``minimum`` up with which the model also runs once, probes spent).

    Usually ``minimum`` itself. Otherwise the step up doubles until a size runs, then
    halves back to 16 bytes (a fuzzed vww needed 1,073 steps of 16 bytes: 194 s). ``ran``
    is an arena the model already ran with: the search never goes past it (a fuzzed model
    whose reads out of bounds crash TFLM at random sizes doubled the step without end).
    """
    def runs(size: int) -> bool:
        return bool(_probe(path, [size], mode="run")[size]["ok"])

    if minimum >= ran:
        return minimum, 0
    if runs(minimum):
        return minimum, 1
    probes, lo, step = 1, minimum, 16  # invariant: lo fails
    while lo + step < ran and not runs(lo + step):
        probes += 1
        lo, step = lo + step, step * 2
    hi = min(lo + step, ran)  # runs
    probes += 1
    while hi - lo > 16:
        mid = lo + (hi - lo) // 2 // 16 * 16
        probes += 1
        lo, hi = (lo, mid) if runs(mid) else (mid, hi)
    return hi, probes
