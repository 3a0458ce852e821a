"""The bare-metal harness, linker script and QEMU runner, on a hand-written stand-in model.

The stand-in (a C file written here) sums strided input bytes with saturation,
so its outputs are known exactly in numpy; it needs no code generator.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tools

from edgekit.errors import BudgetError, InputError, ToolchainError
from edgekit.targets import get_target
from edgekit.toolchain.cross import build_firmware
from edgekit.toolchain.linker import render_linker_script
from edgekit.toolchain.qemu import run_firmware

pytestmark = pytest.mark.emulator

IN, OUT = 64, 10
MCU_TARGETS = ["cortex-m4", "stm32f405", "stm32f746", "cortex-m55"]

STANDIN_H = """#include <stdint.h>
#define EDGEKIT_INPUT_BYTES {n_in}
#define EDGEKIT_OUTPUT_BYTES {n_out}
#define EDGEKIT_ARENA_BYTES {arena}
int edgekit_invoke(const int8_t* in, int8_t* out);
"""
STANDIN_C = """#include "edgekit_model.h"
static int8_t arena[EDGEKIT_ARENA_BYTES];
const int8_t weights[WEIGHTS] = {1};
int edgekit_invoke(const int8_t* in, int8_t* out) {
  for (int i = 0; i < EDGEKIT_INPUT_BYTES; i++) arena[i] = in[i];
  for (int o = 0; o < EDGEKIT_OUTPUT_BYTES; o++) {
    int s = ((const volatile int8_t*)weights)[0] - 1;  /* keeps the weights in flash */
    for (int i = o; i < EDGEKIT_INPUT_BYTES; i += EDGEKIT_OUTPUT_BYTES) s += arena[i];
    out[o] = (int8_t)(s > 127 ? 127 : s < -128 ? -128 : s);
  }
  return 0;
}
"""


def write_standin(d: Path, arena: int = 1024, weights: int = 16, n_in: int = IN) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "edgekit_model.h").write_text(STANDIN_H.format(n_in=n_in, n_out=OUT, arena=arena))
    (d / "edgekit_model.c").write_text(STANDIN_C.replace("WEIGHTS", str(weights)))
    return d


def expected(x: np.ndarray) -> np.ndarray:
    s = np.stack([x[:, o::OUT].astype(np.int32).sum(axis=1) for o in range(OUT)], axis=1)
    return np.clip(s, -128, 127).astype(np.int8)


@pytest.fixture(scope="module", autouse=True)
def _tools():
    require_tools("arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm")


@pytest.mark.parametrize("name", MCU_TARGETS)
def test_standin_runs_on_every_mcu_machine_with_exact_outputs_and_measurements(name, tmp_path):
    target = get_target(name)
    img = build_firmware(write_standin(tmp_path / "model"), target, tmp_path / "fw")
    assert img.flash_bytes == sum(img.sections.get(s, 0) for s in (".isr_vector", ".text", ".rodata", ".data"))
    assert img.sections[".isr_vector"] == 64
    # the 1024 B arena and both I/O buffers are in .bss
    assert img.sections[".bss"] >= 1024 + IN + OUT
    assert img.flash_bytes < 4096  # semihosting without newlib stdio keeps the harness small
    x = np.random.default_rng(1).integers(-128, 128, (7, IN), dtype=np.int8)
    x.tofile(tmp_path / "fw" / "input.bin")
    run = run_firmware(img.elf, target.emulator.machine, tmp_path / "fw", marks=(img.mark_begin, img.mark_end))
    out = np.fromfile(tmp_path / "fw" / "output.bin", dtype=np.int8).reshape(-1, OUT)
    np.testing.assert_array_equal(out, expected(x))
    assert run.n_inferences == 7
    assert 32 <= run.stack_bytes < img.min_stack_bytes
    assert run.stack_bytes % 4 == 0
    # the stand-in's loop runs the same instructions on every input, up to the saturation branches
    assert len(run.instructions_per_inference) == 7
    assert 300 < min(run.instructions_per_inference) <= max(run.instructions_per_inference) < 700


def test_instruction_count_grows_with_the_work(tmp_path):
    """The counter measures the inference: a model with 4x the input bytes runs more instructions."""
    target = get_target("cortex-m4")
    counts = []
    for n_in in (64, 256):
        d = tmp_path / f"m{n_in}"
        write_standin(d, n_in=n_in)
        img = build_firmware(d, target, d / "fw")
        np.zeros((1, n_in), np.int8).tofile(d / "fw" / "input.bin")
        counts.append(run_firmware(img.elf, "mps2-an386", d / "fw", marks=(img.mark_begin, img.mark_end)))
    small, big = counts[0].instructions_per_inference[0], counts[1].instructions_per_inference[0]
    assert 3 * small < big < 5 * small


def test_flash_overflow_fails_at_link_time_with_both_numbers(tmp_path):
    target = get_target("cortex-m4")
    model = write_standin(tmp_path / "model", weights=1_200_000)
    roomy = dataclasses.replace(target, flash_bytes=4 * 1024 * 1024)
    need = build_firmware(model, roomy, tmp_path / "roomy").flash_bytes
    assert need > 1_200_000
    with pytest.raises(BudgetError) as exc:
        build_firmware(model, target, tmp_path / "fw")
    assert exc.value.message == f"model needs {need:,} B of flash; cortex-m4 has 1,048,576 B"
    assert exc.value.exit_code == 3


def test_ram_overflow_names_ram_and_the_stack_reserve(tmp_path):
    target = get_target("cortex-m4")
    img = build_firmware(write_standin(tmp_path / "ok", arena=1024), target, tmp_path / "okfw")
    big_arena = 300_000
    with pytest.raises(BudgetError) as exc:
        build_firmware(write_standin(tmp_path / "model", arena=big_arena), target, tmp_path / "fw")
    static = img.static_ram_bytes - 1024 + big_arena
    need = (static + 7) // 8 * 8 + img.min_stack_bytes  # the stack reserve is 8-byte aligned
    assert exc.value.message == (
        f"model needs {need:,} B of RAM (including {img.min_stack_bytes:,} B of stack); cortex-m4 has 262,144 B"
    )


def test_stm32f405_data_must_fit_its_128_kb_sram_and_the_stack_lives_in_the_ccm_block(tmp_path):
    """192 KB is 128 KB SRAM + 64 KB CCM on the chip (QEMU maps one 192 KB block): a 140 KB arena
    fits the total but not the SRAM, so the link fails; a 120 KB arena links and runs, its stack in the CCM stand-in."""
    target = get_target("stm32f405")
    with pytest.raises(BudgetError) as exc:
        build_firmware(write_standin(tmp_path / "big", arena=140 * 1024), target, tmp_path / "bigfw")
    assert exc.value.message.startswith("model needs 143,")
    assert exc.value.message.endswith(
        "B of RAM in one block (arena, .data, .bss); stm32f405 has 131,072 B of SRAM (its other 65,536 B hold only the stack)"
    )
    img = build_firmware(write_standin(tmp_path / "ok", arena=120 * 1024), target, tmp_path / "okfw")
    assert 120 * 1024 < img.static_ram_bytes < 128 * 1024
    np.zeros((2, IN), np.int8).tofile(tmp_path / "okfw" / "input.bin")
    run = run_firmware(img.elf, "netduinoplus2", tmp_path / "okfw")
    assert run.n_inferences == 2 and 0 < run.stack_bytes < 1024


def test_linker_script_regions_are_the_budget():
    text = render_linker_script(get_target("stm32f405"))
    assert "FLASH (rx)   : ORIGIN = 0x08000000, LENGTH = 1048576" in text
    assert "RAM (rwx)    : ORIGIN = 0x20000000, LENGTH = 131072" in text
    assert "STACKRAM (rw): ORIGIN = 0x20020000, LENGTH = 65536" in text
    assert "RAM (rwx)    : ORIGIN = 0x20000000, LENGTH = 262144" in render_linker_script(get_target("cortex-m4"))
    m55 = render_linker_script(get_target("cortex-m55"))
    assert "VECTORS (rx) : ORIGIN = 0x10000000" in m55


def test_budget_outside_the_machine_memory_is_refused():
    target = dataclasses.replace(get_target("stm32f405"), ram_bytes=256 * 1024)
    with pytest.raises(InputError, match=r"RAM budget 262,144 B at 0x20000000 is not inside the memory of QEMU machine netduinoplus2"):
        render_linker_script(target)


def test_compile_error_is_a_toolchain_error_naming_the_log(tmp_path):
    d = write_standin(tmp_path / "model")
    (d / "broken.c").write_text("int f(void) { return undefined_thing; }\n")
    with pytest.raises(ToolchainError, match=r"arm-none-eabi-gcc failed for cortex-m4: .*undefined_thing.*full log: "):
        build_firmware(d, get_target("cortex-m4"), tmp_path / "fw")


def test_firmware_failure_status_is_explained(tmp_path):
    target = get_target("cortex-m4")
    img = build_firmware(write_standin(tmp_path / "model"), target, tmp_path / "fw")
    (tmp_path / "fw" / "input.bin").write_bytes(b"\x00" * (IN + 3))
    with pytest.raises(ToolchainError, match=r"exited with status 4 \(input.bin is not a whole number of model inputs\)"):
        run_firmware(img.elf, "mps2-an386", tmp_path / "fw")


def test_block_counting_equals_per_instruction_counting(tmp_path):
    """The fast per-translation-block count is the exact per-instruction count."""
    target = get_target("stm32f746")
    img = build_firmware(write_standin(tmp_path / "model"), target, tmp_path / "fw")
    np.random.default_rng(2).integers(-128, 128, (5, IN), dtype=np.int8).tofile(tmp_path / "fw" / "input.bin")
    runs = [
        run_firmware(img.elf, "mps2-an500", tmp_path / "fw", marks=(img.mark_begin, img.mark_end), count_mode=m)
        for m in ("tb", "insn")
    ]
    assert len(runs[0].instructions_per_inference) == 5
    assert runs[0].instructions_per_inference == runs[1].instructions_per_inference


def test_a_plugin_qemu_refuses_falls_back_to_no_instruction_count(tmp_path, monkeypatch):
    """A QEMU with another plugin API must not break the run, only the count."""
    import edgekit.toolchain.qemu as qemu

    bad = tmp_path / "not_a_plugin.so"
    bad.write_bytes(b"not an ELF shared object")
    monkeypatch.setattr(qemu, "plugin_path", lambda cache_dir=None: bad)
    img = build_firmware(write_standin(tmp_path / "model"), get_target("cortex-m4"), tmp_path / "fw")
    np.zeros((2, IN), np.int8).tofile(tmp_path / "fw" / "input.bin")
    run = run_firmware(img.elf, "mps2-an386", tmp_path / "fw", marks=(img.mark_begin, img.mark_end))
    assert run.n_inferences == 2 and run.instructions_per_inference == []


def test_harness_overhead_is_a_few_instructions_and_under_1_5_kb(tmp_path):
    """An empty model measures the harness itself: what every other figure includes."""
    from edgekit.toolchain.mcu_verify import run_on_emulator

    d = tmp_path / "empty"
    d.mkdir()
    (d / "edgekit_model.h").write_text(STANDIN_H.format(n_in=4, n_out=4, arena=0))
    (d / "edgekit_model.c").write_text(
        '#include "edgekit_model.h"\nint edgekit_invoke(const int8_t* in, int8_t* out) { (void)in; (void)out; return 0; }\n'
    )
    out, dev = run_on_emulator(d, get_target("cortex-m4"), np.zeros((3, 4), np.int8), tmp_path / "w")
    assert out.shape == (3, 4)
    assert dev.instructions_per_inference == dev.instructions_min == dev.instructions_max == 8  # at -O2 (5 at -Os)
    assert dev.flash_bytes < 1536
    assert dev.static_ram_bytes == 8  # the 4-byte input and output buffers
    assert dev.arena_bytes == 0


def test_missing_cross_compiler_names_the_tool_and_the_install_script(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ToolchainError) as exc:
        build_firmware(write_standin(tmp_path / "model"), get_target("cortex-m4"), tmp_path / "fw")
    assert exc.value.message == "arm-none-eabi-gcc not found on PATH"
    assert "docker/install-toolchain.sh" in exc.value.hint
    assert exc.value.exit_code == 7
