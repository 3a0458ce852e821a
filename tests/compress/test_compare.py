"""``edgekit compare``: one table, plot, Markdown and HTML whose numbers are those of the individual builds."""

from __future__ import annotations

import json

import pytest
from conftest import require_tools

from edgekit.cli import main

pytestmark = pytest.mark.slow

SAME = ("flash_bytes", "arena_bytes", "int8_tflite_bytes", "float_tflite_bytes", "accuracy_float", "accuracy_deployed", "compression_ratio", "accuracy_lost")


def _args(d, *extra: str) -> list[str]:
    return [str(d / "model.h5"), "--target", "cortex-m4", "--calib", str(d / "calib.npz"), "--eval", str(d / "eval.npz"),
            "--train", str(d / "train.npz"), *extra]


@pytest.fixture(scope="module")
def compared(tmp_path_factory, digits_tfkeras_dir):
    out = tmp_path_factory.mktemp("cmp") / "cmp"
    rc = main(["compare", *_args(digits_tfkeras_dir, "--recipes", "none,structured50", "--out", str(out))])
    assert rc == 0
    return out, json.loads((out / "compare.json").read_text())


def test_writes_table_plot_markdown_and_html(compared):
    out, cmp = compared
    assert [r["recipe"] for r in cmp["rows"]] == ["none", "structured50"]
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "compare.md").read_text()
    assert "| none |" in md and "| structured50 |" in md and "![flash, arena and accuracy per recipe](compare.png)" in md
    html = (out / "compare.html").read_text()
    assert html.count("<tr>") == 3 and '<img src="compare.png"' in html
    none, half = cmp["rows"]
    # structured pruning pays on the device: less flash and arena, more compression
    assert half["flash_bytes"] < none["flash_bytes"] and half["arena_bytes"] < none["arena_bytes"]
    assert half["compression_ratio"] > 2 * none["compression_ratio"]


def test_numbers_are_those_of_each_builds_report(compared):
    out, cmp = compared
    for row in cmp["rows"]:
        rep = json.loads((out / row["out_dir"] / "report.json").read_text())
        deployed = rep["summary"]["accuracy_deployed_runtime"]
        assert row["flash_bytes"] == rep["memory"]["flash_bytes"]
        assert row["arena_bytes"] == rep["memory"]["arena_bytes"]
        assert row["int8_tflite_bytes"] == rep["sizes"]["int8_tflite_bytes"] == (out / row["out_dir"] / "model.tflite").stat().st_size
        assert row["int8_latency_ms"] == rep["latency"]["int8_ms"]
        assert row["accuracy_deployed"] == rep["accuracy"][deployed]
        assert row["speedup"] == rep["speedup"]["host_latency_ratio"]
        assert row["accuracy_lost"] == rep["summary"]["accuracy_lost"]
        assert rep["recipe"]["name"] == row["recipe"]


def test_a_separate_build_of_the_same_recipe_reports_the_same_numbers(compared, digits_tfkeras_dir, tmp_path, capsys):
    _, cmp = compared
    capsys.readouterr()
    rc = main(["build", *_args(digits_tfkeras_dir, "--recipe", "structured50", "--out", str(tmp_path / "b"), "--json")])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    row = cmp["rows"][1]
    deployed = rep["summary"]["accuracy_deployed_runtime"]
    alone = {
        "flash_bytes": rep["memory"]["flash_bytes"], "arena_bytes": rep["memory"]["arena_bytes"],
        "int8_tflite_bytes": rep["sizes"]["int8_tflite_bytes"], "float_tflite_bytes": rep["sizes"]["float_tflite_bytes"],
        "accuracy_float": rep["accuracy"]["float"], "accuracy_deployed": rep["accuracy"][deployed],
        "compression_ratio": rep["sizes"]["compression_ratio"], "accuracy_lost": rep["summary"]["accuracy_lost"],
    }
    assert {k: row[k] for k in SAME} == alone


def test_bad_recipe_or_emulator_on_a_pi_fails_before_any_build(digits_tfkeras_dir, tmp_path, capsys):
    rc = main(["compare", *_args(digits_tfkeras_dir, "--recipes", "none,structured5", "--out", str(tmp_path / "a"))])
    err = capsys.readouterr().err
    assert rc == 2 and "structured5: no such recipe" in err and "'structured50'" in err
    assert not (tmp_path / "a").exists()
    rc = main(["compare", str(digits_tfkeras_dir / "model.h5"), "--target", "rpi4", "--eval", str(digits_tfkeras_dir / "eval.npz"),
               "--emulator", "--out", str(tmp_path / "b")])
    assert rc == 2 and "--emulator in compare is for microcontroller targets" in capsys.readouterr().err


@pytest.mark.emulator
def test_emulator_adds_instructions_per_inference(digits_tfkeras_dir, tmp_path, capsys):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    out = tmp_path / "cmp"
    rc = main(["compare", *_args(digits_tfkeras_dir, "--recipes", "structured50", "--emulator", "--out", str(out), "--json")])
    assert rc == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    rep = json.loads((out / "structured50" / "report.json").read_text())
    assert row["instructions_per_inference"] == rep["emulator"]["instructions_per_inference"] > 0


def test_over_budget_row_keeps_its_numbers_and_the_exit_code_is_3(digits_tfkeras_dir, tmp_path, capsys):
    """On a 96 KB-flash board the plain int8 build does not fit and the structured one does: the table shows both."""
    from edgekit.targets import targets_dir

    board = tmp_path / "small-m4.toml"
    board.write_text((targets_dir() / "cortex-m4.toml").read_text().replace('name = "cortex-m4"', 'name = "small-m4"')
                     .replace("flash_bytes = 1048576", "flash_bytes = 98304"))
    out = tmp_path / "cmp"
    rc = main(["compare", str(digits_tfkeras_dir / "model.h5"), "--target", str(board), "--calib", str(digits_tfkeras_dir / "calib.npz"),
               "--eval", str(digits_tfkeras_dir / "eval.npz"), "--train", str(digits_tfkeras_dir / "train.npz"),
               "--recipes", "none,structured50", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 3 and "1 of 2 builds failed; first: none:" in err
    none, half = json.loads((out / "compare.json").read_text())["rows"]
    assert none["exit_code"] == 3 and none["fits"] is False and none["flash_bytes"] > 98304
    assert half["error"] is None and half["fits"] is True and half["flash_bytes"] <= 98304
    assert "| none |" in (out / "compare.md").read_text()
