"""Child-process side of :mod:`edgekit.verify.isolated` (``python -m edgekit.verify.worker FOLDER``).

Reads ``legs.json`` and the model/input files (``x_<inputs>_<i>.npy``, one per
model input) from FOLDER, runs each leg in order and appends one JSON line per
event to ``progress.jsonl`` (unbuffered, so the lines written before a native
crash survive it). Outputs go to ``out_<leg>_<j>.npy``, one per model output. Imports LiteRT and tflite-micro only, never TensorFlow.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np


def _log(fd: int, rec: dict) -> None:
    os.write(fd, (json.dumps(rec) + "\n").encode())


def _run_leg(folder: Path, leg: dict) -> dict:
    model = (folder / f"model_{leg['model']}.tflite").read_bytes()
    if leg["kind"] == "latency":
        from edgekit.verify.runtimes import host_latency

        return {"latency_ms": host_latency(model).mean_ms}
    xs = tuple(np.load(folder / f"x_{leg['inputs']}_{i}.npy", allow_pickle=False) for i in range(leg["n_inputs"]))
    if leg["kind"] == "tflm":
        from edgekit.tflm_host import run_tflm_io

        outs = run_tflm_io(model, xs, leg.get("calls_per_sequence"))
    else:
        from edgekit.verify.runtimes import run_litert_io

        outs = run_litert_io(model, xs, reference=leg["kind"] == "litert-ref", calls_per_sequence=leg.get("calls_per_sequence"))
    for j, out in enumerate(outs):
        np.save(folder / f"out_{leg['name']}_{j}.npy", out, allow_pickle=False)
    return {"n_outputs": len(outs)}


def main(folder: str, names: list[str]) -> None:
    """Run the legs called ``names`` (all of ``legs.json`` in order when empty)."""
    root = Path(folder)
    legs = [leg for leg in json.loads((root / "legs.json").read_text()) if not names or leg["name"] in names]
    fd = os.open(root / "progress.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    for leg in legs:
        _log(fd, {"started": leg["name"]})
        try:
            rec = _run_leg(root, leg)
        except Exception as exc:  # reported to the parent as this leg's error
            # LiteRT appends a tensor dump after ".Tensor": the first sentence is the reason
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(".Tensor")[0][:300]
            rec = {"error": first, "error_type": type(exc).__name__}
        _log(fd, {"done": leg["name"], **rec})
    os.close(fd)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
