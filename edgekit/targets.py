"""Board profiles: ``targets/*.toml`` loaded into one validated dataclass.

A profile names the board's RAM and flash budget, CPU, the runtime edgekit
deploys to (``litert`` on Linux boards, ``tflm`` on microcontrollers), the
compiler flags for its CPU and the emulator that stands in for it.
Unknown keys are refused with the closest valid one suggested.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgekit.errors import InputError
from edgekit.resources import targets_dir

RUNTIMES = ("litert", "tflm")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


@dataclass(frozen=True)
class Toolchain:
    """Cross-compiler flags for a microcontroller's CPU."""

    mcpu: str
    mfpu: str = "auto"
    mfloat_abi: str = "hard"


@dataclass(frozen=True)
class Emulator:
    """How edgekit emulates the board.

    ``kind`` is ``qemu-system`` (bare-metal firmware, ``machine`` a
    ``qemu-system-arm -M`` name) or ``qemu-user`` (Linux user mode,
    ``cpu`` the ``QEMU_CPU`` to pin).
    """

    kind: str
    machine: str
    cpu: str | None = None
    flash_origin: int | None = None
    ram_origin: int | None = None


@dataclass(frozen=True)
class TargetProfile:
    """One board: its budget, CPU, runtime and emulator."""

    name: str
    description: str
    runtime: str
    cpu: str
    arch: str
    ram_bytes: int
    flash_bytes: int
    note: str = ""
    toolchain: Toolchain | None = None
    emulator: Emulator | None = None
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = self.source or repr(self.name)
        # these reach folder names, Makefiles and compiler flags: plain tokens only
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise InputError(f"{where}: target name {self.name!r} is not an identifier",
                             "use letters, digits, '-', '_' and '.', starting with a letter or digit, at most 64 characters")
        tokens = {"cpu": self.cpu, "arch": self.arch}
        if self.toolchain is not None:
            tokens.update({f"toolchain.{k}": getattr(self.toolchain, k) for k in ("mcpu", "mfpu", "mfloat_abi")})
        if self.emulator is not None:
            tokens.update({"emulator.kind": self.emulator.kind, "emulator.machine": self.emulator.machine, "emulator.cpu": self.emulator.cpu})
        for key, value in tokens.items():
            if value is not None and (not isinstance(value, str) or not _TOKEN.fullmatch(value)):
                raise InputError(f"{where}: {key} {value!r} is not a plain name", "use letters, digits, '-', '_', '.' and '+'")
        if self.runtime not in RUNTIMES:
            raise InputError(f"{where}: runtime must be one of {', '.join(RUNTIMES)}, not {self.runtime!r}")
        for key in ("ram_bytes", "flash_bytes"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InputError(f"{where}: {key} must be a positive integer number of bytes, not {value!r}")
        if self.runtime == "tflm" and self.toolchain is None:
            raise InputError(f"{where}: a tflm target needs a [toolchain] table with at least mcpu")

    @property
    def is_mcu(self) -> bool:
        """True for microcontroller targets (TFLM runtime)."""
        return self.runtime == "tflm"

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain data (for reports and ``--json``)."""
        d = asdict(self)
        d.pop("source")
        return d


def _check_keys(table: dict[str, Any], cls: type, where: str, section: str) -> None:
    allowed = [f.name for f in fields(cls) if f.name != "source"]
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(allowed)}"
            raise InputError(f"{where}: unknown key {section}{key!r}", hint)


def _from_dict(raw: dict[str, Any], where: str) -> TargetProfile:
    _check_keys(raw, TargetProfile, where, "")
    raw = dict(raw)
    try:
        if "toolchain" in raw:
            _check_keys(raw["toolchain"], Toolchain, where, "toolchain.")
            raw["toolchain"] = Toolchain(**raw["toolchain"])
        if "emulator" in raw:
            _check_keys(raw["emulator"], Emulator, where, "emulator.")
            raw["emulator"] = Emulator(**raw["emulator"])
        return TargetProfile(**raw, source=where)
    except TypeError as exc:  # a required key is missing
        raise InputError(f"{where}: {exc}".replace("__init__() ", ""), "see targets/README.md for the schema") from None


def load_profile_file(path: Path) -> TargetProfile:
    """Load one profile from a TOML file; refuse it with a one-line error if malformed."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: target profile not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a valid TOML target profile: {exc}") from None
    return _from_dict(raw, str(path))


def available() -> list[str]:
    """Names of the bundled profiles, sorted."""
    return sorted(p.stem for p in targets_dir().glob("*.toml"))


def get_target(name_or_path: str | Path) -> TargetProfile:
    """A bundled profile by name (``cortex-m4``) or a user's profile by path (``my_board.toml``)."""
    text = str(name_or_path)
    path = Path(text)
    if text.endswith(".toml") or path.is_file():
        return load_profile_file(path)
    bundled = targets_dir() / f"{text}.toml"
    if not bundled.is_file():
        names = available()
        close = difflib.get_close_matches(text, names, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "run `edgekit targets` for the list"
        raise InputError(f"unknown target {text!r}; known targets: {', '.join(names)}", hint)
    return load_profile_file(bundled)


def all_targets() -> list[TargetProfile]:
    """Every bundled profile, sorted by name."""
    return [get_target(n) for n in available()]
