"""A runtime that dies natively is a result: the leg is marked crashed, the other legs keep their numbers.

The crash is real: the test sends SIGSEGV to the worker process while it runs
(what a native fault in LiteRT or TFLM delivers), rather than patching anything.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np

from edgekit.cli import main
from edgekit.verify.isolated import Leg, run_legs

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "examples" / "digits"


def _workers() -> list[int]:
    """Pids of this process's edgekit.verify.worker children."""
    me, found = os.getpid(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me and b"edgekit.verify.worker" in cmd:
            found.append(int(d.name))
    return found


def _segfault_first_worker(stop: threading.Event, after_s: float = 0.0) -> threading.Thread:
    def run() -> None:
        while not stop.is_set():
            pids = _workers()
            if pids:
                time.sleep(after_s)
                os.kill(pids[0], signal.SIGSEGV)
                return
            time.sleep(0.005)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _digits_int8(tmp_path: Path) -> bytes:
    rc = main(["build", str(DIGITS / "model.keras"), "--target", "cortex-m4", "--calib", str(DIGITS / "calib.npz"),
               "--out", str(tmp_path / "b"), "--max-eval", "8"])
    assert rc == 0
    return (tmp_path / "b" / "model.tflite").read_bytes()


def test_a_killed_leg_is_marked_and_later_legs_still_run(tmp_path):
    tfl = _digits_int8(tmp_path)
    x = np.random.default_rng(0).integers(-128, 128, size=(12000, 8, 8, 1)).astype(np.int8)  # seconds of TFLM: killed mid-leg
    legs = [Leg("tflm", "tflm", "int8", "int8"), Leg("ref", "litert-ref", "int8", "int8")]
    stop = threading.Event()
    killer = _segfault_first_worker(stop, after_s=0.5)
    res = run_legs({"int8": tfl}, {"int8": x}, legs)
    stop.set()
    killer.join()
    assert res["tflm"].crash == "SIGSEGV" and res["tflm"].outputs is None
    assert res["tflm"].failure() == "tflm-host crashed (SIGSEGV) in its child process"
    assert res["ref"].ok and res["ref"].outputs[0].shape == (12000, 10)  # run by a fresh child (one array per output)


def test_build_survives_a_runtime_crash_writes_its_report_and_exits_6(tmp_path, capsys):
    stop = threading.Event()
    killer = _segfault_first_worker(stop)
    out = tmp_path / "m4"
    rc = main(["build", str(DIGITS / "model.keras"), "--target", "cortex-m4", "--calib", str(DIGITS / "calib.npz"),
               "--eval", str(DIGITS / "eval.npz"), "--out", str(out)])
    stop.set()
    killer.join()
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.endswith(" ...")]
    assert rc == 6
    assert len(err) == 1 and "crashed (SIGSEGV) in its child process" in err[0]
    r = json.loads((out / "report.json").read_text())
    assert len(r["failures"]) == 1 and "SIGSEGV" in r["failures"][0]
    acc = r["accuracy"]
    assert acc["float"] > 0.9
    # exactly one int8 runtime lost its numbers; the others kept theirs
    assert sum(acc[k] is None for k in ("int8_tflite", "int8_tflite_ref", "int8_tflm")) <= 1
    assert any(v.startswith("failed: ") for v in r["runtimes"].values())
    # the report and the model are there; no firmware ships for a model a runtime crashed on
    assert (out / "model.tflite").is_file() and not (out / "tflm").exists() and r["memory"]["arena_bytes"] is None
