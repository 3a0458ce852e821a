"""The linker script for a target: FLASH and RAM regions are the target's budget.

The emulated boards have more memory than the targets they stand in for
(mps2-an386 has 4 MB of each); the linker script, not the board, enforces the
budget, so a model that does not fit fails at link time with the overflow.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from edgekit.errors import InputError
from edgekit.resources import templates_dir
from edgekit.targets import TargetProfile
from edgekit.toolchain.qemu import machine_info

TEMPLATE_DIR = "aot_bare_metal"
DEFAULT_MIN_STACK_BYTES = 2048


def render_linker_script(target: TargetProfile, *, min_stack_bytes: int = DEFAULT_MIN_STACK_BYTES) -> str:
    """The GNU ld script for ``target``: its flash and RAM budget at the emulator's addresses.

    Raises InputError when the target has no qemu-system emulator or its budget
    does not fit the emulated machine's memory at the configured origins.
    """
    emu = target.emulator
    if emu is None or emu.kind != "qemu-system" or emu.flash_origin is None or emu.ram_origin is None:
        raise InputError(
            f"target {target.name!r} has no qemu-system emulator with flash_origin and ram_origin",
            "add an [emulator] table with kind = \"qemu-system\" to its profile",
        )
    info = machine_info(emu.machine)
    info.check_fits(target.name, emu.flash_origin, target.flash_bytes, emu.ram_origin, target.ram_bytes)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir() / TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    data_ram, stack_ram = split_ram(target)
    return env.get_template("linker.ld.j2").render(
        target_name=target.name,
        machine=emu.machine,
        vectors_origin=info.vector_table if info.vector_table != emu.flash_origin else None,
        flash_origin=emu.flash_origin,
        flash_bytes=target.flash_bytes,
        ram_origin=emu.ram_origin,
        ram_bytes=data_ram,
        stack_ram_origin=emu.ram_origin + data_ram if stack_ram else None,
        stack_ram_bytes=stack_ram,
        min_stack_bytes=min_stack_bytes,
    )


def split_ram(target: TargetProfile) -> tuple[int, int]:
    """Bytes of the RAM budget for data (arena, .data, .bss, and the stack when not split) and for a stack-only block.

    The second is 0 unless the chip's data RAM is smaller than the budget
    (STM32F405: 128 KB SRAM + 64 KB CCM that holds the stack).
    """
    limit = machine_info(target.emulator.machine).contiguous_ram
    if limit is None or target.ram_bytes <= limit:
        return target.ram_bytes, 0
    return limit, target.ram_bytes - limit


def write_linker_script(target: TargetProfile, path: Path, *, min_stack_bytes: int = DEFAULT_MIN_STACK_BYTES) -> Path:
    """Write :func:`render_linker_script` to ``path`` and return it."""
    path.write_text(render_linker_script(target, min_stack_bytes=min_stack_bytes))
    return path
