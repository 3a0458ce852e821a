"""Run one mutated model through edgekit's entry points and classify what happened.

Outcomes: ``ok`` (accepted), ``clean`` (an :class:`~edgekit.errors.EdgekitError`,
i.e. a one-line error with its exit code), ``traceback`` (any other
exception: a bug). Native crashes and hangs cannot be caught in-process;
``bench/fuzz.py`` runs this in worker processes to count them.
"""

from __future__ import annotations

import shutil
import traceback
from pathlib import Path
from typing import Callable

from edgekit.errors import EdgekitError

ENTRY_POINTS = ("verifier", "inspect", "codegen")


def _verifier(buf: bytes, work: Path) -> None:
    from edgekit.model_check import check_tflite

    check_tflite(buf, "fuzz.tflite")


def _inspect(buf: bytes, work: Path) -> None:
    from edgekit.tflite_model import read_model

    read_model(buf, name="fuzz.tflite").to_dict()


def _codegen(buf: bytes, work: Path) -> None:
    from edgekit.aot.codegen import generate

    out = work / "codegen"
    shutil.rmtree(out, ignore_errors=True)
    generate(buf, out)


def _emit(buf: bytes, work: Path) -> None:
    from edgekit.cli.emit_cmd import emit  # `edgekit emit MODEL --target cortex-m4 --out DIR` without the printing

    model, out = work / "fuzz.tflite", work / "emit"
    model.write_bytes(buf)
    shutil.rmtree(out, ignore_errors=True)
    emit(model, "cortex-m4", out)


RUNNERS: dict[str, Callable[[bytes, Path], None]] = {
    "verifier": _verifier, "inspect": _inspect, "codegen": _codegen, "emit": _emit,
}


def run_case(buf: bytes, entry: str, work: Path) -> tuple[str, str]:
    """(outcome, detail) of running ``entry`` on ``buf``; detail is the error line or the traceback's last frame."""
    try:
        RUNNERS[entry](buf, work)
        return "ok", ""
    except EdgekitError as exc:
        return "clean", exc.one_line()[:200]
    except Exception as exc:  # noqa: BLE001 - exactly what the fuzzer looks for
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return "traceback", f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}: {str(exc)[:120]}"
