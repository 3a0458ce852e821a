"""The cached aarch64 root and the emulated Python: what it contains, what the guest sees, how it fails."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import require_tools

from edgekit.errors import InputError, ToolchainError
from edgekit.pi_emulator import root as rootmod
from edgekit.pi_emulator.root import SUPPORTED_CPUS, check_cpu, cpuinfo_text, download_debs, ensure_root, manylinux_aarch64_tags, stamp
from edgekit.pi_emulator.run import run_python

pytestmark = pytest.mark.emulator

HWCAP_ATOMICS, HWCAP_ASIMDDP = 1 << 8, 1 << 20
EM_AARCH64 = 183


@pytest.fixture(scope="module")
def root():
    require_tools("qemu-aarch64-static", "apt-get", "dpkg-deb")
    return ensure_root(legs=("litert",), cpus=SUPPORTED_CPUS)


@pytest.fixture(scope="module")
def qemu_passes_host_cpuinfo(root) -> bool:
    """True on QEMU 7.2 (Debian 12): a guest without its own /proc/cpuinfo reads the host's x86 one.
    Newer QEMU releases may emulate an aarch64 /proc/cpuinfo themselves."""
    proc = run_python(["-c", "print(open('/proc/cpuinfo').read())"], cpu="cortex-a72", root=root, prefix=root.sysroot)
    assert proc.returncode == 0, proc.stderr
    return "vendor_id" in proc.stdout or "flags\t" in proc.stdout


def test_root_is_debian_arm64_python_with_merged_usr_and_no_install_tools(root):
    elf = root.python.read_bytes()[:20]
    assert elf[:4] == b"\x7fELF" and int.from_bytes(elf[18:20], "little") == EM_AARCH64
    for link in ("lib", "bin", "sbin"):
        assert os.readlink(root.sysroot / link) == f"usr/{link}", "tar --keep-directory-symlink keeps the merged-/usr links"
    assert (root.sysroot / "lib" / "ld-linux-aarch64.so.1").exists()
    assert (root.sysroot / "usr" / "lib" / "aarch64-linux-gnu" / "libstdc++.so.6").exists()
    for absent in ("usr/bin/perl", "usr/bin/dpkg", "proc", "tmp"):
        assert not (root.sysroot / absent).exists(), absent
    assert json.loads((root.path / "stamp.json").read_text())["stamp"] == stamp() == root.path.name.rsplit("-", 1)[1]
    litert = root.site("litert")
    assert (litert / "ai_edge_litert" / "interpreter.py").is_file() and (litert / "numpy").is_dir()
    def megabytes(folder: Path) -> float:
        return sum(p.lstat().st_size for p in folder.rglob("*") if not p.is_symlink()) / 1e6

    # measured: 63 MB of Debian packages, 113 MB of aarch64 wheels (LiteRT 2.3.0 + numpy 2.x)
    assert 40 < megabytes(root.sysroot) < 90 and 60 < megabytes(litert) < 160
    # three CPU views are hard links of the sysroot: counted once they add almost nothing
    assert root.size_bytes() < megabytes(root.path) * 1e6 - 2 * megabytes(root.sysroot) * 1e6


def test_manylinux_tags_are_listed_down_to_2014():
    tags = manylinux_aarch64_tags()
    assert tags[0] == "manylinux_2_36_aarch64" and tags[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    assert len(tags) == 21


@pytest.mark.parametrize("cpu, part, model, atomics", [
    ("cortex-a72", "0xd08", "Raspberry Pi 4 Model B Rev 1.1", False),
    ("cortex-a76", "0xd0b", "Raspberry Pi 5 Model B Rev 1.0", True),
    ("cortex-a53", "0xd03", "Raspberry Pi Zero 2 W Rev 1.0", False),
])
def test_guest_runs_on_the_pinned_cpu_and_reads_the_pi_cpuinfo(root, qemu_passes_host_cpuinfo, cpu, part, model, atomics):
    code = ("import ctypes, platform, sys; print(platform.machine(), sys.version.split()[0], ctypes.CDLL(None).getauxval(16)); "
            "print(open('/proc/cpuinfo').read())")
    proc = run_python(["-c", code], cpu=cpu, root=root)
    assert proc.returncode == 0, proc.stderr
    first, cpuinfo = proc.stdout.split("\n", 1)
    machine, version, hwcap = first.split()
    assert machine == "aarch64" and version.startswith("3.11.")
    assert bool(int(hwcap) & HWCAP_ATOMICS) is atomics  # QEMU_CPU decides the CPU features (the A76 has LSE atomics)
    assert bool(int(hwcap) & HWCAP_ASIMDDP) is atomics  # ... and the dot-product instructions XNNPACK uses
    if qemu_passes_host_cpuinfo:  # otherwise QEMU answers /proc/cpuinfo itself and the view's file is not read
        assert cpuinfo.strip() == cpuinfo_text(cpu).strip()
    assert f"CPU part\t: {part}" in cpuinfo_text(cpu) and cpuinfo_text(cpu).count("processor\t:") == 4 and model in cpuinfo_text(cpu)


def test_litert_segfaults_with_the_hosts_cpuinfo_and_runs_with_the_pis(root, qemu_passes_host_cpuinfo, tmp_path):
    """Why each CPU view carries its own /proc/cpuinfo: without it the guest reads the host's x86 one."""
    if not qemu_passes_host_cpuinfo:
        pytest.skip("this QEMU emulates /proc/cpuinfo for aarch64 guests; the segfault is QEMU 7.2's")
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
    (tmp_path / "m.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    code = (f"from ai_edge_litert.interpreter import Interpreter; ip = Interpreter(model_path={str(tmp_path / 'm.tflite')!r}); "
            "ip.allocate_tensors(); ip.invoke(); print('ok')")
    bare = run_python(["-c", code], cpu="cortex-a72", root=root, prefix=root.sysroot)
    assert bare.returncode == -11, (bare.returncode, bare.stderr[-300:])  # SIGSEGV
    viewed = run_python(["-c", code], cpu="cortex-a72", root=root)
    assert viewed.returncode == 0 and viewed.stdout.strip() == "ok", viewed.stderr[-300:]


def test_unsupported_cpu_lists_the_supported_names():
    with pytest.raises(InputError) as err:
        check_cpu("cortex-a57")
    assert err.value.exit_code == 2
    assert str(err.value).startswith("unsupported emulated Pi CPU 'cortex-a57'; supported: cortex-a53, cortex-a72, cortex-a76")
    with pytest.raises(InputError, match="unknown runtime leg 'onnx'"):
        ensure_root(legs=("onnx",))


def test_missing_qemu_names_the_package_to_install(root, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without qemu-aarch64-static
    with pytest.raises(ToolchainError) as err:
        run_python(["-c", "print(1)"], cpu="cortex-a72", root=root)
    assert err.value.exit_code == 7
    assert str(err.value) == ("qemu-aarch64-static not found on PATH; emulated Pi verification needs it "
                              "(install it with `apt-get install qemu-user-static`, or run docker/install-toolchain.sh)")


def test_download_failures_name_what_failed(monkeypatch, tmp_path):
    require_tools("apt-get", "dpkg-deb")
    with pytest.raises(ToolchainError, match=r"^Debian bookworm arm64 package\(s\) not found: edgekit-no-such-package \("):
        download_debs(("python3.11", "edgekit-no-such-package"), tmp_path / "a")
    monkeypatch.setenv("EDGEKIT_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
    monkeypatch.setenv("EDGEKIT_DEBIAN_SECURITY_MIRROR", "http://127.0.0.1:9/debian-security")
    with pytest.raises(ToolchainError, match=r"^could not download the Debian bookworm arm64 package lists: .*Failed to fetch http://127\.0\.0\.1:9/debian"):
        download_debs(("python3.11",), tmp_path / "b")


def test_wheel_download_failure_names_the_wheel(tmp_path):
    with pytest.raises(ToolchainError) as err:
        rootmod._pip_target(tmp_path / "w", ("tflite-runtime==0.0.1",), aarch64=True)
    assert str(err.value).startswith("could not download the aarch64 wheels tflite-runtime==0.0.1: ")
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


def test_cache_is_reused_and_the_stamp_names_its_contents(root, monkeypatch):
    assert ensure_root(legs=("litert",), cpus=("cortex-a72",)).path == root.path
    before = stamp()
    monkeypatch.setattr(rootmod, "ROOT_PACKAGES", (*rootmod.ROOT_PACKAGES, "libzstd1"))
    assert stamp() != before  # a different recipe is a different folder, never a stale root
    monkeypatch.undo()
    assert stamp() == before and Path(root.path).name == f"aarch64-root-{before}"
