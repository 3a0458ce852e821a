"""The long fuzz tier: mutated models through edgekit's entry points, in worker processes, with a JSON summary.

Tiers (``--tier``):

- ``inprocess``: the verifier, ``inspect`` and ``codegen`` (and ``emit`` with
  ``--emit``) on seeded mutations (tests/fuzz/fuzz_mutator.py) of every
  ``.tflite`` under ../shared/models. Cases run in worker processes so that a
  native crash (the worker dies on a signal) or a hang (no answer within
  ``--timeout`` seconds) is counted and the worker replaced, not lost.
- ``asan``: every mutated model ``codegen`` accepts is compiled with
  ``-fsanitize=address,undefined`` on the host and run on two seeded inputs;
  any report, non-zero exit or hang is counted.
- ``cli``: ``python -m edgekit build MUTATED.tflite --target cortex-m4`` as a
  user runs it: exit code must be 0 or a documented code, stderr one line, no
  output folder left on failure.

    python bench/fuzz.py --tier inprocess --cases 100000 --json bench/results/fuzz.json
    python bench/fuzz.py --tier asan --cases 1000 --json bench/results/fuzz.json
    python bench/fuzz.py --tier cli --cases 1000 --json bench/results/fuzz.json

Each tier updates its own key of the JSON file (so the tiers can run
separately) with: cases, outcomes per entry point (ok, clean error,
traceback, crash, hang), cases per second, the machine, and the first few
failures with their seeds (replay: ``mutate(model, seed)``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "fuzz.json"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "fuzz"))

from fuzz_mutator import model_files, mutate  # noqa: E402

DOCUMENTED_EXITS = {0, 2, 3, 4, 5, 6, 7}
WALL_LIMIT = 60  # a case hangs after this many times --timeout of wall time, whatever its CPU time


def _shared() -> Path:
    return Path(os.environ.get("EDGEKIT_SHARED_MODELS", REPO.parent / "shared" / "models"))


def _models() -> list[tuple[str, bytes]]:
    return [(str(p.relative_to(_shared())), p.read_bytes()) for p in model_files(_shared())]


def _case(models: list[tuple[str, bytes]], seed: int) -> tuple[str, bytes, str]:
    name, buf = models[seed % len(models)]
    mutated, kind = mutate(buf, seed)
    return name, mutated, kind


def worker(entries: list[str]) -> None:
    """Read seeds on stdin, answer one JSON line per (seed, entry) on stdout."""
    import edgekit.aot.codegen  # noqa: F401 - imported before "ready", so no case pays for it
    import edgekit.tflite_model  # noqa: F401
    from fuzz_harness import run_case

    if "emit" in entries:
        import edgekit.cli.emit_cmd  # noqa: F401
        import edgekit.emit_tflm  # noqa: F401
        import edgekit.tflm_host  # noqa: F401
    models = _models()
    work = Path(tempfile.mkdtemp(prefix="edgekit-fuzz-"))
    print(json.dumps({"state": "ready"}), flush=True)
    for line in sys.stdin:
        seed = int(line)
        _, buf, _ = _case(models, seed)
        for entry in entries:
            print(json.dumps({"seed": seed, "entry": entry, "state": "start"}), flush=True)
            outcome, detail = run_case(buf, entry, work)
            print(json.dumps({"seed": seed, "entry": entry, "state": "done", "outcome": outcome, "detail": detail}), flush=True)


class _Worker:
    """A worker process answering one JSON line per (seed, entry); replaced when it crashes or hangs."""

    def __init__(self, entries: list[str]):
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", ",".join(entries)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.pending = b""  # bytes read from the pipe, not yet a whole line (select sees only the OS pipe)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = self.read(300)  # imports take seconds on a loaded machine: not part of any case
        if ready is None or ready.get("state") != "ready":
            raise RuntimeError("fuzz worker did not start")

    def send(self, seed: int) -> None:
        self.proc.stdin.write(f"{seed}\n")
        self.proc.stdin.flush()

    def read(self, timeout: float) -> dict | None:
        """The next message, or None when the worker died or said nothing for ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def cpu_seconds(self) -> float:
        """CPU seconds of the worker and all its descendants (probe server, its forks), live or reaped; Linux /proc."""
        def tree(pid: int) -> int:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ticks = sum(int(v) for v in f.read().rsplit(")", 1)[1].split()[11:15])  # utime stime cutime cstime
                kids = []
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        kids += [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                return 0
            return ticks + sum(tree(k) for k in kids)
        return tree(self.proc.pid) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()


def tier_inprocess(cases: int, start: int, entries: list[str], timeout: float) -> dict:
    """Run ``cases`` seeds from ``start`` through ``entries`` in a worker process; count crashes and hangs too.

    A hang is an entry point that spends over ``timeout`` seconds of CPU (worker and descendants) on one case,
    or over ``WALL_LIMIT`` times that in wall-clock time: on a shared machine, a niced worker waiting for a
    core is not hung.
    """
    models = _models()
    counts: dict[str, collections.Counter] = {e: collections.Counter() for e in entries}
    failures: list[dict] = []
    t0 = time.time()
    w = _Worker(entries)
    for seed in range(start, start + cases):
        w.send(seed)
        done = 0
        current = None
        while done < len(entries):
            cpu0, wall0 = w.cpu_seconds(), time.monotonic()
            msg = w.read(timeout)
            while (msg is None and w.proc.poll() is None and w.cpu_seconds() - cpu0 < timeout
                   and time.monotonic() - wall0 < WALL_LIMIT * timeout):
                msg = w.read(timeout)  # waiting for a core, not hung
            if msg is None:  # the case in flight crashed the worker or hung
                alive = w.proc.poll() is None
                used = (f"{w.cpu_seconds() - cpu0:.1f} s CPU, " if alive else "") + f"{time.monotonic() - wall0:.0f} s wall"
                rc = w.stop()
                entry = current or entries[done]
                outcome = "hang" if alive else "crash"
                counts[entry][outcome] += 1
                failure = {"seed": seed, "entry": entry, "outcome": outcome, "detail": f"worker exit status {rc} after {used}",
                           "model": _case(models, seed)[0], "mutation": _case(models, seed)[2]}
                print("FAILURE", json.dumps(failure), file=sys.stderr, flush=True)  # now, not only in the summary
                if len(failures) < 50:
                    failures.append(failure)
                for e in entries[entries.index(entry) + 1:]:
                    counts[e]["not_run_after_crash"] += 1
                w = _Worker(entries)
                break
            if msg["state"] == "start":
                current = msg["entry"]
                continue
            counts[msg["entry"]][msg["outcome"]] += 1
            if msg["outcome"] == "traceback":
                failure = {**msg, "model": _case(models, seed)[0], "mutation": _case(models, seed)[2]}
                print("FAILURE", json.dumps(failure), file=sys.stderr, flush=True)
                if len(failures) < 50:
                    failures.append(failure)
            done += 1
            current = None
    w.stop()
    secs = time.time() - t0
    return {"cases": cases, "first_seed": start, "entry_points": entries, "seconds": round(secs, 1),
            "cases_per_second": round(cases / secs, 2), "timeout_seconds": timeout,
            "hang_rule": f"over {timeout:g} s of CPU (worker and descendants) or {WALL_LIMIT * timeout:g} s of wall time on one case",
            "outcomes": {e: dict(sorted(c.items())) for e, c in counts.items()}, "failures": failures}


def tier_asan(cases: int, start: int, timeout: float) -> dict:
    """Compile the C ``codegen`` writes for every accepted mutated model under ASan/UBSan and run it."""
    import numpy as np

    from edgekit.aot.codegen import generate
    from edgekit.aot.hostcheck import compile_host
    from edgekit.errors import EdgekitError

    models = _models()
    counts: collections.Counter = collections.Counter()
    failures = []
    t0 = time.time()
    for seed in range(start, start + cases):
        name, buf, kind = _case(models, seed)
        d = Path(tempfile.mkdtemp(prefix="edgekit-asan-"))
        try:
            try:
                res = generate(buf, d / "c")
            except EdgekitError:
                counts["refused_by_codegen"] += 1
                continue
            exe = compile_host(d / "c", d / "exe", sanitize=True)
            rng = np.random.default_rng(seed)
            if res.input_is_float:
                x = rng.uniform(-4, 4, size=res.input_bytes // 4).astype(np.float32)
            else:
                x = rng.integers(-128, 128, size=res.input_bytes).astype(np.int8)
            np.concatenate([x, x[::-1]]).tofile(d / "in.bin")
            try:
                r = subprocess.run([str(exe), str(d / "in.bin"), str(d / "out.bin")], capture_output=True, text=True, timeout=timeout)
                outcome = "clean_run" if r.returncode == 0 else "sanitizer_report"
                detail = "" if r.returncode == 0 else next((ln for ln in r.stderr.splitlines() if "runtime error" in ln or "ERROR:" in ln), f"exit {r.returncode}")
            except subprocess.TimeoutExpired:
                outcome, detail = "hang", f"over {timeout} s"
            counts[outcome] += 1
            if outcome != "clean_run" and len(failures) < 50:
                failures.append({"seed": seed, "model": name, "mutation": kind, "outcome": outcome, "detail": detail[:300]})
        finally:
            shutil.rmtree(d, ignore_errors=True)
    secs = time.time() - t0
    return {"cases": cases, "first_seed": start, "seconds": round(secs, 1), "accepted_and_compiled": cases - counts["refused_by_codegen"],
            "compiler_flags": "gcc -std=c99 -O2 -fsanitize=address,undefined -fno-sanitize-recover=all",
            "outcomes": dict(sorted(counts.items())), "failures": failures}


def tier_cli(cases: int, start: int, timeout: float) -> dict:
    """``edgekit build`` on mutated models through the CLI, as a user runs it."""
    models = _models()
    counts: collections.Counter = collections.Counter()
    failures = []
    t0 = time.time()
    for seed in range(start, start + cases):
        name, buf, kind = _case(models, seed)
        d = Path(tempfile.mkdtemp(prefix="edgekit-cli-"))
        try:
            (d / "m.tflite").write_bytes(buf)
            cmd = [sys.executable, "-m", "edgekit", "build", "m.tflite", "--target", "cortex-m4", "--out", "out", "--json"]
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            try:
                r = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=timeout, env=env)
                rc, err = r.returncode, r.stderr.strip().splitlines()
            except subprocess.TimeoutExpired:
                rc, err = None, ["timeout"]
            problems = []
            if rc is None:
                problems.append("hang")
            elif rc < 0:
                problems.append(f"killed by signal {-rc}")
            elif rc not in DOCUMENTED_EXITS:
                problems.append(f"exit {rc}")
            # exit 3 (over budget) and 6 (verification failed) write their report by design: a whole build folder
            if (d / "out").exists() and (rc not in (0, 3, 6) or not (d / "out" / "report.json").is_file()):
                problems.append("output folder left after a failure")
            if rc not in (0, None) and len([ln for ln in err if ln.startswith("edgekit:")]) != 1:
                problems.append(f"{len(err)} stderr lines")
            leftovers = [p.name for p in d.iterdir() if p.name.startswith(".")]
            if leftovers:
                problems.append(f"leftover {leftovers}")
            counts[f"exit_{rc}"] += 1
            counts["bad" if problems else "good"] += 1
            if problems and len(failures) < 50:
                failures.append({"seed": seed, "model": name, "mutation": kind, "exit": rc, "problems": problems,
                                 "stderr": err[-1][:300] if err else ""})
        finally:
            shutil.rmtree(d, ignore_errors=True)
    secs = time.time() - t0
    return {"cases": cases, "first_seed": start, "seconds": round(secs, 1), "cases_per_second": round(cases / secs, 3),
            "target": "cortex-m4", "outcomes": dict(sorted(counts.items())), "failures": failures}


def merge(parts: list[Path], out: Path) -> None:
    """Add up the outcomes, cases and seconds of each tier over ``parts`` and update ``out`` with them."""
    data = json.loads(out.read_text()) if out.is_file() else {}
    runs: dict[str, list[dict]] = collections.defaultdict(list)
    for p in parts:
        for tier, res in json.loads(p.read_text()).items():
            runs[tier].append(res)
    for tier, rs in runs.items():
        rs.sort(key=lambda r: r["first_seed"])
        total = dict(rs[0])
        total["cases"] = sum(r["cases"] for r in rs)
        total["seconds"] = round(sum(r["seconds"] for r in rs), 1)
        total["failures"] = [f for r in rs for f in r["failures"]][:50]
        if isinstance(rs[0]["outcomes"].get(next(iter(rs[0]["outcomes"]), ""), None), dict):
            total["outcomes"] = {e: dict(sorted(sum((collections.Counter(r["outcomes"][e]) for r in rs), collections.Counter()).items()))
                                 for e in rs[0]["outcomes"]}
        else:
            total["outcomes"] = dict(sorted(sum((collections.Counter(r["outcomes"]) for r in rs), collections.Counter()).items()))
        if "cases_per_second" in total:
            total["cases_per_second"] = round(total["cases"] / total["seconds"], 3)
        if "accepted_and_compiled" in total:
            total["accepted_and_compiled"] = sum(r["accepted_and_compiled"] for r in rs)
        total["runs"] = len(rs)
        data[tier] = total
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def markdown(data: dict) -> str:
    """The README's Reliability figures from the JSON summary (tests/test_docs_figures.py checks README against it)."""
    ip, emit, asan, cli = data["inprocess"], data.get("inprocess_emit"), data["asan"], data["cli"]
    lines = ["| entry point | mutated models | accepted | clean error (exit 2-4) | traceback | native crash | hang (> 10 s) |",
             "|---|---|---|---|---|---|---|"]
    rows = [(e, ip) for e in ip["entry_points"]] + ([("emit", emit)] if emit else [])
    for entry, tier in rows:
        o = tier["outcomes"][entry]
        label = "emit (cortex-m4; runs TFLM)" if entry == "emit" else entry
        lines.append(f"| {label} | {tier['cases']:,} | {o.get('ok', 0):,} | {o.get('clean', 0):,} | {o.get('traceback', 0):,} | "
                     f"{o.get('crash', 0):,} | {o.get('hang', 0):,} |")
    a = asan["outcomes"]
    reports = sum(v for k, v in a.items() if k not in ("clean_run", "refused_by_codegen", "hang"))
    lines += ["", f"Sanitizers: of {asan['cases']:,} mutated models, codegen accepted {asan['accepted_and_compiled']:,}; their "
              f"generated C, compiled with `{asan['compiler_flags']}` and run on two inputs each, ran clean "
              f"{a.get('clean_run', 0):,} times, with {reports:,} sanitizer reports and {a.get('hang', 0):,} hangs."]
    c = cli["outcomes"]
    exits = ", ".join(f"{k[5:]}: {v:,}" for k, v in sorted(c.items(), key=lambda kv: int(kv[0][5:]) if kv[0][5:].lstrip("-").isdigit() else 999)
                      if k.startswith("exit_"))
    lines += ["", f"`edgekit build MUTATED.tflite --target cortex-m4` through the CLI, {cli['cases']:,} cases "
              f"({cli['seconds'] / cli['cases']:.1f} s each): exit codes {exits}; {c.get('bad', 0):,} with a problem "
              "(an undocumented exit, a signal, more than one error line, or a leftover folder)."]
    recheck = cli.get("rechecked_on_final_code")
    if recheck:
        good = sum(1 for v in recheck.values() if v == "good")
        lines.append(f"The {len(recheck)} problem cases ran again on the final code: {good} of them now exit with a "
                     "documented code and one line on stderr, leaving no output folder, or for exit 3 and 6 the whole "
                     "build with its report.")
    return "\n".join(lines)


def _machine() -> dict:
    return {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "system": platform.system(), "processor": platform.processor() or platform.machine()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tier", choices=("inprocess", "asan", "cli"), default="inprocess")
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--emit", action="store_true", help="inprocess: also run emit (TFLM's arena probe server under the worker), "
                    "written under the JSON key inprocess_emit")
    ap.add_argument("--entries", help="inprocess: comma-separated entry points to run (default verifier,inspect,codegen "
                    "and emit with --emit), e.g. verifier,emit when inspect and codegen already have their cases")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds before a case counts as a hang")
    ap.add_argument("--json", type=Path, help="update this JSON summary (one key per tier)")
    ap.add_argument("--merge", nargs="+", type=Path, help="sum the tiers of these JSON summaries (runs over consecutive seeds) into --json")
    ap.add_argument("--markdown", action="store_true", help="print the README's Reliability figures from --json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker.split(","))
        return
    if a.merge:
        merge(a.merge, a.json)
        return
    if a.markdown:
        print(markdown(json.loads((a.json or RESULTS).read_text())))
        return
    if a.tier == "inprocess":
        entries = a.entries.split(",") if a.entries else ["verifier", "inspect", "codegen"] + (["emit"] if a.emit else [])
        res = tier_inprocess(a.cases, a.start, entries, a.timeout)
    elif a.tier == "asan":
        res = tier_asan(a.cases, a.start, a.timeout)
    else:
        res = tier_cli(a.cases, a.start, max(a.timeout, 300))
    res["models"] = [n for n, _ in _models()]
    res["machine"] = _machine()
    print(json.dumps({k: v for k, v in res.items() if k != "failures"}, indent=1))
    for f in res["failures"][:10]:
        print("FAILURE", json.dumps(f))
    if a.json:
        data = json.loads(a.json.read_text()) if a.json.is_file() else {}
        data[a.tier + ("_emit" if a.tier == "inprocess" and "emit" in res["entry_points"] else "")] = res
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
