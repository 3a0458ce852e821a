"""Cross-compile edgekit's generated C with the bare-metal harness into a firmware ELF.

Flags come from the target profile (``-mcpu``, ``-mfpu``, ``-mfloat-abi``;
always ``-mthumb -Os``); the linker script's regions are the target's budget
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
from edgekit.toolchain.linker import DEFAULT_MIN_STACK_BYTES, TEMPLATE_DIR, write_linker_script
from edgekit.toolchain.qemu import INSTALL_HINT, require_tool

GCC = "arm-none-eabi-gcc"
HARNESS_SOURCES = ("main.c", "startup.c")
FLASH_SECTIONS = (".isr_vector", ".text", ".rodata", ".ARM.extab", ".ARM.exidx", ".data")
_NOT_LOADED = (".debug", ".comment", ".ARM.attributes", ".stab")
_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")


@dataclass(frozen=True)
class FirmwareImage:
    """A linked firmware ELF and its static memory use, read from the ELF's sections."""

    elf: Path
    target: str
    flash_bytes: int  # everything stored in flash: vectors, code, read-only data (weights), .data's initial values
    static_ram_bytes: int  # .data + .bss (the arena and the harness's I/O buffers live in .bss)
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
        gcc, *cpu_flags(target), "-Os", "-std=gnu11", "-g", "-ffunction-sections", "-fdata-sections",
        "-fno-common", *extra_cflags, f"-I{codegen_dir}", f"-I{harness}", *sources,
        "-nostartfiles", "--specs=nano.specs", f"-T{ld}", "-Wl,--gc-sections", f"-Wl,-Map={out_dir / 'firmware.map'}",
        "-o", str(elf),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=out_dir)
    (out_dir / "build.log").write_text(" ".join(cmd) + "\n" + proc.stdout + proc.stderr)
    if proc.returncode != 0:
        _raise_build_error(proc.stderr, target, min_stack_bytes, out_dir)
    sections = section_sizes(elf)
    begin, end = _symbol_address(elf, "edgekit_mark_begin"), _symbol_address(elf, "edgekit_mark_end")
    return FirmwareImage(
        elf=elf,
        target=target.name,
        flash_bytes=sum(sections.get(s, 0) for s in FLASH_SECTIONS),
        static_ram_bytes=sections.get(".data", 0) + sections.get(".bss", 0),
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
    if "RAM" in overflows:
        parts.append(
            f"model needs {target.ram_bytes + overflows['RAM']:,} B of RAM (including {min_stack_bytes:,} B of stack); "
            f"{target.name} has {target.ram_bytes:,} B"
        )
    if parts:
        raise BudgetError(
            "; ".join(parts),
            "compress the model (prune, cluster, smaller width) or choose a target with more memory",
        )
    first = next((ln for ln in stderr.splitlines() if "error:" in ln), stderr.strip()[:300])
    raise ToolchainError(f"{GCC} failed for {target.name}: {first.strip()}", f"full log: {out_dir / 'build.log'}")


def section_sizes(elf: Path) -> dict[str, int]:
    """Allocated section sizes of ``elf`` in bytes (``arm-none-eabi-size -A``)."""
    out = _run_tool("arm-none-eabi-size", ["-A", "-d", str(elf)])
    sizes: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit() and parts[2].isdigit():
            if not parts[0].startswith(_NOT_LOADED):
                sizes[parts[0]] = int(parts[1])
    return sizes


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
