"""Build and cache the aarch64 root that emulated Pi runs use.

Everything comes from registries, with the host's package tools, and nothing on
the host changes (no dpkg architecture, no binfmt, no chroot, no Docker):

- Debian's arm64 ``python3.11`` and its run-time dependencies are fetched with
  ``apt-get download`` under a private apt configuration
  (``APT::Architecture "arm64"``, its own state, cache and sources), then
  unpacked with ``dpkg-deb --fsys-tarfile | tar -x --keep-directory-symlink``
  into a root whose ``bin``, ``sbin`` and ``lib`` are links to ``usr/`` as on
  a merged-/usr system (``dpkg -x`` would replace those links by folders).
  Packages only maintainer scripts need (dpkg, perl, tar, ...) are left out:
  nothing is ever configured.
- The aarch64 wheels of each runtime leg come from the host's pip with
  ``--target``, ``--only-binary=:all:``, ``--python-version 3.11`` and every
  manylinux aarch64 tag up to Debian 12's glibc 2.36 listed explicitly (pip
  does not fall back to older manylinux tags for a foreign platform).
  The ``litert`` leg uses the host's own ai-edge-litert and numpy versions, so
  the emulated runtime is the one the host verified with; the
  ``tflite_runtime`` leg uses tflite-runtime 2.14.0 with numpy 1.26.4.
- Each emulated CPU gets a view of the root (hard links) with its own
  ``/proc/cpuinfo``: LiteRT segfaults under QEMU when it reads the host's
  x86 one.

Layout under ``$EDGEKIT_CACHE`` (default ``~/.cache/edgekit``, or under ``$XDG_CACHE_HOME``)::

    aarch64-root-<stamp>/
      sysroot/          the unpacked Debian packages
      cpus/<cpu>/       sysroot + proc/cpuinfo of the board with that CPU
      site/<leg>/       aarch64 wheels for one runtime leg (PYTHONPATH)
      host-site/<leg>/  host wheels for the same leg, when the host lacks them

``<stamp>`` hashes everything that decides the contents; a changed stamp is a
new folder, and each part is built in a temporary folder and renamed into
place, so an interrupted build is never mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import InputError, ToolchainError

ROOT_FORMAT = 1  # bump when the layout or the recipe below changes
DEBIAN_SUITE = "bookworm"  # Debian 12: python3.11, glibc 2.36, like Raspberry Pi OS (bookworm)
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
ROOT_PACKAGES = ("python3.11", "libstdc++6")
# Needed only by maintainer scripts, which an unpacked root never runs.
INSTALL_TIME_ONLY = frozenset({"dpkg", "install-info", "perl-base", "perl", "tar", "debconf", "mime-support", "mailcap"})
GLIBC = (2, 36)
PYTHON_VERSION = "3.11"
APT_INSTALL_HINT = "edgekit fetches Debian arm64 packages with apt-get and dpkg-deb: run on Debian/Ubuntu, or use the image from docker/Dockerfile"
QEMU_INSTALL_HINT = "install it with `apt-get install qemu-user-static`, or run docker/install-toolchain.sh"

# /proc/cpuinfo of the board each CPU stands for (one block per core, as the kernel prints it).
_CPUINFO = {
    "cortex-a72": ("108.00", "fp asimd evtstrm crc32 cpuid", "0x0", "0xd08", "3",
                   "BCM2835", "c03111", "Raspberry Pi 4 Model B Rev 1.1"),
    "cortex-a76": ("108.00", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
                   "0x4", "0xd0b", "1", "BCM2712", "d04170", "Raspberry Pi 5 Model B Rev 1.0"),
    "cortex-a53": ("38.40", "fp asimd evtstrm crc32 cpuid", "0x0", "0xd03", "4",
                   "BCM2835", "902120", "Raspberry Pi Zero 2 W Rev 1.0"),
}
SUPPORTED_CPUS = tuple(sorted(_CPUINFO))


def cpuinfo_text(cpu: str) -> str:
    """The ``/proc/cpuinfo`` of the Raspberry Pi whose CPU is ``cpu``; InputError for other CPUs."""
    check_cpu(cpu)
    bogomips, features, variant, part, revision, hardware, board_rev, model = _CPUINFO[cpu]
    blocks = [
        f"processor\t: {i}\nBogoMIPS\t: {bogomips}\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {revision}\n"
        for i in range(4)
    ]
    return "\n".join(blocks) + f"\nHardware\t: {hardware}\nRevision\t: {board_rev}\nSerial\t\t: 0000000000000000\nModel\t\t: {model}\n"


def check_cpu(cpu: str | None) -> str:
    """``cpu`` if edgekit can emulate a Pi with it, else InputError listing the supported names."""
    if cpu not in _CPUINFO:
        raise InputError(
            f"unsupported emulated Pi CPU {cpu!r}; supported: {', '.join(SUPPORTED_CPUS)}",
            "set [emulator] cpu in the target profile to one of them (rpi4: cortex-a72, rpi5: cortex-a76, rpi-zero-2w: cortex-a53)",
        )
    return cpu


def _host_version(dist: str, fallback: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return fallback


def leg_requirements() -> dict[str, tuple[str, ...]]:
    """The pinned wheels of each runtime leg (``litert`` follows the host's versions)."""
    return {
        "litert": (f"ai-edge-litert=={_host_version('ai-edge-litert', '2.3.0')}", f"numpy=={_host_version('numpy', '2.4.6')}"),
        "tflite_runtime": ("tflite-runtime==2.14.0", "numpy==1.26.4"),
    }


LEGS = ("litert", "tflite_runtime")


def check_leg(leg: str) -> str:
    """``leg`` if it is a known runtime leg, else InputError."""
    if leg not in LEGS:
        raise InputError(f"unknown runtime leg {leg!r}; choose from {', '.join(LEGS)}")
    return leg


def cache_dir() -> Path:
    """``$EDGEKIT_CACHE``, else ``$XDG_CACHE_HOME/edgekit``, else ``~/.cache/edgekit``."""
    if os.environ.get("EDGEKIT_CACHE"):
        return Path(os.environ["EDGEKIT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgekit"


def stamp() -> str:
    """12 hex digits naming the root's contents: format, Debian suite, packages, wheels, cpuinfo."""
    spec = {
        "format": ROOT_FORMAT, "suite": DEBIAN_SUITE, "packages": ROOT_PACKAGES,
        "skip": sorted(INSTALL_TIME_ONLY), "legs": leg_requirements(), "glibc": GLIBC, "cpuinfo": _CPUINFO,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def manylinux_aarch64_tags() -> list[str]:
    """Every manylinux aarch64 platform tag a glibc-2.36 system accepts, newest first."""
    tags = [f"manylinux_2_{minor}_aarch64" for minor in range(GLIBC[1], 16, -1)]
    return tags + ["manylinux2014_aarch64"]


def require_tool(name: str, hint: str) -> str:
    """The path of command ``name``, or ToolchainError naming it and how to install it."""
    path = shutil.which(name)
    if path is None:
        raise ToolchainError(f"{name} not found on PATH; emulated Pi verification needs it", hint)
    return path


def _first_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    fetch = [ln for ln in lines if "Failed to fetch" in ln]
    errors = [ln for ln in lines if ln.startswith(("E:", "ERROR:", "error:"))]
    return (fetch[:1] or errors or lines or ["no output"])[-1][:300]


@dataclass(frozen=True)
class AArch64Root:
    """A finished (cached) aarch64 root: see the module docstring for the layout."""

    path: Path

    @property
    def sysroot(self) -> Path:
        return self.path / "sysroot"

    @property
    def python(self) -> Path:
        """The aarch64 interpreter (run it under qemu-aarch64-static with a ``cpu_root`` prefix)."""
        return self.sysroot / "usr" / "bin" / f"python{PYTHON_VERSION}"

    def site(self, leg: str) -> Path:
        return self.path / "site" / check_leg(leg)

    def cpu_root(self, cpu: str) -> Path:
        return self.path / "cpus" / check_cpu(cpu)

    def size_bytes(self) -> int:
        """Disk use of the cached root (hard links counted once)."""
        seen: set[tuple[int, int]] = set()
        total = 0
        for p in self.path.rglob("*"):
            st = p.lstat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
        return total


class _Apt:
    """apt-get and apt-cache under a private arm64 configuration in ``folder``."""

    def __init__(self, folder: Path):
        self.folder = folder
        mirror = os.environ.get("EDGEKIT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
        security = os.environ.get("EDGEKIT_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
        for sub in ("etc/sources.list.d", "etc/preferences.d", "state/lists/partial", "cache/archives/partial", "debs"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / "state" / "status").touch()
        opts = f"arch=arm64 signed-by={DEBIAN_KEYRING}"
        (folder / "etc" / "sources.list").write_text(
            f"deb [{opts}] {mirror} {DEBIAN_SUITE} main\n"
            f"deb [{opts}] {mirror} {DEBIAN_SUITE}-updates main\n"
            f"deb [{opts}] {security} {DEBIAN_SUITE}-security main\n"
        )
        self.options = [
            "-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64",
            "-o", f"Dir::State={folder / 'state'}", "-o", f"Dir::State::status={folder / 'state' / 'status'}",
            "-o", f"Dir::Cache={folder / 'cache'}", "-o", f"Dir::Etc::SourceList={folder / 'etc' / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={folder / 'etc' / 'sources.list.d'}",
            "-o", f"Dir::Etc::Preferences={folder / 'etc' / 'preferences'}",
            "-o", f"Dir::Etc::PreferencesParts={folder / 'etc' / 'preferences.d'}",
            "-o", "Debug::NoLocking=1", "-o", "Acquire::Retries=3",
        ]
        if os.geteuid() == 0:  # apt's _apt sandbox user cannot write to a private folder
            self.options += ["-o", "APT::Sandbox::User=root"]

    def _run(self, tool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([tool, *self.options, *args], capture_output=True, text=True, cwd=cwd, timeout=900)

    def update(self) -> None:
        proc = self._run("apt-get", "update")
        if proc.returncode != 0 or "Failed to fetch" in proc.stderr or "W: Some index files failed" in proc.stderr:
            raise ToolchainError(
                f"could not download the Debian {DEBIAN_SUITE} arm64 package lists: {_first_error_line(proc.stderr)}",
                "check network access to deb.debian.org, or set EDGEKIT_DEBIAN_MIRROR to a Debian mirror",
            )

    def _depends(self, packages: list[str]) -> dict[str, list[list[str]]]:
        """Each package's Depends/PreDepends as groups of alternatives (virtual packages expanded to providers)."""
        proc = self._run("apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts",
                         "--no-breaks", "--no-replaces", "--no-enhances", *packages)
        if proc.returncode != 0:
            raise ToolchainError(f"Debian arm64 package not found: {_first_error_line(proc.stderr)}", "check the package name and the mirror")
        deps: dict[str, list[list[str]]] = {}
        current: list[list[str]] = []
        group: list[str] = []
        in_virtual = False
        for line in proc.stdout.splitlines():
            if not line.startswith(" "):
                current = deps.setdefault(line.strip(), [])
                group, in_virtual = [], False
                continue
            if line.startswith("    "):  # a provider of the virtual package above
                if in_virtual:
                    group.append(line.strip())
                continue
            kind, _, name = line.strip().lstrip("|").partition(": ")
            in_virtual = False
            if kind not in ("Depends", "PreDepends"):
                continue
            if name.startswith("<"):
                in_virtual = True
            else:
                group.append(name)
            if not line.startswith(" |"):  # the last alternative of its group
                current.append(group)
                group = []
        return deps

    def closure(self, roots: tuple[str, ...]) -> list[str]:
        """``roots`` and their run-time dependencies, first alternative of each group, sorted."""
        chosen: set[str] = set()
        todo = list(roots)
        while todo:
            todo = [p for p in dict.fromkeys(todo) if p not in chosen]
            if not todo:
                break
            chosen.update(todo)
            wanted = []
            deps = self._depends(todo)
            unknown = [p for p in todo if p not in deps]
            if unknown:
                raise ToolchainError(
                    f"Debian {DEBIAN_SUITE} arm64 package(s) not found: {', '.join(unknown)}",
                    "check the package name, the network and EDGEKIT_DEBIAN_MIRROR",
                )
            for groups in deps.values():
                for group in groups:
                    if not group or any(p in chosen for p in group):
                        continue
                    usable = [p for p in group if p not in INSTALL_TIME_ONLY]
                    if usable:
                        wanted.append(usable[0])
            todo = wanted
        return sorted(chosen)

    def download(self, packages: list[str]) -> list[Path]:
        dest = self.folder / "debs"
        proc = self._run("apt-get", "download", *packages, cwd=dest)
        debs = sorted(dest.glob("*.deb"))
        if proc.returncode != 0 or len(debs) < len(packages):
            got = {d.name.split("_", 1)[0] for d in debs}
            missing = [p for p in packages if p not in got]
            raise ToolchainError(
                f"could not download Debian arm64 package(s) {', '.join(missing) or '?'}: {_first_error_line(proc.stderr)}",
                "check network access to deb.debian.org, or set EDGEKIT_DEBIAN_MIRROR",
            )
        return debs


def _unpack(debs: list[Path], sysroot: Path) -> None:
    for sub in ("usr/bin", "usr/sbin", "usr/lib"):
        (sysroot / sub).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "sbin", "lib"):
        (sysroot / link).symlink_to(f"usr/{link}")
    for deb in debs:
        extract = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        untar = subprocess.run(["tar", "-x", "--keep-directory-symlink", "-C", str(sysroot)], stdin=extract.stdout, capture_output=True)
        extract.stdout.close()
        if extract.wait() != 0 or untar.returncode != 0:
            raise ToolchainError(f"could not unpack {deb.name}: {_first_error_line(untar.stderr.decode(errors='replace'))}", APT_INSTALL_HINT)
    # no /proc (each CPU view adds its own cpuinfo) and no /tmp: paths missing here fall through to the host's
    for name in ("proc", "tmp"):
        if (sysroot / name).exists():
            shutil.rmtree(sysroot / name)


def _pip_target(dest: Path, requirements: tuple[str, ...], *, aarch64: bool) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--disable-pip-version-check", "--no-cache-dir",
           "--target", str(dest), "--only-binary=:all:"]
    if aarch64:
        cmd += ["--python-version", PYTHON_VERSION, "--implementation", "cp", "--abi", "cp311"]
        for tag in manylinux_aarch64_tags():
            cmd += ["--platform", tag]
    proc = subprocess.run(cmd + list(requirements), capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        where = "aarch64" if aarch64 else "host"
        raise ToolchainError(
            f"could not download the {where} wheels {', '.join(requirements)}: {_first_error_line(proc.stderr)}",
            "check network access to PyPI (pip's index settings apply)",
        )


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        shutil.copy2(src, dst)


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished part into place; if another process got there first, keep theirs."""
    try:
        tmp.rename(final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def download_debs(packages: tuple[str, ...], work: Path) -> list[Path]:
    """Download Debian arm64 ``packages`` and their run-time dependencies into ``work/debs``.

    Uses a private apt configuration in ``work`` (the host's dpkg and apt
    state are not touched). Raises ToolchainError naming a missing tool, a
    package that does not exist or a download that failed.
    """
    for tool in ("apt-get", "apt-cache", "dpkg-deb", "tar"):
        require_tool(tool, APT_INSTALL_HINT)
    if not DEBIAN_KEYRING.is_file():
        raise ToolchainError(f"{DEBIAN_KEYRING} not found; it verifies the Debian arm64 packages",
                             "install it with `apt-get install debian-archive-keyring`")
    apt = _Apt(work)
    apt.update()
    return apt.download(apt.closure(packages))


def _build_sysroot(work: Path) -> Path:
    debs = download_debs(ROOT_PACKAGES, work / "apt")
    sysroot = work / "sysroot"
    sysroot.mkdir()
    _unpack(debs, sysroot)
    shutil.rmtree(work / "apt")  # lists and .debs are not needed once unpacked
    return sysroot


def ensure_root(legs: tuple[str, ...] = ("litert",), cpus: tuple[str, ...] = ("cortex-a72",)) -> AArch64Root:
    """The cached aarch64 root with the wheels of ``legs`` and views for ``cpus``, built if missing.

    Raises ToolchainError naming the missing tool or the package that could
    not be downloaded, InputError for an unknown leg or CPU.
    """
    for leg in legs:
        check_leg(leg)
    for cpu in cpus:
        check_cpu(cpu)
    root = AArch64Root(cache_dir() / f"aarch64-root-{stamp()}")
    root.path.mkdir(parents=True, exist_ok=True)
    if not root.sysroot.is_dir():
        with tempfile.TemporaryDirectory(dir=root.path, prefix=".build-") as tmp:
            _publish(_build_sysroot(Path(tmp)), root.sysroot)
    for leg in legs:
        if not root.site(leg).is_dir():
            root.site(leg).parent.mkdir(exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=root.site(leg).parent, prefix=f".{leg}-"))
            try:
                _pip_target(tmp, leg_requirements()[leg], aarch64=True)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            _publish(tmp, root.site(leg))
    for cpu in cpus:
        view = root.cpu_root(cpu)
        if not view.is_dir():
            view.parent.mkdir(exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=view.parent, prefix=f".{cpu}-"))
            shutil.rmtree(tmp)
            shutil.copytree(root.sysroot, tmp, symlinks=True, copy_function=_link_or_copy)
            (tmp / "proc").mkdir()
            (tmp / "proc" / "cpuinfo").write_text(cpuinfo_text(cpu))
            _publish(tmp, view)
    (root.path / "stamp.json").write_text(json.dumps({"stamp": stamp(), "format": ROOT_FORMAT, "suite": DEBIAN_SUITE,
                                                      "legs": leg_requirements()}, indent=2, sort_keys=True))
    return root


def host_site(leg: str) -> Path | None:
    """A folder of host wheels for ``leg`` to put on the host's PYTHONPATH, or None when the host already has it.

    The litert leg uses the host's installed LiteRT. The tflite_runtime leg's
    like-for-like host run needs tflite-runtime 2.14.0 with numpy<2 for this
    host's Python, cached beside the aarch64 root.
    """
    if check_leg(leg) == "litert":
        return None
    tag = f"{platform.machine()}-py{sys.version_info.major}{sys.version_info.minor}"
    dest = cache_dir() / f"aarch64-root-{stamp()}" / "host-site" / f"{leg}-{tag}"
    if not dest.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{leg}-"))
        try:
            _pip_target(tmp, leg_requirements()[leg], aarch64=False)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _publish(tmp, dest)
    return dest
