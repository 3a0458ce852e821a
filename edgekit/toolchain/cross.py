"""Cross-compile edgekit's generated C with the bare-metal harness into a firmware ELF.

Flags come from the target profile (``-mcpu``, ``-mfpu``, ``-mfloat-abi``;
always ``-mthumb -O2``: the kernels' inner loops are where the time goes, and -O2
is how the TFLM builds edgekit is compared with were made); the linker script's regions are the target's budget
(:mod:`edgekit.toolchain.linker`), so an overflow fails here and becomes a
BudgetError with both numbers.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgekit.errors import BudgetError, InputError, ToolchainError
from edgekit.resources import templates_dir
from edgekit.targets import TargetProfile
from edgekit.toolchain.linker import DEFAULT_MIN_STACK_BYTES, TEMPLATE_DIR, split_ram, write_linker_script
from edgekit.toolchain.qemu import INSTALL_HINT, require_tool

GCC = "arm-none-eabi-gcc"
HARNESS_SOURCES = ("main.c", "startup.c")
_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")


@dataclass(frozen=True)
class FirmwareImage:
    """A linked firmware ELF and its static memory use, read from the ELF's sections."""

    elf: Path
    target: str
    flash_bytes: int  # every section stored in the image: vectors, code, read-only data (weights), .data's initial values
    static_ram_bytes: int  # every section in RAM but the stack: .data + .bss (the arena, the I/O buffers)
    min_stack_bytes: int
    sections: dict[str, int]
    mark_begin: int
    mark_end: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["elf"] = str(self.elf)
        return d


def cpu_flags(target: TargetProfile) -> list[str]:
    """The compiler's CPU flags for ``target``."""
    tc = target.toolchain
    if tc is None:
        raise InputError(f"target {target.name!r} has no [toolchain] table", "only tflm targets can be cross-compiled")
    return ["-mthumb", f"-mcpu={tc.mcpu}", f"-mfpu={tc.mfpu}", f"-mfloat-abi={tc.mfloat_abi}"]


def build_firmware(
    codegen_dir: Path,
    target: TargetProfile,
    out_dir: Path,
    *,
    min_stack_bytes: int = DEFAULT_MIN_STACK_BYTES,
    extra_cflags: tuple[str, ...] = (),
) -> FirmwareImage:
    """Compile every ``*.c`` in ``codegen_dir`` with the harness and link ``out_dir/firmware.elf``.

    Raises BudgetError when the image does not fit the target's flash or RAM
    (RAM includes ``min_stack_bytes`` of stack), ToolchainError when the
    cross-compiler is missing or the compile fails.
    """
    gcc = require_tool(GCC)
    codegen_dir = Path(codegen_dir).resolve()
    if not (codegen_dir / "edgekit_model.h").is_file():
        raise InputError(f"{codegen_dir}: no edgekit_model.h", "run `edgekit codegen` on the model first")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    harness = templates_dir() / TEMPLATE_DIR
    ld = write_linker_script(target, out_dir / "linker.ld", min_stack_bytes=min_stack_bytes)
    elf = out_dir / "firmware.elf"
    sources = sorted(str(p) for p in codegen_dir.glob("*.c")) + [str(harness / s) for s in HARNESS_SOURCES]
    cmd = [
        gcc, *cpu_flags(target), "-O2", "-std=gnu11", "-g", "-ffunction-sections", "-fdata-sections",
        "-fno-common", *extra_cflags, f"-I{codegen_dir}", f"-I{harness}", *sources,
        "-nostartfiles", "--specs=nano.specs", f"-T{ld}", "-Wl,--gc-sections", "-lm", f"-Wl,-Map={out_dir / 'firmware.map'}",
        "-o", str(elf),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=out_dir)
    (out_dir / "build.log").write_text(" ".join(cmd) + "\n" + proc.stdout + proc.stderr)
    if proc.returncode != 0:
        _raise_build_error(proc.stderr, target, min_stack_bytes, out_dir)
    flash, static_ram, sections = _measure(elf, target)
    begin, end = _symbol_address(elf, "edgekit_mark_begin"), _symbol_address(elf, "edgekit_mark_end")
    return FirmwareImage(
        elf=elf,
        target=target.name,
        flash_bytes=flash,
        static_ram_bytes=static_ram,
        min_stack_bytes=min_stack_bytes,
        sections=sections,
        mark_begin=begin,
        mark_end=end,
    )


def _raise_build_error(stderr: str, target: TargetProfile, min_stack_bytes: int, out_dir: Path) -> None:
    overflows = {m.group(1): int(m.group(2)) for m in _OVERFLOW.finditer(stderr)}
    parts = []
    if "FLASH" in overflows:
        parts.append(
            f"model needs {target.flash_bytes + overflows['FLASH']:,} B of flash; {target.name} has {target.flash_bytes:,} B"
        )
    data_ram, stack_ram = split_ram(target)
    if "RAM" in overflows and stack_ram:
        parts.append(
            f"model needs {data_ram + overflows['RAM']:,} B of RAM in one block (arena, .data, .bss); "
            f"{target.name} has {data_ram:,} B of SRAM (its other {stack_ram:,} B hold only the stack)"
        )
    elif "RAM" in overflows:
        parts.append(
            f"model needs {target.ram_bytes + overflows['RAM']:,} B of RAM (including {min_stack_bytes:,} B of stack); "
            f"{target.name} has {target.ram_bytes:,} B"
        )
    if "STACKRAM" in overflows:
        parts.append(f"the {min_stack_bytes:,} B minimum stack does not fit {target.name}'s {stack_ram:,} B stack block")
    if parts:
        raise BudgetError(
            "; ".join(parts),
            "compress the model (prune, cluster, smaller width) or choose a target with more memory",
        )
    first = next((ln for ln in stderr.splitlines() if "error:" in ln), stderr.strip()[:300])
    raise ToolchainError(f"{GCC} failed for {target.name}: {first.strip()}", f"full log: {out_dir / 'build.log'}")


@dataclass(frozen=True)
class Section:
    """One allocated section of the ELF, as ``objdump -h`` lists it."""

    name: str
    size: int
    vma: int
    load: bool  # has contents stored in the image (flash), not only reserved space


def sections_of(elf: Path) -> list[Section]:
    """The allocated (ALLOC) sections of ``elf``, in address order."""
    lines = _run_tool("arm-none-eabi-objdump", ["-h", str(elf)]).splitlines()
    out = []
    for head, flags in zip(lines, lines[1:]):
        parts = head.split()
        if len(parts) == 7 and parts[0].isdigit() and "ALLOC" in flags:
            out.append(Section(parts[1], int(parts[2], 16), int(parts[3], 16), "LOAD" in flags))
    return out


def _measure(elf: Path, target: TargetProfile) -> tuple[int, int, dict[str, int]]:
    """Flash bytes (every section stored in the image), static RAM bytes (every section in RAM but
    the stack reserve) and the section sizes."""
    secs = sections_of(elf)
    ram_lo = target.emulator.ram_origin
    ram_hi = ram_lo + target.ram_bytes
    flash = sum(s.size for s in secs if s.load)
    ram = sum(s.size for s in secs if ram_lo <= s.vma < ram_hi and s.name != ".stack_reserve")
    return flash, ram, {s.name: s.size for s in secs}


def _symbol_address(elf: Path, name: str) -> int:
    for line in _run_tool("arm-none-eabi-nm", [str(elf)]).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16) & ~1
    raise ToolchainError(f"{elf.name}: symbol {name} not found", "the harness in firmware_templates/aot_bare_metal is damaged")


def _run_tool(tool: str, args: list[str]) -> str:
    proc = subprocess.run([require_tool(tool), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolchainError(f"{tool} {' '.join(args)} failed: {proc.stderr.strip()[:200]}", INSTALL_HINT)
    return proc.stdout
