"""Run LiteRT and the TFLM interpreter in child processes.

Third-party runtimes are native code: a model can make one abort the process
(``double free or corruption`` when LiteRT freed its interpreter on TFLM's
keyword_scrambled_8bit, whose int8 SVDF state it writes past; such known cases
are now kept from LiteRT by :mod:`edgekit.litert_compat`). Every leg therefore runs in a child
(:mod:`edgekit.verify.worker`), all legs of one build in one child so the
start-up cost (~0.3 s, no TensorFlow import) is paid once. When the child dies,
the leg it was running is marked crashed with the signal, and a new child runs
the remaining legs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.child_process import child_env as _child_env
from edgekit.child_process import die_with_parent

# leg kind -> runtime label the report uses
RUNTIME_OF = {"litert": "litert-default", "litert-ref": "litert-ref", "tflm": "tflm-host", "latency": "litert-default"}


@dataclass(frozen=True)
class Leg:
    """One run: ``kind`` (litert, litert-ref, tflm, latency) of model ``model`` on inputs ``inputs``."""

    name: str
    kind: str
    model: str
    inputs: str | None = None
    calls_per_sequence: int | None = None  # a model with state: rows are sequences of this many calls

    @property
    def runtime(self) -> str:
        """The runtime label of this leg's numbers."""
        return RUNTIME_OF[self.kind]


@dataclass(frozen=True)
class LegResult:
    """What one leg gave: raw outputs (or a latency), or why it has none.

    ``crash`` names the signal (or exit status) that killed the child while it
    ran this leg; ``error`` is the first line of a Python-level error.
    ``outputs`` holds one array per model output, in the model's order.
    """

    leg: Leg
    outputs: tuple[np.ndarray, ...] | None = None
    latency_ms: float | None = None
    error: str | None = None
    error_type: str | None = None
    crash: str | None = None

    @property
    def ok(self) -> bool:
        """True when the leg finished without error or crash."""
        return self.error is None and self.crash is None

    def failure(self) -> str | None:
        """One line for the report: why this leg has no numbers (None when it has)."""
        if self.crash:
            return f"{self.leg.runtime} crashed ({self.crash}) in its child process"
        if self.error:
            return f"{self.leg.runtime} failed: {self.error}"
        return None


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def run_legs(models: dict[str, bytes], inputs: dict[str, np.ndarray | tuple[np.ndarray, ...]], legs: list[Leg], *,
             timeout_s: float = 1800.0) -> dict[str, LegResult]:
    """Run ``legs`` in child processes and return each leg's result by name.

    Each ``inputs`` entry is one array, or a tuple with one array per model input.
    """
    results: dict[str, LegResult] = {}
    with tempfile.TemporaryDirectory(prefix="edgekit-verify-") as d:
        root = Path(d)
        for key, blob in models.items():
            (root / f"model_{key}.tflite").write_bytes(bytes(blob))
        n_inputs = {}
        for key, arrs in inputs.items():
            arrs = arrs if isinstance(arrs, tuple) else (arrs,)
            n_inputs[key] = len(arrs)
            for i, arr in enumerate(arrs):
                np.save(root / f"x_{key}_{i}.npy", np.ascontiguousarray(arr), allow_pickle=False)
        (root / "legs.json").write_text(json.dumps([{**leg.__dict__, "n_inputs": n_inputs.get(leg.inputs, 0)} for leg in legs]))
        by_name = {leg.name: leg for leg in legs}
        pending = [leg.name for leg in legs]
        progress = root / "progress.jsonl"
        while pending:
            progress.unlink(missing_ok=True)
            try:
                proc = subprocess.run([sys.executable, "-m", "edgekit.verify.worker", str(root), *pending],
                                      capture_output=True, text=True, timeout=timeout_s, env=_child_env(),
                                      preexec_fn=die_with_parent)  # dies with edgekit, even on SIGKILL
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = None
            started = None
            lines = progress.read_text().splitlines() if progress.exists() else []
            for line in lines:
                rec = json.loads(line)
                if "started" in rec:
                    started = rec["started"]
                    continue
                name = rec.pop("done")
                started = None
                leg = by_name[name]
                n_out = rec.pop("n_outputs", 0)
                outputs = tuple(np.load(root / f"out_{name}_{j}.npy", allow_pickle=False) for j in range(n_out)) or None
                results[name] = LegResult(leg, outputs=outputs, latency_ms=rec.get("latency_ms"),
                                          error=rec.get("error"), error_type=rec.get("error_type"))
            if started is None and not any(n in results for n in pending):
                # the child died before starting a leg: killed, or a broken environment
                started = pending[0]
                if code is not None and code > 0:
                    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                    results[started] = LegResult(by_name[started], crash=f"worker failed to start: {last[:200]}")
                else:
                    results[started] = LegResult(by_name[started], crash="timed out" if code is None else _describe_exit(code))
            elif started is not None:
                why = "timed out" if code is None else _describe_exit(code)
                results[started] = LegResult(by_name[started], crash=why)
            pending = [n for n in pending if n not in results]
    return results
