"""The fast fuzz tier: seeded mutations of real models through the verifier, ``inspect`` and ``codegen``, in-process.

Every case must end accepted or with a clean EdgekitError; a traceback is a
bug and the failure names the seed to replay it (``mutate(model, seed)``).
The long tier with worker processes (crashes, hangs) is ``bench/fuzz.py``.
"""

from __future__ import annotations

import collections

import pytest

from fuzz_harness import ENTRY_POINTS, run_case
from fuzz_mutator import model_files, mutate

CASES = 1200  # ~25 ms each for all three entry points on the models below
MAX_BYTES = 120_000  # the small models keep the tier fast; bench/fuzz.py takes them all


@pytest.fixture(scope="module")
def seeds_models(shared_models, digits_dir) -> list[tuple[str, bytes]]:
    from test_tflm_models import digits_tflite

    models = [(p.name, p.read_bytes()) for p in model_files(shared_models) if p.stat().st_size <= MAX_BYTES]
    return models + [("digits (trained by the tests)", digits_tflite(str(digits_dir)))]


def test_mutated_models_never_raise_a_traceback(seeds_models, tmp_path):
    counts: collections.Counter = collections.Counter()
    bugs = []
    for seed in range(CASES):
        name, buf = seeds_models[seed % len(seeds_models)]
        mutated, kind = mutate(buf, seed)
        for entry in ENTRY_POINTS:
            outcome, detail = run_case(mutated, entry, tmp_path)
            counts[entry, outcome] += 1
            if outcome == "traceback":
                bugs.append(f"{entry} seed {seed} ({name}, {kind}): {detail}")
    assert not bugs, f"{len(bugs)} tracebacks, first: " + "; ".join(bugs[:5])
    # the mutator must still produce models that pass (else this tests only the first check)
    assert counts["verifier", "ok"] >= CASES // 5 and counts["codegen", "ok"] >= CASES // 20, dict(counts)
    assert counts["verifier", "clean"] >= CASES // 3, dict(counts)


def test_mutation_is_seeded(seeds_models):
    _, buf = seeds_models[0]
    assert mutate(buf, 7) == mutate(buf, 7) and mutate(buf, 7) != mutate(buf, 8)


def test_unmutated_models_pass_the_verifier(shared_models):
    from edgekit.model_check import check_tflite

    for p in model_files(shared_models):  # every real model, the large ones too
        check_tflite(p.read_bytes(), str(p))
