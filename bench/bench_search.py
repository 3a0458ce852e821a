"""``edgekit search`` on the bundled digits CNN: the issue's done-when run and trials per hour.

- A custom Cortex-M4 profile whose flash budget (84,000 B) the plain int8
  build misses (by 31 %, 110,264 B: .tflite + edgekit's TFLM code estimate).
- ``--trials 20`` with the default space and 1 worker: does a recipe fit, how
  many points does it lose against float, does ``edgekit build --recipe
  best.toml`` reproduce its accuracy and flash, and does the front dominate or
  match every bundled recipe ``edgekit compare`` runs by default (those are
  the study's seeded trials: the same builds, same seed).
- The same search with 2 workers: trials per hour for 1 and 2 workers, and
  the per-stage seconds of the trials.

    python bench/bench_search.py [--trials 20] [--json-out bench/results/search.json]
    python bench/bench_search.py --markdown   # the README paragraph from the JSON

Every figure is the TFLM host interpreter's (accuracy) and the build's memory
section (flash, RAM), on the machine that ran the bench (recorded in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import host  # noqa: E402
DIGITS = REPO / "examples" / "digits"
FLASH_BUDGET = 84_000


def _target(folder: Path) -> Path:
    text = (REPO / "targets" / "cortex-m4.toml").read_text().replace('name = "cortex-m4"', 'name = "m4-84k"')
    text = "\n".join(f"flash_bytes = {FLASH_BUDGET}" if line.startswith("flash_bytes") else line for line in text.splitlines())
    path = folder / "m4-84k.toml"
    path.write_text(text + "\n")
    return path


def _edgekit(*args: str) -> float:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "edgekit", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise SystemExit(f"edgekit {args[0]} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return time.monotonic() - t0


def _data_args() -> list[str]:
    return ["--train", str(DIGITS / "train.npz"), "--calib", str(DIGITS / "calib.npz"), "--eval", str(DIGITS / "eval.npz")]


def _dominated_or_matched(row: dict, front: list[dict]) -> bool:
    f = row["figures"]
    return any(g["figures"]["accuracy"] >= f["accuracy"] and g["figures"]["flash_bytes"] <= f["flash_bytes"]
               and g["figures"]["ram_bytes"] <= f["ram_bytes"] for g in front)


def run(trials: int, workers: int, folder: Path, target: Path) -> dict:
    out = folder / f"search-w{workers}"
    seconds = _edgekit("search", str(DIGITS / "model.keras"), "--target", str(target), *_data_args(), "--trials", str(trials),
                       "--workers", str(workers), "--out", str(out))
    res = json.loads((out / "search.json").read_text())
    finished = [t for t in res["trials"] if t["status"] in ("ok", "infeasible", "failed")]
    stage_seconds: dict[str, float] = {}
    for t in finished:
        for s in t["figures"].get("stages", []):
            stage_seconds[s["name"]] = stage_seconds.get(s["name"], 0.0) + s["seconds"]
    summary = {"workers": workers, "trials": len(finished), "wall_seconds": round(seconds, 1),
               "trials_per_hour": round(3600 * len(finished) / seconds, 1), "counts": res["counts"],
               "stage_seconds_total": {k: round(v, 1) for k, v in sorted(stage_seconds.items())}}
    return {"summary": summary, "result": res, "out": out}


def markdown(result: dict) -> str:
    """The README's paragraph for ``result`` (tests/test_docs_figures.py checks README against it)."""
    plain, best, m = result["plain_int8"], result["best"], result["machine"]
    one, two = result["speed"]
    lines = [f"Measured by `python bench/bench_search.py` (`bench/results/search.json`; the bundled digits CNN, a Cortex-M4 "
             f"profile with a flash budget of {result['flash_budget_bytes']:,} B that the plain int8 build, {plain['flash_bytes']:,} B, "
             f"misses by {100 * plain['over_budget']:.0f} %; accuracy on the TFLM interpreter, flash/RAM from the build's memory "
             f"section; {m['cpu']}, {m['cores']} cores shared with other jobs): `--trials {one['trials']}` gave "
             f"{one['counts'].get('ok', 0)} trials that fit."]
    if best:
        name = f"`{best['seeded']}` (seeded)" if best.get("seeded") else "`" + " + ".join(
            s["name"] + "".join(f" {k}={v}" for k, v in sorted(s.items()) if k != "name") for s in best["recipe"]) + "`"
        rebuilt = result["rebuilt_from_best_toml"]
        same = rebuilt and rebuilt["accuracy"] == best["accuracy"] and rebuilt["flash_bytes"] == best["flash_bytes"]
        lines.append(f"The most accurate, {name}, keeps {100 * best['accuracy']:.2f} % against {100 * plain['accuracy_float']:.2f} % "
                     f"for float at {best['flash_bytes']:,} B, and `edgekit build --recipe best.toml` gives "
                     + ("the same accuracy and flash." if same else
                        f"{100 * rebuilt['accuracy']:.2f} % at {rebuilt['flash_bytes']:,} B."))
    all_covered = all(r["dominated_or_matched_by_front"] for r in result["bundled_recipes"])
    lines.append(f"The front ({len(result['front'])} trials) " + ("dominates or matches every recipe" if all_covered else
                 "does not dominate every recipe") + " `edgekit compare` runs by default.")
    lines.append(f"{one['trials_per_hour']:.0f} trials/hour with {one['workers']} worker, {two['trials_per_hour']:.0f} with {two['workers']}.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--json-out", type=Path, default=REPO / "bench" / "results" / "search.json")
    ap.add_argument("--markdown", action="store_true", help="print the README paragraph from the JSON")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.json_out.read_text())))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        target = _target(folder)
        one = run(args.trials, 1, folder, target)
        res = one["result"]
        trials = res["trials"]
        best = trials[res["best_trial"]] if res["best_trial"] is not None else None
        front = [trials[n] for n in res["front"]]
        seeded = [t for t in trials if t["seeded"] and t["status"] in ("ok", "infeasible")]
        rebuilt = None
        if best is not None:
            _edgekit("build", str(DIGITS / "model.keras"), "--target", str(target), *_data_args(), "--recipe", str(one["out"] / "best.toml"),
                     "--seed", "0", "--out", str(folder / "rebuilt"), "--json")
            rep = json.loads((folder / "rebuilt" / "report.json").read_text())
            rebuilt = {"accuracy": rep["accuracy"]["int8_tflm"], "flash_bytes": rep["memory"]["flash_bytes"], "ram_bytes": rep["memory"]["ram_bytes"]}
        two = run(args.trials, 2, folder, target)
    base = next(t for t in trials if t["seeded"] == "none")
    out = {
        "bench": "bench/bench_search.py",
        "machine": {"cpu": host(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "note": "shared with other jobs while measured; trials/hour is a lower bound"},
        "runtime": "accuracy: tflm-host (tflite-micro interpreter); flash/RAM: the build's memory section (.tflite + TFLM code estimate, measured arena)",
        "model": "examples/digits/model.keras", "target": f"cortex-m4 with flash_bytes = {FLASH_BUDGET}", "flash_budget_bytes": FLASH_BUDGET,
        "plain_int8": {"flash_bytes": base["figures"]["flash_bytes"], "over_budget": round(base["figures"]["flash_bytes"] / FLASH_BUDGET - 1, 3),
                       "accuracy": base["figures"]["accuracy"], "accuracy_float": base["figures"]["accuracy_float"]},
        "best": None if best is None else {"trial": best["number"], "recipe": best["recipe"]["stages"], "seeded": best["seeded"], "accuracy": best["figures"]["accuracy"],
                                           "flash_bytes": best["figures"]["flash_bytes"], "ram_bytes": best["figures"]["ram_bytes"],
                                           "points_lost_vs_float": round(100 * (best["figures"]["accuracy_float"] - best["figures"]["accuracy"]), 2)},
        "rebuilt_from_best_toml": rebuilt,
        "front": [{"trial": t["number"], "accuracy": t["figures"]["accuracy"], "flash_bytes": t["figures"]["flash_bytes"],
                   "ram_bytes": t["figures"]["ram_bytes"]} for t in front],
        "bundled_recipes": [{"recipe": t["seeded"], "status": t["status"], "accuracy": t["figures"]["accuracy"], "flash_bytes": t["figures"]["flash_bytes"],
                             "dominated_or_matched_by_front": t["status"] == "infeasible" or _dominated_or_matched(t, front)} for t in seeded],
        "speed": [one["summary"], two["summary"]],
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(markdown(out))


if __name__ == "__main__":
    main()
