"""Board profiles: every bundled file loads, names and budgets are what the boards have, bad files are refused."""

from __future__ import annotations

import json

import pytest

from edgekit.cli import main
from edgekit.errors import InputError
from edgekit.targets import available, get_target

REQUIRED = {"rpi", "rpi4", "rpi-zero-2w", "cortex-m4", "stm32f405", "nrf52840", "stm32f746", "cortex-m55"}


def test_required_profiles_are_bundled_and_load():
    assert REQUIRED <= set(available())
    for name in available():
        p = get_target(name)
        assert p.name == name
        assert p.ram_bytes > 0 and p.flash_bytes > 0


@pytest.mark.parametrize(
    "name, flash, ram, runtime, machine",
    [
        ("stm32f405", 1 << 20, 192 << 10, "tflm", "netduinoplus2"),
        ("nrf52840", 1 << 20, 256 << 10, "tflm", "mps2-an386"),
        ("stm32f746", 1 << 20, 320 << 10, "tflm", "mps2-an500"),
        ("cortex-m4", 1 << 20, 256 << 10, "tflm", "mps2-an386"),
        ("cortex-m55", 2 << 20, 512 << 10, "tflm", "mps3-an547"),
        ("rpi4", 8 << 30, 4 << 30, "litert", "qemu-aarch64"),
    ],
)
def test_budgets_match_the_boards(name, flash, ram, runtime, machine):
    p = get_target(name)
    assert (p.flash_bytes, p.ram_bytes, p.runtime, p.emulator.machine) == (flash, ram, runtime, machine)


@pytest.mark.parametrize("name, cpu", [("rpi", "cortex-a72"), ("rpi4", "cortex-a72"), ("rpi5", "cortex-a76"), ("rpi-zero-2w", "cortex-a53")])
def test_pi_profiles_name_the_emulated_cpu(name, cpu, capsys):
    assert get_target(name).emulator.cpu == cpu
    assert main(["targets", "show", name]) == 0
    assert f"emulated CPU {cpu}" in capsys.readouterr().out


def test_targets_json_lists_every_profile(capsys):
    assert main(["targets", "--json"]) == 0
    names = [p["name"] for p in json.loads(capsys.readouterr().out)]
    assert names == sorted(available())


def test_user_profile_file_is_accepted(tmp_path):
    f = tmp_path / "board.toml"
    f.write_text('name="b"\ndescription="d"\nruntime="tflm"\ncpu="cortex-m4"\narch="armv7e-m"\nram_bytes=1024\nflash_bytes=2048\n[toolchain]\nmcpu="cortex-m4"\n')
    p = get_target(str(f))
    assert (p.name, p.ram_bytes, p.flash_bytes, p.toolchain.mcpu) == ("b", 1024, 2048, "cortex-m4")


def test_unknown_key_in_profile_suggests_the_right_one(tmp_path):
    f = tmp_path / "board.toml"
    f.write_text('name="b"\ndescription="d"\nruntime="tflm"\ncpu="c"\narch="a"\nram_byte=1\nflash_bytes=2\n')
    with pytest.raises(InputError, match=r"unknown key 'ram_byte'.*did you mean 'ram_bytes'"):
        get_target(str(f))


def test_bad_runtime_and_budget_are_refused(tmp_path):
    f = tmp_path / "board.toml"
    f.write_text('name="b"\ndescription="d"\nruntime="onnx"\ncpu="c"\narch="a"\nram_bytes=1\nflash_bytes=2\n')
    with pytest.raises(InputError, match="runtime must be one of litert, tflm"):
        get_target(str(f))
    f.write_text('name="b"\ndescription="d"\nruntime="litert"\ncpu="c"\narch="a"\nram_bytes=-5\nflash_bytes=2\n')
    with pytest.raises(InputError, match="ram_bytes must be a positive integer"):
        get_target(str(f))


def test_unknown_target_name_is_exit_2_with_suggestion(capsys):
    assert main(["targets", "show", "stm32f74"]) == 2
    err = capsys.readouterr().err
    assert "unknown target 'stm32f74'" in err and "did you mean 'stm32f746'" in err
    assert "Traceback" not in err
