"""Figures in README come from committed benchmark output (bench/results/*.json), not from memory."""

from __future__ import annotations

import importlib.util
import json

from conftest import REPO


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_aot_vs_tflm_table_is_the_committed_benchmark_output():
    result = json.loads((REPO / "bench" / "results" / "bench_aot_vs_tflm.json").read_text())
    table = _bench_module("bench_aot_vs_tflm").markdown_table(result)
    assert table in (REPO / "README.md").read_text(), "regenerate with: python bench/bench_aot_vs_tflm.py --markdown"
    measured = [r for r in result["rows"] if "arena_with_io_bytes" in r]
    assert measured and all(r["outputs_bit_exact"] == 1.0 for r in measured)
    # the like-for-like arena: edgekit's arena plus its I/O buffers, as TFLM's arena holds its I/O tensors
    assert all(r["arena_with_io_bytes"] > r["arena_bytes"] for r in measured)
    assert result["machine"]["host"] and result["machine"]["emulator"]


def test_readme_per_core_table_is_the_committed_benchmark_output():
    mod = _bench_module("bench_aot_vs_tflm")
    results = [json.loads((REPO / "bench" / "results" / name).read_text()) for _, name in mod.CORES]
    assert mod.cores_table(results) in (REPO / "README.md").read_text(), \
        "regenerate with: python bench/bench_aot_vs_tflm.py --markdown-cores"
    assert [r["target"] for r in results] == [t for t, _ in mod.CORES]
    assert all(row["outputs_bit_exact"] == 1.0 for r in results for row in r["rows"])
    # Helium on the M55 must pay for itself on every model, against the same kernels' SMLAD path on the M4
    m4, m55 = ({row["model"]: row["instructions_per_inference"] for row in r["rows"]} for r in (results[0], results[2]))
    assert all(m55[m] < 0.8 * m4[m] for m in m4), (m4, m55)


def _points(x: float) -> str:
    return f"{100 * x:+.2f}"


def test_distill_ensemble_doc_is_the_committed_benchmark_output():
    result = json.loads((REPO / "bench" / "results" / "bench_distill_ensemble.json").read_text())
    doc = (REPO / "docs" / "distill-ensemble.md").read_text()
    table = _bench_module("bench_distill_ensemble").markdown_table(result)
    assert table in doc, "regenerate with: python bench/bench_distill_ensemble.py --markdown"
    assert "machine: x86_64" in table or "machine: aarch64" in table
    # the prose's figures: mean gain, per-seed range and the spread between seeds, from the same JSON
    gains = [r["ensemble"] - r["single_teacher"] for r in result["students"]]
    assert f"{_points(result['mean']['ensemble'] - result['mean']['single_teacher'])} points better on average" in doc
    assert f"from\n{100 * min(gains):.2f} to {_points(max(gains))})" in doc
    single = [r["single_teacher"] for r in result["students"]]
    assert f"({100 * (max(single) - min(single)):.1f} points for the same teacher)" in doc


def test_packed_weights_tables_are_the_committed_benchmark_output():
    result = json.loads((REPO / "bench" / "results" / "bench_packed_weights.json").read_text())
    table = _bench_module("bench_packed_weights").markdown_table(result)
    for doc in ("README.md", "docs/compression-qat-cluster-distill.md"):
        assert table in (REPO / doc).read_text(), f"{doc}: regenerate with: python bench/bench_packed_weights.py --markdown"
    plain, packed = result["rows"]["plain"], result["rows"]["packed"]
    assert plain["outputs_bit_exact"] == packed["outputs_bit_exact"] == 1.0
    assert packed["weight_bits"] == 4 and plain["weight_bits"] == 8
    assert packed["flash_bytes"] < plain["flash_bytes"]
    assert result["machine"]["emulator"] and result["machine"]["host"]


def test_compression_doc_is_the_committed_benchmark_output():
    result = json.loads((REPO / "bench" / "results" / "bench_compress.json").read_text())
    table = _bench_module("bench_compress").markdown_table(result)
    assert table in (REPO / "docs" / "compression.md").read_text(), "regenerate with: python bench/bench_compress.py --markdown"
    assert result["machine"] and result["emulator"]
    for run in result["results"]:
        rows = {r["recipe"]: r for r in run["rows"]}
        assert rows["none"]["error"] is None and rows["none"]["instructions_per_inference"]
        # structured50 halves the channels: the int8 model shrinks by well over a third on every run
        assert rows["structured50"]["int8_tflite_bytes"] < 0.6 * rows["none"]["int8_tflite_bytes"]


def test_readme_aot_prose_figures_are_the_committed_benchmark_output():
    result = json.loads((REPO / "bench" / "results" / "bench_aot_vs_tflm.json").read_text())
    readme = " ".join((REPO / "README.md").read_text().split())  # prose wraps anywhere
    rows = {r["model"]: r for r in result["rows"]}
    ref = result["reference_tflm"]["models"]
    names = {"kws": "kws_ref_model.tflite", "person_detect": "person_detect.tflite", "vww": "vww_96_int8.tflite",
             "ResNet-8": "pretrainedResnet_quant.tflite", "ad01": "ad01_int8.tflite"}
    for name, model in names.items():
        cut = 100 * (1 - rows[model]["instructions_per_inference"] / ref[model]["tflm_cmsis_nn"][2])
        assert cut > 0, name
        assert f"{name} by {cut:.1f} %" in readme or f"{name} by {cut:.0f} %" in readme, (name, round(cut, 2))
        flash_ref, ram_ref, _ = ref[model]["tflm_ref"]
        assert rows[model]["flash_bytes"] < flash_ref and rows[model]["ram_bytes"] < ram_ref, name
    vww, person = rows["vww_96_int8.tflite"], rows["person_detect.tflite"]
    assert (f"({vww['io_in_arena_arena_bytes']:,} and {person['io_in_arena_arena_bytes']:,} B) is below the planner's "
            f"layer-wise bound ({person['arena_lower_bound_bytes']:,} B)") in readme
    assert vww["arena_lower_bound_bytes"] == person["arena_lower_bound_bytes"]
    assert f"person_detect measures {person['tflm_arena_bytes']:,} B" in readme


def test_readme_static_batch_table_is_the_committed_benchmark_output():
    result = json.loads((REPO / "bench" / "results" / "bench_static_batch.json").read_text())
    table = _bench_module("bench_static_batch").markdown_table(result)
    readme = (REPO / "README.md").read_text()
    assert table in readme, "regenerate with: python bench/bench_static_batch.py --markdown"
    dynamic, static = result["rows"]["dynamic batch"], result["rows"]["static batch 1"]
    assert {"SHAPE", "STRIDED_SLICE", "PACK"} <= set(dynamic["op_kinds"]) and not {"SHAPE", "PACK"} & set(static["op_kinds"])
    # the static build is the one `make example` prints (README's abridged output block)
    assert f"│ int8 .tflite                   │ {static['int8_tflite_bytes']:,} B" in readme
    assert f"│ arena (measured)               │ {static['tflm_arena_bytes']:,} B" in readme
    assert f"│ flash needed / budget          │ {static['flash_estimate_bytes']:,} B / " in readme


def test_qat_cluster_distill_doc_is_the_committed_benchmark_output():
    result = json.loads((REPO / "bench" / "results" / "qat_distill.json").read_text())
    doc = (REPO / "docs" / "compression-qat-cluster-distill.md").read_text()
    blocks = _bench_module("bench_qat_distill").markdown_tables(result)
    assert set(blocks) == {"source", "qat", "cluster", "distill"}
    for part, block in blocks.items():
        assert block in doc, f"{part}: regenerate with: python bench/bench_qat_distill.py --markdown"
    # the prose's claims, from the same JSON: QAT recovers what PTQ lost with a tiny calibration set ...
    assert all(r["qat_int8"] > r["ptq_int8"] for r in result["qat"]["rows"])
    # ... and distillation wins on noisy labels
    noisy = result["distill_label_noise_0.25"]["rows"]
    assert all(r["mean"] > noisy[0]["mean"] for r in noisy[1:]) and noisy[0]["alpha"] == 0.0


def test_readme_search_paragraph_is_the_committed_benchmark_output():
    result = json.loads((REPO / "bench" / "results" / "search.json").read_text())
    readme = (REPO / "README.md").read_text()
    assert _bench_module("bench_search").markdown(result) in readme, "regenerate with: python bench/bench_search.py --markdown"
    one, two = result["speed"]
    assert "Two workers are no faster" in readme and two["trials_per_hour"] <= one["trials_per_hour"]
    assert result["best"]["flash_bytes"] <= result["flash_budget_bytes"] < result["plain_int8"]["flash_bytes"]
    assert result["rebuilt_from_best_toml"]["flash_bytes"] == result["best"]["flash_bytes"]


def test_readme_pi_root_timing_is_the_committed_benchmark_output():
    result = json.loads((REPO / "bench" / "results" / "bench_pi_root.json").read_text())
    readme = " ".join((REPO / "README.md").read_text().split())
    assert _bench_module("bench_pi_root").markdown(result) in readme, "regenerate with: python bench/bench_pi_root.py --markdown"
    assert result["speedup"] >= 3 and result["runs"][0]["root_seconds"] > result["runs"][1]["root_seconds"]


def test_readme_reliability_figures_are_the_committed_fuzz_summary():
    result = json.loads((REPO / "bench" / "results" / "fuzz.json").read_text())
    assert _bench_module("fuzz").markdown(result) in (REPO / "README.md").read_text(), \
        "regenerate with: python bench/fuzz.py --markdown"
    inproc = result["inprocess"]
    assert inproc["cases"] >= 100_000
    for entry in inproc["entry_points"]:  # the claim: no traceback, native crash or hang in any entry point
        assert set(inproc["outcomes"][entry]) <= {"ok", "clean"}, inproc["outcomes"][entry]
    emit = result["inprocess_emit"]
    assert emit["first_seed"] == 0 and set(emit["outcomes"]["emit"]) <= {"ok", "clean"}, emit["outcomes"]["emit"]
    assert sum(emit["outcomes"]["emit"].values()) == emit["cases"]


def test_int16_doc_is_the_committed_benchmark_output():
    result = json.loads((REPO / "bench" / "results" / "bench_int16.json").read_text())
    table = _bench_module("bench_int16").markdown_table(result)
    assert table in (REPO / "docs" / "quantization.md").read_text(), "regenerate with: python bench/bench_int16.py --markdown"
    int8, int16 = result["rows"]["int8"], result["rows"]["int16x8"]
    assert int8["outputs_bit_exact"] == int16["outputs_bit_exact"] == 1.0
    assert int8["input_dtype"] == "int8" and int16["input_dtype"] == "int16"
    assert int16["accuracy"] > int8["accuracy"] and int16["arena_bytes"] <= 2 * int8["arena_bytes"]
    assert result["machine"]["emulator"] and result["machine"]["host"]
