"""Run a Python script with the aarch64 root under ``qemu-aarch64-static``.

The guest sees the CPU view of the root as ``/`` for every path that exists
there (``QEMU_LD_PREFIX``), and the host for the rest, so scripts, models and
outputs are passed by their host paths. ``QEMU_CPU`` is always pinned: QEMU
7.2's default ``max`` CPU makes XNNPACK compute wrong int8 outputs.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import ToolchainError, VerificationError
from edgekit.pi_emulator.root import QEMU_INSTALL_HINT, AArch64Root, check_cpu, check_leg, ensure_root, require_tool

QEMU_USER = "qemu-aarch64-static"


def emulated_env(root: AArch64Root, cpu: str, leg: str, prefix: Path | None = None) -> dict[str, str]:
    """A clean environment for the guest: pinned CPU, the CPU's root as prefix, the leg's wheels on the path."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "QEMU_CPU": check_cpu(cpu),
        "QEMU_LD_PREFIX": str(prefix or root.cpu_root(cpu)),
        "PYTHONPATH": str(root.site(leg)),
        "PYTHONNOUSERSITE": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }


def run_python(args: list[str], *, cpu: str, leg: str = "litert", root: AArch64Root | None = None,
               prefix: Path | None = None, timeout: float = 900, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the aarch64 ``python3.11 ARGS`` on the emulated ``cpu`` with the wheels of ``leg``.

    ``prefix`` overrides the guest root (tests use it to show what breaks
    without the CPU view). Returns the finished process; never raises on a
    non-zero exit.
    """
    qemu = require_tool(QEMU_USER, QEMU_INSTALL_HINT)
    check_leg(leg)
    root = root or ensure_root(legs=(leg,), cpus=(cpu,))
    base = prefix or root.cpu_root(cpu)
    python = base / "usr" / "bin" / root.python.name
    return subprocess.run([qemu, str(python), *args], env=emulated_env(root, cpu, leg, prefix), capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, preexec_fn=_no_core_dumps)


def _no_core_dumps() -> None:
    # qemu-user writes a qemu_*.core file into the working folder when the guest crashes
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@dataclass(frozen=True)
class RunnerResult:
    """One emulated run of a build's ``run.py`` (its JSON line and its raw outputs)."""

    cpu: str
    leg: str
    runtime: str
    runtime_version: str | None
    kernels: str
    n: int
    accuracy: float | None
    mean_latency_ms: float  # emulated: QEMU on the build host, not a Pi benchmark
    wall_seconds: float
    outputs: tuple[np.ndarray, ...]  # one array per model output, in the model's order

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("outputs")
        return d


def run_runner(runner: Path, model: Path, inputs: Path, *, cpu: str, leg: str = "litert", reference: bool = False,
               root: AArch64Root | None = None, work: Path | None = None) -> RunnerResult:
    """Run a build's own ``run.py`` on ``inputs`` (.npz/.npy) under emulation and return its raw outputs.

    Raises VerificationError with the runner's last stderr line if it fails
    (a crash of the emulated process is reported with its signal).
    """
    work = work or inputs.parent
    out = work / f"emulated-{leg}-{'ref' if reference else 'default'}-{cpu}.npy"
    args = [str(runner), str(inputs), "--model", str(model), "--raw", "--output", str(out), "--json", "--runtime", leg]
    if reference:
        args.append("--reference-kernels")
    t0 = time.perf_counter()
    proc = run_python(args, cpu=cpu, leg=leg, root=root)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
        last = (proc.stderr.strip().splitlines() or ["no stderr"])[-1][:300]
        raise VerificationError(f"{runner} failed under {QEMU_USER} (cpu {cpu}, {leg}): {how}: {last}",
                                f"run `python {runner} {inputs}` on the host: if it fails there too, the model or the inputs are "
                                "at fault, else report the emulation problem with `edgekit env`")
    try:
        line = json.loads(proc.stdout.strip().splitlines()[-1])
        loaded = np.load(out, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            outputs = (loaded,)
        else:  # several outputs: a .npz with out0, out1, ...
            with loaded:
                outputs = tuple(loaded[f"out{j}"] for j in range(len(loaded.files)))
    except (IndexError, KeyError, json.JSONDecodeError, OSError) as exc:
        raise ToolchainError(f"{runner} under {QEMU_USER} printed no result line or wrote no outputs ({exc})") from None
    return RunnerResult(cpu=cpu, leg=leg, runtime=line["runtime"], runtime_version=line.get("runtime_version"),
                        kernels=line["kernels"], n=int(line["n"]), accuracy=line["accuracy"],
                        mean_latency_ms=float(line["mean_latency_ms"]), wall_seconds=wall, outputs=outputs)
