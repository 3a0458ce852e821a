"""The TFLM host runner and the measured arena, on real models and the real interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.tflite_model import read_model
from edgekit.tflm_host import _probe, measure_arena, run_tflm
from test_tflm_models import digits_tflite


def _litert_ref(tflite: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    ip = Interpreter(model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    ip.allocate_tensors()
    i, o = ip.get_input_details()[0], ip.get_output_details()[0]
    outs = []
    for s in x:
        ip.set_tensor(i["index"], s.reshape(i["shape"]))
        ip.invoke()
        outs.append(ip.get_tensor(o["index"])[0].copy())
    return np.stack(outs)


def test_run_tflm_is_bit_exact_with_litert_reference_kernels(digits_dir):
    tfl = digits_tflite(str(digits_dir))
    info = read_model(tfl)
    x = np.random.default_rng(0).integers(-128, 128, size=(24, 8, 8, 1)).astype(np.int8)
    out = run_tflm(tfl, x)
    assert out.shape == (24, 10) and out.dtype == np.int8
    assert np.array_equal(out, _litert_ref(tfl, x))
    assert len(np.unique(out.argmax(1))) > 1  # not a constant output
    assert out.shape[1:] == tuple(info.outputs[0].shape[1:])


def test_run_tflm_refuses_inputs_of_the_wrong_dtype(digits_dir):
    from edgekit.errors import VerificationError

    with pytest.raises(VerificationError, match="input dtype float32"):
        run_tflm(digits_tflite(str(digits_dir)), np.zeros((1, 8, 8, 1), np.float32))


def test_measured_arena_is_the_smallest_that_works(digits_dir):
    tfl = digits_tflite(str(digits_dir))
    arena = measure_arena(tfl)
    assert 1000 < arena.used_bytes < 64 * 1024 and arena.min_bytes % 16 == 0
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.tflite"
        p.write_bytes(tfl)
        res = _probe(p, [arena.min_bytes, arena.min_bytes - 16])
    assert res[arena.min_bytes]["ok"] and not res[arena.min_bytes - 16]["ok"]


@pytest.mark.shared_models
def test_person_detect_arena_matches_tflm_reference_figure(shared_models):
    arena = measure_arena((shared_models / "tflm" / "person_detect.tflite").read_bytes())
    assert abs(arena.used_bytes - 85_264) <= 0.02 * 85_264
    assert arena.head_bytes + arena.tail_bytes == arena.used_bytes and arena.head_bytes == 55_296  # the planner peak: 36,864 + 18,432 B of live activations
    assert arena.used_bytes <= arena.min_bytes + 16 * 64 and arena.min_bytes <= arena.used_bytes + 1024


@pytest.mark.shared_models
def test_kws_arena_matches_the_documented_figure(shared_models):
    arena = measure_arena((shared_models / "mlperf_tiny" / "kws_ref_model.tflite").read_bytes())
    assert abs(arena.used_bytes - 24_272) <= 0.02 * 24_272


# (used, minimum) arena bytes of every model in ../shared/models that TFLM runs. The MLPerf Tiny and person_detect
# figures are bench/results/bench_aot_vs_tflm.json's (tflm_arena_bytes, tflm_min_arena_bytes); the other four were
# measured by the one-child-per-batch prober of commit 59ebfd6, before the probe server. tflite-micro 0.dev20261023182759.
KNOWN_ARENAS = {
    "tflm/hello_world_float.tflite": (1536, 1936),
    "tflm/hello_world_int8.tflite": (1504, 1936),
    "tflm/keyword_scrambled.tflite": (15152, 18064),
    "tflm/micro_speech_quantized.tflite": (7584, 7584),
}


def _known_arenas() -> dict[str, tuple[int, int]]:
    import json

    from conftest import REPO

    rows = json.loads((REPO / "bench" / "results" / "bench_aot_vs_tflm.json").read_text())["rows"]
    bench = {f"mlperf_tiny/{r['model']}" if r["model"] != "person_detect.tflite" else "tflm/person_detect.tflite":
             (r["tflm_arena_bytes"], r["tflm_min_arena_bytes"]) for r in rows}
    return {**bench, **KNOWN_ARENAS}


@pytest.mark.shared_models
def test_every_shared_model_measures_the_known_arena(shared_models):
    from conftest import shared_model

    known = _known_arenas()
    assert len(known) == 9
    got = {}
    for rel in known:
        a = measure_arena(shared_model(shared_models, rel).read_bytes())
        got[rel] = (a.used_bytes, a.min_bytes)
        assert a.probes <= 40, (rel, a.probes)
    assert got == known
    # the used figure rounded up is the minimum for 5 of the 9: confirmed with 4 probes, no search
    assert measure_arena((shared_models / "tflm" / "person_detect.tflite").read_bytes()).probes == 4


def _server_pid() -> int:
    from edgekit import tflm_host

    return tflm_host._server().proc.pid


def test_one_probe_server_serves_every_probe_and_model(digits_dir, tmp_path):
    tfl = digits_tflite(str(digits_dir))
    measure_arena(tfl)
    pid = _server_pid()
    float_tfl = digits_tflite(str(digits_dir), mode="float")
    a, b = measure_arena(tfl), measure_arena(float_tfl)
    assert _server_pid() == pid
    assert b.used_bytes > a.used_bytes  # really the second model, not the first one cached


def test_a_probe_that_hangs_is_killed_and_reported(digits_dir, tmp_path, monkeypatch):
    from edgekit import tflm_host
    from edgekit.errors import VerificationError

    p = tmp_path / "m.tflite"
    p.write_bytes(digits_tflite(str(digits_dir)))
    tflm_host._probe(p, [1 << 20])
    srv = tflm_host._server()
    monkeypatch.setattr(tflm_host, "PROBE_TIMEOUT_S", 0.0)  # every answer comes too late
    with pytest.raises(VerificationError, match=r"did not finish with a 1,048,576-byte arena within 0 s"):
        tflm_host._probe(p, [1 << 20], mode="run")
    assert srv.proc.poll() is not None  # killed, not left running
    monkeypatch.undo()
    assert tflm_host._probe(p, [1 << 20], mode="run")[1 << 20]["ok"] and tflm_host._server() is not srv


def test_the_probe_server_dies_with_a_sigkilled_parent(digits_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO

    p = tmp_path / "m.tflite"
    p.write_bytes(digits_tflite(str(digits_dir)))
    code = ("import sys, time; from pathlib import Path; from edgekit import tflm_host; "
            "tflm_host._probe(Path(sys.argv[1]), [1 << 20]); print(tflm_host._server().proc.pid, flush=True); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", code, str(p)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # alive while its parent is
        parent.kill()  # SIGKILL: no atexit, no signal handler runs
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(child):
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped by init, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
