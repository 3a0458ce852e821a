"""``edgekit search`` on the digits CNN: real builds, a budget the plain int8 build misses by ~40 %,
interrupt + resume, best.toml rebuilt, two workers on a journal file and on a real PostgreSQL server."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import require_tools

from edgekit.cli import main

REPO = Path(__file__).resolve().parent.parent
FLASH_BUDGET = 84_000  # the plain int8 digits CNN needs ~117 KB of flash (TFLM estimate): ~40 % over

# A small space so a trial takes seconds: channels or low rank, one epoch of fine-tuning.
SPACE = """
description = "test space"

[[stage]]
name = "structured"
optional = true
ratio = { choices = [0.25, 0.5] }
epochs = 1

[[stage]]
name = "lowrank"
optional = true
param_ratio = { low = 0.3, high = 0.6, step = 0.1 }
epochs = 1
"""


@pytest.fixture(scope="module")
def setup(digits_dir, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("search")
    target = (REPO / "targets" / "cortex-m4.toml").read_text()
    target = target.replace('name = "cortex-m4"', 'name = "m4-84k"')
    target = "\n".join(f"flash_bytes = {FLASH_BUDGET}" if line.startswith("flash_bytes") else line for line in target.splitlines())
    (d / "m4-84k.toml").write_text(target + "\n")
    (d / "space.toml").write_text(SPACE)
    return {"dir": d, "target": d / "m4-84k.toml", "space": d / "space.toml"}


def _args(digits_dir: Path, s: dict[str, Path], out: Path, trials: int, *extra: str) -> list[str]:
    return ["search", str(digits_dir / "model.keras"), "--target", str(s["target"]), "--train", str(digits_dir / "train.npz"),
            "--calib", str(digits_dir / "calib.npz"), "--eval", str(digits_dir / "eval.npz"), "--space", str(s["space"]),
            "--trials", str(trials), "--out", str(out), *extra]


def _result(out: Path) -> dict:
    return json.loads((out / "search.json").read_text())


def test_search_interrupt_resume_and_best_rebuilds(digits_dir, setup, tmp_path):
    out = tmp_path / "s"
    args = _args(digits_dir, setup, out, 4, "--seed-recipes", "structured50")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # interrupt while the second trial (seeded structured50, seconds of fine-tuning) builds: the first has written its folder
    t0 = time.monotonic()
    while not (out / "trials" / "0000").exists() and proc.poll() is None and time.monotonic() - t0 < 300:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert ("edgekit: aborted" in err or "edgekit: interrupted" in err) and "Traceback" not in err
    import optuna

    from edgekit.search.storage import open_storage
    from edgekit.search.study import counted

    before = optuna.load_study(study_name="edgekit-search", storage=open_storage(None, out)).get_trials()
    assert sum(counted(t) for t in before) < 4  # it stopped early: the trial under way was cut short, or finished if
    # the interrupt landed in one of TensorFlow's finalizers (Python drops it there; the search stops after that trial)

    assert main(args) == 0  # the same command resumes
    res = _result(out)
    trials = res["trials"]
    statuses = [t["status"] for t in trials]
    finished = [t for t in trials if t["status"] in ("ok", "infeasible", "failed")]
    assert len(finished) == 4, statuses  # the total asked for: none lost, none counted twice
    retried = [t for t in trials if t["retry_of"] is not None]
    interrupted = [t["number"] for t in trials if t["status"] == "interrupted"]
    assert sorted(t["retry_of"] for t in retried) == interrupted  # each interrupted trial re-run exactly once
    for t in retried:  # with the same recipe
        first = trials[t["retry_of"]]["recipe"]
        assert first is None or t["recipe"]["stages"] == first["stages"]

    # the seeded plain int8 build is over the budget by about 40 % and never on the front
    base = next(t for t in trials if t["seeded"] == "none" and t["status"] != "interrupted")
    assert base["status"] == "infeasible"
    assert 1.3 < base["figures"]["flash_bytes"] / FLASH_BUDGET < 1.5
    assert base["number"] not in res["front"]
    for n in res["front"]:
        t = trials[n]
        assert t["status"] == "ok" and t["figures"]["flash_bytes"] <= FLASH_BUDGET

    # the best recipe fits, loses at most 2 points against float, and `build --recipe best.toml` reproduces it
    best = trials[res["best_trial"]]
    f = best["figures"]
    assert f["flash_bytes"] <= FLASH_BUDGET and f["ram_bytes"] <= f["ram_budget_bytes"]
    assert f["accuracy"] >= f["accuracy_float"] - 0.02
    assert (out / "front.png").read_bytes()[:4] == b"\x89PNG"
    html = (out / "front.html").read_text()
    assert f"trials/{best['number']:04d}/report.md" in html and "<svg" in html
    md = (out / "search.md").read_text()
    assert "best (accuracy)" in md and "infeasible" in md

    # a finished study re-run adds no trial; --pick flash re-picks among the same trials
    assert main([*args, "--pick", "flash"]) == 0
    again = _result(out)
    assert [t["number"] for t in again["trials"]] == [t["number"] for t in trials]
    fitting = [t for t in again["trials"] if t["status"] == "ok"]
    assert again["trials"][again["best_trial"]]["figures"]["flash_bytes"] == min(t["figures"]["flash_bytes"] for t in fitting)
    assert "best (flash)" in (out / "search.md").read_text()
    assert main(args) == 0  # back to the most accurate for the rebuild below

    rebuilt = tmp_path / "rebuilt"
    assert main(["build", str(digits_dir / "model.keras"), "--target", str(setup["target"]), "--train", str(digits_dir / "train.npz"),
                 "--calib", str(digits_dir / "calib.npz"), "--eval", str(digits_dir / "eval.npz"), "--recipe", str(out / "best.toml"),
                 "--seed", "0", "--out", str(rebuilt), "--json"]) == 0
    rep = json.loads((rebuilt / "report.json").read_text())
    assert rep["memory"]["flash_bytes"] == f["flash_bytes"]
    assert abs(rep["accuracy"]["int8_tflm"] - f["accuracy"]) <= 0.01


def test_bad_space_is_one_line_exit_2(digits_dir, setup, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[stage]]\nname = "structured"\nratoi = { low = 0.2, high = 0.5 }\n')
    assert main(_args(digits_dir, {**setup, "space": bad}, tmp_path / "o", 2)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "'ratoi'" in err and "did you mean 'ratio'" in err
    assert not (tmp_path / "o" / "search.json").exists()


def _two_workers(digits_dir, setup, out: Path, *extra: str) -> dict:
    assert main(_args(digits_dir, setup, out, 4, "--workers", "2", "--seed-recipes", "", *extra)) == 0
    res = _result(out)
    finished = [t for t in res["trials"] if t["status"] in ("ok", "infeasible", "failed")]
    assert 4 <= len(finished) <= 5  # two processes may both start the last trial
    assert len({t["worker"] for t in finished}) == 2  # both processes ran trials of the one study
    assert len({t["number"] for t in res["trials"]}) == len(res["trials"])
    return res


def test_two_workers_journal(digits_dir, setup, tmp_path):
    out = tmp_path / "w"
    _two_workers(digits_dir, setup, out)
    assert (out / "study.journal").stat().st_size > 0


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return Path(dirs[-1]) if dirs else None


@pytest.fixture
def postgres(tmp_path):
    """A PostgreSQL server of Debian's package on localhost in a temp folder; yields its URL."""
    bindir = _pg_bin()
    if bindir is None or not (bindir / "pg_ctl").is_file():
        msg = "PostgreSQL server not installed (Debian package postgresql; docker/install-toolchain.sh installs it)"
        if os.environ.get("EDGEKIT_REQUIRE_TOOLCHAIN") == "1" or os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    data = Path(tempfile.mkdtemp(prefix="edgekit-pg-"))  # under /tmp: the postgres user must reach it (pytest's tmp is 0700)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the package's postgres user
        shutil.chown(data, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "edgekit"], check=True, capture_output=True)
    subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(data / "log"), "-o",
                    f"-c listen_addresses=127.0.0.1 -p {port} -k {data}", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://edgekit@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_two_workers_postgresql(digits_dir, setup, tmp_path, postgres):
    out = tmp_path / "p"
    res = _two_workers(digits_dir, setup, out, "--storage", postgres, "--study", "pg-test")
    assert res["study"] == "pg-test"
    assert not (out / "study.journal").exists()


def test_default_space_gives_valid_recipes_reproducibly():
    """Every sampled trial is a valid recipe (Recipe checks each stage's Config), in the space's stage order,
    QAT preserves what an earlier stage made, and the same seed gives the same recipes."""
    import optuna

    from edgekit.search import SearchSpace

    space = SearchSpace.load()
    order = [s.name for s in space.stages]

    def sample(seed: int) -> list[dict]:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        out = []
        for _ in range(40):
            trial = study.ask()
            out.append(space.recipe(trial, source=f"trial-{trial.number}").to_dict())
            study.tell(trial, 0.0)
        return out

    a, b = sample(7), sample(7)
    assert a == b
    assert a != sample(8)
    for r in a:
        names = [s["name"] for s in r["stages"]]
        assert names == sorted(names, key=order.index)
        assert names.count("prune") <= 1  # magnitude and 2:4 are alternatives
        qat = next((s for s in r["stages"] if s["name"] == "qat"), None)
        if qat is not None:
            want = "cluster" if "cluster" in names else "sparsity" if "prune" in names else "none"
            assert qat["preserve"] == want
    assert {s["name"] for r in a for s in r["stages"]} == set(order)


@pytest.mark.emulator
def test_memory_aot_scores_the_linked_runtime(digits_dir, setup, tmp_path):
    """--memory aot: flash from edgekit's C runtime linked for the target, where 4-bit clustered weights pay off."""
    require_tools("arm-none-eabi-gcc")
    out = tmp_path / "a"
    args = _args(digits_dir, {**setup, "target": "cortex-m4"}, out, 2, "--seed-recipes", "none,cluster16", "--memory", "aot")
    assert main(args) == 0
    trials = {t["seeded"]: t for t in _result(out)["trials"]}
    plain, clustered = trials["none"]["figures"], trials["cluster16"]["figures"]
    for f in (plain, clustered):
        assert any(s["name"] == "link" for s in f["stages"])
    assert (out / "trials" / f"{trials['cluster16']['number']:04d}" / "search-aot" / "firmware" / "firmware.elf").is_file()
    # no interpreter: the linked plain model is well under the TFLM estimate (117 KB); clustering shrinks it further
    assert plain["flash_bytes"] < 0.8 * 117_440
    assert clustered["flash_bytes"] < 0.75 * plain["flash_bytes"]


def test_failed_trial_is_recorded_and_the_search_goes_on(digits_dir, setup, tmp_path):
    bad = tmp_path / "nolayer.toml"
    bad.write_text('[[stage]]\nname = "lowrank"\nlayers = ["nope"]\nepochs = 0\n')
    out = tmp_path / "f"
    assert main(_args(digits_dir, {**setup, "target": "cortex-m4"}, out, 3, "--seed-recipes", str(bad))) == 0
    trials = _result(out)["trials"]
    failed = [t for t in trials if t["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["seeded"] == str(bad)
    assert "no layer named 'nope'" in failed[0]["figures"]["error"] and failed[0]["figures"]["exit_code"] == 2
    assert len([t for t in trials if t["status"] == "ok"]) == 2  # the other trials still ran
    assert "no layer named 'nope'" in (out / "search.md").read_text()


def test_default_space_searches_int16x8_for_microcontrollers_only(tmp_path):
    import optuna

    from edgekit.errors import InputError
    from edgekit.search import SearchSpace

    space = SearchSpace.load()
    assert space.quant is not None and space.quant.choices == ("int8", "int16x8")
    assert space.baseline_params()["quant"] == "int8"

    def quants(mcu: bool) -> list:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
        out = []
        for _ in range(20):
            trial = study.ask()
            out.append(space.recipe(trial, source=f"trial-{trial.number}", mcu=mcu).quant)
            study.tell(trial, 0.0)
        return out

    mcu = quants(True)
    assert set(mcu) == {None, "int16x8"}  # int8 is the recipe default: no quant key
    assert set(quants(False)) == {None}
    bad = tmp_path / "space.toml"
    bad.write_text('quant = { choices = ["int8", "float16"] }\n[[stage]]\nname = "prune"\n')
    with pytest.raises(InputError, match=f"{bad}: quant .*: a search space takes int8 or int16x8"):
        SearchSpace.load(bad)
    bad.write_text('quant = { choices = ["int16x8"] }\n[[stage]]\nname = "prune"\n')
    with pytest.raises(InputError, match="lack int8"):
        SearchSpace.load(bad)
