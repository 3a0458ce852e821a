"""Every traceback the fuzzer found, replayed: ``mutate(model, seed)`` must now end in a clean error.

The mutated models derive from third-party files in ../shared/models, which
may not be copied into this repository, so each regression is stored as the
(model, seed) pair that regenerates it byte for byte, with what it broke.
"""

from __future__ import annotations

import hashlib

import pytest
from conftest import shared_model
from fuzz_harness import run_case
from fuzz_mutator import mutate

# (model under ../shared/models, seed, sha256 prefix of the mutated bytes, the traceback codegen gave before issue 15's fixes)
FOUND = [
    ("tflm/hello_world_int8.tflite", 9, "5c758a8259b8c896", "IndexError at graph.py:83"),
    ("tflm/micro_speech_quantized.tflite", 11, "b4e8bdfbe980a144", "IndexError at lower.py:380"),
    ("tflm/micro_speech_quantized.tflite", 17, "35cf49df35426106", "KeyError at planner.py:97"),
    ("mlperf_tiny/pretrainedResnet_quant.tflite", 19, "1d4c9e9e20d36bfd", "ValueError at lower.py:172"),
    ("tflm/keyword_scrambled.tflite", 22, "5c7dc6f6c06893ab", "IndexError at graph.py:149"),
    ("tflm/micro_speech_quantized.tflite", 35, "4a01bba3ea0cb7d9", "KeyError at planner.py:103"),
    ("mlperf_tiny/pretrainedResnet_quant.tflite", 85, "30739ab649f197fd", "UnicodeDecodeError at graph.py:144"),
    ("tflm/micro_speech_quantized.tflite", 101, "7114ebf8d9f5ed84", "ValueError at lower.py:174"),
    ("mlperf_tiny/kws_ref_model.tflite", 126, "7bf3b5bc4c997726", "ValueError at lower.py:277"),
    ("tflm/hello_world_int8.tflite", 129, "60a3dd89c2747647", "ValueError at lower.py:171"),
    ("tflm/hello_world_int8.tflite", 147, "8e50acb73b8c1ce9", "IndexError at lower.py:245"),
    ("mlperf_tiny/kws_ref_model.tflite", 174, "dc5a741595e0e1e2", "ValueError at _methods.py:41"),
    ("tflm/micro_speech_quantized.tflite", 293, "ac81b6b0cd80acd7", "IndexError at lower.py:165"),
    ("mlperf_tiny/pretrainedResnet_quant.tflite", 331, "9d8549b069ccc09d", "IndexError at lower.py:304"),
    ("mlperf_tiny/kws_ref_model.tflite", 414, "b7db251b17d79363", "IndexError at lower.py:273"),
    ("tflm/hello_world_int8.tflite", 633, "03a7c2b2249b50d5", "ZeroDivisionError at lower.py:253"),
    ("tflm/hello_world_int8.tflite", 5265, "e594758e83d96425", "KeyError at planner.py:72"),
]


@pytest.mark.parametrize("model,seed,sha,was", FOUND, ids=[f"{m.split('/')[-1]}-{s}" for m, s, _, _ in FOUND])
def test_found_case_is_a_clean_error(shared_models, tmp_path, model, seed, sha, was):
    path = shared_model(shared_models, model)
    buf, _ = mutate(path.read_bytes(), seed)
    assert hashlib.sha256(buf).hexdigest().startswith(sha), "the mutator changed: these seeds no longer replay the cases found"
    for entry in ("verifier", "inspect", "codegen"):
        outcome, detail = run_case(buf, entry, tmp_path)
        assert outcome in ("ok", "clean"), (entry, detail, was)


def test_ubsan_overflow_case_is_refused_by_codegen(shared_models, tmp_path):
    """Seed 667 flips a bias to about -2^31 (and its zero point): the generated conv overflowed int32 under UBSan
    (ek_conv.c). Now refused, by the verifier's bias zero point check first; the overflow proof itself is tested
    in test_safety.py (test_codegen_refuses_an_accumulation_int32_cannot_hold)."""
    path = shared_model(shared_models, "mlperf_tiny/kws_ref_model.tflite")
    buf, _ = mutate(path.read_bytes(), 667)
    assert hashlib.sha256(buf).hexdigest().startswith("d1953c90709d4d39"), "the mutator changed"
    outcome, detail = run_case(buf, "codegen", tmp_path)
    assert outcome == "clean" and ("beyond int32" in detail or "outside the int32 range" in detail), detail


# (model, seed, sha256 prefix, what `edgekit build --target cortex-m4` did before): models whose shapes contradict
# their ops pass the verifier (it checks indices, sizes and parameters, not shape inference) and crash a runtime.
RUNTIME_CRASHES = [
    ("mlperf_tiny/pretrainedResnet_quant.tflite", 47, "a6a7e6bd3f2f10f0", "exit 1: XNNPACK failed to prepare CONV_2D"),
    ("mlperf_tiny/vww_96_int8.tflite", 120, "d555f6be21472491", "SIGFPE in the tflite-micro interpreter, in-process"),
]


@pytest.mark.parametrize("model,seed,sha,was", RUNTIME_CRASHES, ids=[f"{m.split('/')[-1]}-{s}" for m, s, _, _ in RUNTIME_CRASHES])
def test_build_contains_a_runtime_crash_and_ships_no_firmware(shared_models, tmp_path, model, seed, sha, was):
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO

    buf, _ = mutate(shared_model(shared_models, model).read_bytes(), seed)
    assert hashlib.sha256(buf).hexdigest().startswith(sha), "the mutator changed"
    (tmp_path / "m.tflite").write_bytes(buf)
    proc = subprocess.run([sys.executable, "-m", "edgekit", "build", "m.tflite", "--target", "cortex-m4", "--out", "out"],
                          cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    errors = [ln for ln in proc.stderr.splitlines() if not ln.endswith(" ...")]
    assert proc.returncode == 6, (was, proc.stderr[-1500:])
    assert len(errors) == 1 and "crashed (SIG" in errors[0] and "in its child process" in errors[0], errors
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["failures"] and not (tmp_path / "out" / "tflm").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


# (model, seed, sha256 prefix, seconds allowed): a huge dimension made `edgekit emit` probe TFLM's arena for 14 s to
# minutes (the emit fuzz tier counted each as a hang: over 10 s of CPU). emit now refuses such a model (exit 3) before
# probing, as build does. keyword_scrambled 85992 (the 100,000-case tier's one hang) has a 200 MB int16 input that only
# its QUANTIZE reads: the floor counted op outputs only, and probing took 16 s.
EMIT_HANGS = [
    ("mlperf_tiny/vww_96_int8.tflite", 390, "d3f1dfca2b95526c", 30),
    ("tflm/person_detect.tflite", 602, "9b8ef0888944164c", 30),
    ("tflm/person_detect.tflite", 692, "4a2322c9aa40a10f", 30),
    ("tflm/keyword_scrambled.tflite", 85992, "c57867371227bcb0", 5),
]


@pytest.mark.parametrize("model,seed,sha,seconds", EMIT_HANGS, ids=[f"{m.split('/')[-1]}-{s}" for m, s, _, _ in EMIT_HANGS])
def test_emit_refuses_a_model_that_cannot_fit_without_probing(shared_models, tmp_path, model, seed, sha, seconds):
    import time

    buf, _ = mutate(shared_model(shared_models, model).read_bytes(), seed)
    assert hashlib.sha256(buf).hexdigest().startswith(sha), "the mutator changed"
    t0 = time.monotonic()
    outcome, detail = run_case(buf, "emit", tmp_path)
    assert outcome == "clean" and detail.startswith("model does not fit cortex-m4: RAM") and "> budget 262,144 B" in detail, detail
    assert time.monotonic() - t0 < seconds  # it probed for 16 s to over 3 minutes before


def test_an_arena_that_must_grow_to_run_is_found_in_few_probes(shared_models):
    """vww seed 390 reports 6,712,264 B used but needs 6,729,392 B to run once: the old 16-byte walk up took 1,074
    probes (194 s) to find that figure, the doubling-then-halving search finds the same one in a few dozen."""
    from edgekit.tflm_host import measure_arena

    buf, _ = mutate(shared_model(shared_models, "mlperf_tiny/vww_96_int8.tflite").read_bytes(), 390)
    arena = measure_arena(buf)
    assert (arena.used_bytes, arena.min_bytes) == (6_712_264, 6_729_392)
    assert arena.probes <= 40


# (model, seed, sha256 prefix, what the emit fuzz tier saw): models whose shapes contradict their ops pass the verifier
# and make TFLM read memory it should not; what happens depends on that memory. emit computed main.cc's expected
# output with TFLM in edgekit's own process (four segfaults, one SIGFPE), and one probe ran TFLM for minutes (a hang). Now
# that inference runs in a fork of the probe server, and a probe or inference over PROBE_CPU_S of CPU is killed.
EMIT_NATIVE = [
    ("tflm/hello_world_int8.tflite", 3371, "6296fad752c9053e", "SIGSEGV in emit_tflm_project's run_tflm"),
    ("tflm/micro_speech_quantized.tflite", 7135, "ae78d290be1ae3ff", "SIGSEGV in emit_tflm_project's run_tflm"),
    ("mlperf_tiny/ad01_int8.tflite", 8910, "bc2a24b48946e25a", "SIGSEGV in emit_tflm_project's run_tflm"),
    ("mlperf_tiny/pretrainedResnet_quant.tflite", 9011, "cae93443a79d6cd4", "an arena probe spinning for minutes"),
    ("tflm/keyword_scrambled.tflite", 11031, "8dffab3040351132", "SIGFPE in the emit worker"),
    ("tflm/hello_world_int8.tflite", 11777, "11e8737c4d1c3983", "SIGSEGV in the emit worker"),
]


@pytest.mark.parametrize("model,seed,sha,was", EMIT_NATIVE, ids=[f"{m.split('/')[-1]}-{s}" for m, s, _, _ in EMIT_NATIVE])
def test_emit_contains_tflm_reading_out_of_bounds(shared_models, tmp_path, model, seed, sha, was):
    import time

    buf, _ = mutate(shared_model(shared_models, model).read_bytes(), seed)
    assert hashlib.sha256(buf).hexdigest().startswith(sha), "the mutator changed"
    t0 = time.monotonic()
    outcome, detail = run_case(buf, "emit", tmp_path)  # a native crash here would end the test process
    assert outcome in ("ok", "clean"), (was, detail)
    assert time.monotonic() - t0 < 60


def test_an_inference_over_its_cpu_budget_is_killed(shared_models, monkeypatch):
    import numpy as np

    from edgekit import tflm_host
    from edgekit.errors import VerificationError

    buf = shared_model(shared_models, "tflm/person_detect.tflite").read_bytes()
    x = np.zeros((200, 96, 96, 1), np.int8)  # 200 invokes: seconds of CPU
    monkeypatch.setattr(tflm_host, "PROBE_CPU_S", 0.001)  # 0.2 s for 200 inputs
    with pytest.raises(VerificationError, match=r"did not finish running 200 input\(s\) within [0-9.]+ s of CPU"):
        tflm_host.run_tflm_contained(buf, (x,))
    monkeypatch.undo()
    # the server survived, and its inference is the in-process one
    (contained,) = tflm_host.run_tflm_contained(buf, (x[:2],))
    assert np.array_equal(contained, tflm_host.run_tflm(buf, x[:2]))
