"""Run bare-metal firmware on ``qemu-system-arm`` with semihosting and parse what it reports.

The firmware (``firmware_templates/aot_bare_metal``) reads ``input.bin`` and
writes ``output.bin`` in QEMU's working directory, prints one
``EDGEKIT-RESULT n=<N> stack=<bytes>`` line, and exits with a status that
becomes QEMU's exit code.

Instructions per inference come from a small TCG plugin
(``plugins/insn_window.c``, built with the host ``gcc`` on first use): it adds
one to a counter for every guest instruction executed and snapshots the counter
when execution reaches ``edgekit_mark_begin`` and ``edgekit_mark_end``, the two
empty functions the harness calls around ``edgekit_invoke``. The count is of
executed guest instructions (exact, not cycles; an empty ``edgekit_invoke``
measures 8 at -O2, the call and the markers); it needs a QEMU built with plugin
support, and a QEMU that refuses the plugin runs without counting.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import InputError, ToolchainError

QEMU = "qemu-system-arm"
INSTALL_HINT = "install it with docker/install-toolchain.sh, or use the image built from docker/Dockerfile"

EXIT_MEANINGS = {
    2: "the firmware could not open input.bin",
    3: "the firmware could not create output.bin",
    4: "input.bin is not a whole number of model inputs",
    5: "short read from input.bin",
    6: "short write to output.bin",
    7: "edgekit_invoke returned an error",
    0x7F: "the CPU faulted (hard fault, bus fault or usage fault)",
}


@dataclass(frozen=True)
class Region:
    """One block of the emulated machine's memory."""

    name: str
    origin: int
    size: int

    def contains(self, origin: int, size: int) -> bool:
        return self.origin <= origin and origin + size <= self.origin + self.size


@dataclass(frozen=True)
class MachineInfo:
    """Facts about a ``qemu-system-arm -M`` machine, read from ``info mtree`` on QEMU 7.2."""

    name: str
    cpu: str
    vector_table: int  # where the CPU reads SP and PC at reset (its reset VTOR)
    regions: tuple[Region, ...]
    # The largest block of data RAM the real chip has, when QEMU maps more in one
    # block than the chip does; RAM of the budget beyond it holds only the stack.
    contiguous_ram: int | None = None

    def check_fits(self, target: str, flash_origin: int, flash_bytes: int, ram_origin: int, ram_bytes: int) -> None:
        """Raise InputError if the target's flash or RAM budget is not backed by this machine's memory."""
        for what, origin, size in (("flash", flash_origin, flash_bytes), ("RAM", ram_origin, ram_bytes)):
            if not any(r.contains(origin, size) for r in self.regions):
                have = ", ".join(f"{r.name} {r.origin:#010x}+{r.size:,}" for r in self.regions)
                raise InputError(
                    f"target {target!r}: {what} budget {size:,} B at {origin:#010x} is not inside the memory of "
                    f"QEMU machine {self.name} ({have})",
                    "fix [emulator] flash_origin/ram_origin or the budget in the target profile",
                )


_MB = 1 << 20
MACHINES: dict[str, MachineInfo] = {
    "mps2-an386": MachineInfo(
        "mps2-an386", "cortex-m4", 0x0,
        (Region("ssram1", 0x00000000, 4 * _MB), Region("ssram23", 0x20000000, 4 * _MB)),
    ),
    "mps2-an500": MachineInfo(
        "mps2-an500", "cortex-m7", 0x0,
        (Region("ssram1", 0x00000000, 4 * _MB), Region("ssram23", 0x20000000, 4 * _MB)),
    ),
    # Corstone-300: the CPU boots secure, so code and data use the secure aliases
    # (bit 28 set); the vector table sits in ITCM, the code in the 2 MB FPGA SRAM.
    "mps3-an547": MachineInfo(
        "mps3-an547", "cortex-m55", 0x10000000,
        (
            Region("itcm", 0x10000000, 512 * 1024),
            Region("fpga-sram", 0x11000000, 2 * _MB),
            Region("dtcm", 0x30000000, 512 * 1024),
            Region("isram", 0x31000000, 4 * _MB),
        ),
    ),
    # QEMU 7.2 models the STM32F405's SRAM as one 192 KB block and has no CCM;
    # the real chip has 128 KB of SRAM at 0x20000000 and 64 KB of CCM at
    # 0x10000000. So data (arena, .bss) must fit 128 KB; the stack goes in the
    # last 64 KB, which stands in for the CCM.
    "netduinoplus2": MachineInfo(
        "netduinoplus2", "cortex-m4", 0x08000000,
        (Region("flash", 0x08000000, 1 * _MB), Region("sram", 0x20000000, 192 * 1024)),
        contiguous_ram=128 * 1024,
    ),
}


def machine_info(machine: str) -> MachineInfo:
    """The facts edgekit knows about a QEMU machine; InputError for one it does not."""
    try:
        return MACHINES[machine]
    except KeyError:
        raise InputError(
            f"QEMU machine {machine!r} is not supported for bare-metal runs",
            f"use one of: {', '.join(sorted(MACHINES))}",
        ) from None


def require_tool(tool: str) -> str:
    """The path of ``tool``, or ToolchainError naming it and the install script."""
    path = shutil.which(tool)
    if path is None:
        raise ToolchainError(f"{tool} not found on PATH", INSTALL_HINT)
    return path


@dataclass
class QemuRun:
    """What one QEMU run reported."""

    machine: str
    exit_code: int
    n_inferences: int
    stack_bytes: int
    instructions_per_inference: list[int] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_PLUGIN_SRC = Path(__file__).resolve().parent / "plugins" / "insn_window.c"
_RESULT = re.compile(r"EDGEKIT-RESULT n=(\d+) stack=(\d+)")


def plugin_path(cache_dir: Path | None = None) -> Path | None:
    """Build (once) and return the instruction-counting plugin, or None when no host gcc or plugin support."""
    if shutil.which("gcc") is None or not _qemu_supports_plugins():
        return None
    src = _PLUGIN_SRC.read_bytes()
    digest = hashlib.sha256(src).hexdigest()[:12]
    cache = cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgekit"
    so = cache / f"insn_window-{digest}.so"
    if so.is_file():
        return so
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home (some CI containers): build it in the temp folder
        cache = Path(tempfile.gettempdir()) / f"edgekit-{os.getuid()}"
        cache.mkdir(parents=True, exist_ok=True)
        so = cache / so.name
    tmp = so.with_suffix(f".{os.getpid()}.tmp")
    proc = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(tmp), str(_PLUGIN_SRC)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise ToolchainError(f"building the QEMU plugin {_PLUGIN_SRC.name} failed: {proc.stderr.strip()[:300]}")
    os.replace(tmp, so)
    return so


_plugin_support: bool | None = None


def _qemu_supports_plugins() -> bool:
    global _plugin_support
    if _plugin_support is None:
        out = subprocess.run([require_tool(QEMU), "-help"], capture_output=True, text=True).stdout
        _plugin_support = "-plugin" in out
    return _plugin_support


def run_firmware(
    elf: Path,
    machine: str,
    run_dir: Path,
    *,
    marks: tuple[int, int] | None = None,
    timeout_s: float = 600.0,
    count_mode: str = "tb",
) -> QemuRun:
    """Run ``elf`` on ``machine`` with ``run_dir`` as the semihosting working directory.

    ``run_dir`` must hold ``input.bin``; ``output.bin`` appears there. With
    ``marks`` (the addresses of ``edgekit_mark_begin``/``end``) and plugin
    support, instructions per inference are counted, per translation block
    (``count_mode="tb"``, fast) or per instruction (``"insn"``, the plain
    definition; both give the same numbers while no exception interrupts an
    inference). Raises ToolchainError when
    QEMU is missing, times out, or the firmware exits with a non-zero status.
    """
    qemu = require_tool(QEMU)
    machine_info(machine)
    cmd = [
        qemu, "-M", machine, "-nographic", "-monitor", "none", "-serial", "none",
        "-semihosting-config", "enable=on,target=native", "-kernel", str(Path(elf).resolve()),
    ]
    counts_file = run_dir / "insn_counts.txt"
    plugin = plugin_path() if marks else None
    if count_mode not in ("tb", "insn"):
        raise InputError(f"count_mode must be 'tb' or 'insn', not {count_mode!r}")
    if plugin is not None:
        counts_file.unlink(missing_ok=True)
        cmd += [
            "-plugin",
            f"{plugin},begin={marks[0]:#x},end={marks[1]:#x},out={counts_file.resolve()},mode={count_mode}",
        ]
    try:
        proc = subprocess.run(cmd, cwd=run_dir, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ToolchainError(
            f"{QEMU} -M {machine} did not finish {Path(elf).name} within {timeout_s:.0f} s",
            "the firmware may hang; run it by hand with the same command to debug",
        ) from None
    match = _RESULT.search(proc.stdout) or _RESULT.search(proc.stderr)
    if plugin is not None and match is None and "plugin" in proc.stderr.lower():
        # A QEMU whose plugin API differs from 7.2's refuses the plugin: run without counting.
        return run_firmware(elf, machine, run_dir, marks=None, timeout_s=timeout_s)
    if proc.returncode != 0 or match is None:
        meaning = EXIT_MEANINGS.get(proc.returncode, "unexpected status")
        tail = (proc.stderr.strip() or proc.stdout.strip())[-300:]
        raise ToolchainError(
            f"{Path(elf).name} on {QEMU} -M {machine} exited with status {proc.returncode} ({meaning})"
            + (f": {tail}" if tail else ""),
            f"command: {' '.join(cmd)}",
        )
    counts: list[int] = []
    if plugin is not None and counts_file.is_file():
        counts = [int(v) for v in counts_file.read_text().split()]
    return QemuRun(
        machine=machine,
        exit_code=proc.returncode,
        n_inferences=int(match.group(1)),
        stack_bytes=int(match.group(2)),
        instructions_per_inference=counts,
        stdout=proc.stdout,
        stderr=proc.stderr,
    )
