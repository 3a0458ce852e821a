"""The emitted C array, header and TFLM project are right: checked by parsing them, compiling
them (host g++ and arm-none-eabi-g++), and running the real TFLM interpreter with their constants."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from conftest import require_tools
from edgekit.cli import main
from edgekit.emit_tflm import emit_tflm_project
from edgekit.errors import InputError
from edgekit.targets import get_target
from edgekit.tflite_model import read_model
from edgekit.tflm_compat import resolver_method, tflm_builtin_ops
from edgekit.tflm_host import _probe, measure_arena, run_tflm
from test_tflm_models import digits_tflite, single_op_tflite


@lru_cache(maxsize=1)
def runtime_register_symbols() -> frozenset[str]:
    """Ops with a ``Register_<OP>`` symbol in the installed tflite-micro runtime (``nm``; else the data file)."""
    if shutil.which("nm") is None:
        return tflm_builtin_ops()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import gen_tflm_ops

    return frozenset(gen_tflm_ops.exported_ops(gen_tflm_ops.runtime_library()))


def c_array_bytes(cc_text: str) -> bytes:
    """The bytes of the one ``const unsigned char`` array in a generated .cc file."""
    body = re.search(r"alignas\(16\) const unsigned char \w+\[\] = \{(.*?)\};", cc_text, re.S)
    assert body, "no aligned const array"
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body.group(1)))


def parse_main(text: str) -> dict:
    n = int(re.search(r"constexpr int kOpCount = (\d+);", text).group(1))
    assert "MicroMutableOpResolver<kOpCount>" in text
    return {"op_count": n, "methods": re.findall(r"resolver\.(Add\w+)\(\)", text),
            "arena": int(re.search(r"constexpr int kTensorArenaSize = (\d+);", text).group(1))}


def header_constants(text: str, prefix: str = "model") -> dict:
    consts = {}
    for kind in ("input0", "output0"):
        s = re.search(rf"constexpr float {prefix}_{kind}_scale = ([-+0-9.e]+)f;", text)
        z = re.search(rf"constexpr int {prefix}_{kind}_zero_point = (-?\d+);", text)
        shape = re.search(rf"constexpr int {prefix}_{kind}_shape\[\d+\] = \{{ ([0-9, ]+) \}};", text)
        consts[kind] = (np.float32(s.group(1)) if s else None, int(z.group(1)) if z else None,
                        [int(v) for v in shape.group(1).split(",")])
    return consts


def check_project(folder: Path, tflite: bytes, prefix: str = "model") -> dict:
    """The checks of the issue, on one emitted folder; returns the parsed main.cc."""
    info = read_model(tflite)
    cc = (folder / f"{prefix}_data.cc").read_text()
    assert c_array_bytes(cc) == tflite
    assert f"const unsigned int g_{prefix}_data_len = {len(tflite)};" in cc
    m = parse_main((folder / "main.cc").read_text())
    assert m["op_count"] == len(info.ops) == len(m["methods"])
    assert sorted(m["methods"]) == sorted(resolver_method(op) for op in info.ops)
    for op in info.ops:  # every registration exists in TFLM's API (the runtime's Register_ symbols)
        assert op in tflm_builtin_ops() and op in runtime_register_symbols()
    consts = header_constants((folder / f"{prefix}_data.h").read_text(), prefix)
    for kind, spec in (("input0", info.inputs[0]), ("output0", info.outputs[0])):
        scale, zp, shape = consts[kind]
        assert shape == list(spec.shape)
        if spec.scale is not None and spec.dtype != "float32":
            assert scale == np.float32(spec.scale) and zp == spec.zero_point
    return m


@pytest.fixture(scope="module")
def digits_project(digits_dir, tmp_path_factory):
    tfl = digits_tflite(str(digits_dir))
    arena = measure_arena(tfl)
    x = np.load(digits_dir / "eval.npz")["x"][:1]
    info = read_model(tfl)
    from edgekit.verify.inputs import quantize

    sample = quantize(x, info.inputs[0])[0]
    out = tmp_path_factory.mktemp("emit") / "tflm"
    res = emit_tflm_project(tfl, get_target("cortex-m4"), out, arena=arena, sample_input=sample)
    return tfl, arena, sample, out, res


def test_project_matches_the_model(digits_project):
    tfl, arena, sample, out, res = digits_project
    m = check_project(out, tfl)
    assert m["arena"] == res["arena_bytes"] >= arena.min_bytes and m["arena"] >= arena.used_bytes
    assert sorted(res["files"]) == sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    # the arena constant really works in TFLM, and the sample/expected arrays are what TFLM does
    tmp = out.parent / "m.tflite"
    tmp.write_bytes(tfl)
    assert _probe(tmp, [m["arena"]], mode="run")[m["arena"]]["ok"]
    main_cc = (out / "main.cc").read_text()
    ints = lambda name: [int(v) for v in re.search(rf"{name}\[\d+\] = \{{(.*?)\}};", main_cc, re.S).group(1).replace(",", " ").split()]
    assert ints("kSampleInput") == sample.reshape(-1).tolist()
    assert ints("kExpectedOutput") == run_tflm(tfl, sample[None]).reshape(-1).tolist()
    readme = (out / "README.md").read_text()
    assert "TFLM_DIR" in readme and f"tensor arena of {res['arena_bytes']} bytes" in readme
    assert "cortex-m4+fp" in (out / "Makefile").read_text() and "-mcpu=cortex-m4" in (out / "Makefile").read_text()


def test_makefile_builds_tflm_and_the_project_for_the_target_cpu(digits_project, tmp_path):
    """``make -n`` with a stand-in TFLM tree: the commands the Makefile would run, per mode."""
    require_tools("make")
    _, _, _, out, _ = digits_project
    fake = tmp_path / "tflm"
    (fake / "tensorflow/lite/micro/tools/make").mkdir(parents=True)
    (fake / "tensorflow/lite/micro/tools/make/Makefile").write_text("microlite:\n\t@true\n")
    run = lambda *a: subprocess.run(["make", "-n", "-C", str(out), *a], capture_output=True, text=True)
    cmds = run(f"TFLM_DIR={fake}").stdout
    gendir = f"{out}/build/tflm_cortex_m_generic_cortex-m4+fp_release_with_logs_cmsis_nn/"
    tflm = [l for l in cmds.splitlines() if "tools/make/Makefile" in l][0]
    assert "TARGET=cortex_m_generic TARGET_ARCH=cortex-m4+fp BUILD_TYPE=release_with_logs OPTIMIZED_KERNEL_DIR=cmsis_nn" in tflm
    assert f"GENDIR={gendir} " in tflm and tflm.endswith(" microlite") and "TOOLCHAIN" not in tflm
    compile_main = [l for l in cmds.splitlines() if " -c main.cc " in l][0]
    assert compile_main.startswith("arm-none-eabi-g++ ") and "-mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard" in compile_main
    # the library's defines for its BUILD_TYPE: release_with_logs keeps MicroPrintf, which main.cc calls
    assert " -DNDEBUG " in compile_main and "TF_LITE_STRIP_ERROR_STRINGS" not in compile_main
    # cortex_m_generic prints only through the DebugLog callback main.cc registers under this define
    assert " -DEDGEKIT_TFLM_CORTEX_M_GENERIC " in compile_main
    assert f"-I{fake} " in compile_main and "flatbuffers/include" in compile_main
    assert " -c model_data.cc " in cmds and f" {gendir}lib/libtensorflow-microlite.a " in cmds
    release = run(f"TFLM_DIR={fake}", "BUILD_TYPE=release", "TARGET_TOOLCHAIN_ROOT=/usr/bin/").stdout
    assert "BUILD_TYPE=release OPTIMIZED_KERNEL_DIR=cmsis_nn" in release
    assert "TOOLCHAIN=gcc TARGET_TOOLCHAIN_ROOT=/usr/bin/ microlite" in release
    compile_release = [l for l in release.splitlines() if " -c main.cc " in l][0]
    assert compile_release.startswith("/usr/bin/arm-none-eabi-g++ ")
    assert "-DNDEBUG -DTF_LITE_STRIP_ERROR_STRINGS" in compile_release
    host = run(f"TFLM_ROOT={fake}", "TARGET_TOOLCHAIN_ROOT=/usr/bin/", "host", "run").stdout
    assert "TARGET=linux TARGET_ARCH=x86_64" in host and "\ng++ " in host and "mcpu" not in host
    assert "TOOLCHAIN=gcc" not in host
    assert "EDGEKIT_TFLM_CORTEX_M_GENERIC" not in host  # linux's DebugLog prints by itself
    qemu = run(f"TFLM_DIR={fake}", "qemu", "run-qemu").stdout
    assert "TARGET=cortex_m_qemu TARGET_ARCH=cortex-m4 BUILD_TYPE=release_with_logs OPTIMIZED_KERNEL_DIR=cmsis_nn" in qemu
    assert "EDGEKIT_TFLM_CORTEX_M_GENERIC" not in qemu
    assert "-mcpu=cortex-m4 -mfloat-abi=soft" in qemu and "--specs=rdimon.specs" in qemu and "-cpu cortex-m4 build/" in qemu
    missing = run()
    assert missing.returncode != 0 and "set TFLM_DIR" in missing.stderr


def test_cmake_configures_against_a_tflm_build_tree(digits_project, tmp_path):
    """CMake finds the library where the Makefile's ``make tflm`` builds it (inside the project, not TFLM_DIR)."""
    require_tools("cmake")
    _, _, _, out, _ = digits_project
    project = tmp_path / "project"
    shutil.copytree(out, project)
    lib = project / "build" / "tflm_cortex_m_generic_cortex-m4+fp_release_with_logs_cmsis_nn" / "lib"
    cfg = lambda *a: subprocess.run(["cmake", "-S", str(project), "-B", str(tmp_path / "b"), f"-DTFLM_DIR={tmp_path / 'tflm'}", *a],
                                    capture_output=True, text=True)
    lib.mkdir(parents=True)
    missing = cfg()
    assert missing.returncode != 0 and "libtensorflow-microlite.a not found" in missing.stderr
    (lib / "libtensorflow-microlite.a").write_bytes(b"!<arch>\n")
    ok = cfg()
    assert ok.returncode == 0, ok.stderr
    cache = (tmp_path / "b" / "CMakeCache.txt").read_text()
    assert "TFLM_TARGET_ARCH:STRING=cortex-m4+fp" in cache and "-mcpu=cortex-m4" in cache
    assert "TFLM_BUILD_TYPE:STRING=release_with_logs" in cache
    release = cfg("-DTFLM_BUILD_TYPE=release")  # a release library is looked for in its own folder
    assert release.returncode != 0 and "_release_cmsis_nn/lib" in release.stderr


def test_arduino_library_layout(digits_project):
    tfl, _, _, out, _ = digits_project
    lib = out / "arduino" / "edgekit_model"
    props = dict(l.split("=", 1) for l in (lib / "library.properties").read_text().splitlines() if "=" in l)
    assert props["name"] == "edgekit_model" and props["includes"] == "model_data.h"
    assert c_array_bytes((lib / "src" / "model_data.cc").read_text()) == tfl
    ino = (lib / "examples" / "edgekit_model" / "edgekit_model.ino").read_text()
    assert "#include <model_data.h>" in ino and "void setup()" in ino and "void loop()" in ino


def test_header_helpers_compile_and_match_numpy(digits_project, tmp_path):
    """Host-compile the generated array and helpers; the bytes and the (de)quantization must be exact."""
    require_tools("g++")
    tfl, _, _, out, _ = digits_project
    info = read_model(tfl)
    (tmp_path / "t.cc").write_text(r'''
#include <cstdio>
#include "model_data.h"
int main() {
  FILE* f = fopen("array.bin", "wb");
  fwrite(g_model_data, 1, g_model_data_len, f);
  fclose(f);
  printf("%d\n", (int)(((unsigned long)g_model_data) % 16));
  for (int i = -400; i <= 400; ++i) printf("%d ", (int)model_quantize_input0(i / 100.0f));
  printf("\n");
  for (int q = -128; q <= 127; ++q) printf("%.9e ", model_dequantize_output0((int8_t)q));
  printf("\n");
}
''')
    exe = tmp_path / "t"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-I", str(out), str(tmp_path / "t.cc"), str(out / "model_data.cc"),
                    "-o", str(exe)], check=True, capture_output=True)
    lines = subprocess.run([str(exe)], cwd=tmp_path, check=True, capture_output=True, text=True).stdout.splitlines()
    assert (tmp_path / "array.bin").read_bytes() == tfl and lines[0] == "0"
    from edgekit.verify.runtimes import dequantize
    from edgekit.verify.inputs import quantize

    xs = np.array([np.float32(i) / np.float32(100) for i in range(-400, 401)], dtype=np.float32)
    assert [int(v) for v in lines[1].split()] == quantize(xs, info.inputs[0]).tolist()
    expect = dequantize(np.arange(-128, 128, dtype=np.int8), info.outputs[0])
    assert np.array_equal(np.array(lines[2].split(), dtype=np.float32), expect)


@pytest.mark.emulator
def test_array_lands_in_flash_when_cross_compiled(digits_project, tmp_path):
    require_tools("arm-none-eabi-g++", "arm-none-eabi-nm", "arm-none-eabi-objdump")
    tfl, _, _, out, _ = digits_project
    obj = tmp_path / "model_data.o"
    subprocess.run(["arm-none-eabi-g++", "-std=c++17", "-mthumb", "-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard",
                    "-Os", "-c", str(out / "model_data.cc"), "-o", str(obj)], check=True, capture_output=True)
    nm = subprocess.run(["arm-none-eabi-nm", "-S", str(obj)], check=True, capture_output=True, text=True).stdout
    sym = [l.split() for l in nm.splitlines() if l.endswith(" g_model_data")][0]
    assert int(sym[1], 16) == len(tfl) and sym[2] in ("R", "r")  # read-only data: flash
    heads = subprocess.run(["arm-none-eabi-objdump", "-h", str(obj)], check=True, capture_output=True, text=True).stdout
    assert "2**4" in heads.split(".rodata", 1)[1].splitlines()[0]  # 16-byte alignment


def test_emit_is_deterministic_and_atomic(digits_dir, tmp_path):
    tfl = digits_tflite(str(digits_dir))
    arena = measure_arena(tfl)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "stale.txt").write_text("old")
    with pytest.raises(InputError, match="files edgekit did not write"):  # never deletes what it did not write
        emit_tflm_project(tfl, get_target("cortex-m4"), foreign, arena=arena, name="digits")
    assert (foreign / "stale.txt").read_text() == "old"
    out = tmp_path / "p"
    emit_tflm_project(tfl, get_target("cortex-m4"), out, arena=arena, name="digits")
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert Path("digits_data.h") in first and Path(".edgekit-manifest.json") in first
    emit_tflm_project(tfl, get_target("cortex-m4"), out, arena=arena, name="digits")
    assert first == {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign", "p"]  # no temp folder left behind
    check_project(out, tfl, prefix="digits")


# ---- the CLI -------------------------------------------------------------------------------

def test_cli_emit_json(capsys, digits_dir, tmp_path):
    p = tmp_path / "digits.tflite"
    p.write_bytes(digits_tflite(str(digits_dir)))
    rc = main(["emit", str(p), "--target", "cortex-m4", "--out", str(tmp_path / "o"), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    res = json.loads(out.out)
    assert res["memory"]["arena_bytes"] == res["arena_used_bytes"] and res["memory"]["fits"] is True
    mem = json.loads((tmp_path / "o" / "memory.json").read_text())
    assert mem["memory"]["arena_min_bytes"] == res["arena_min_bytes"]
    check_project(tmp_path / "o", p.read_bytes())


@pytest.mark.parametrize("kind,needle", [("gelu", "GELU (layer 'Identity')"), ("dense_hybrid", "hybrid (dynamic-range)")])
def test_cli_emit_refuses_what_tflm_cannot_run(capsys, tmp_path, kind, needle):
    p = tmp_path / f"{kind}.tflite"
    p.write_bytes(single_op_tflite(kind))
    rc = main(["emit", str(p), "--target", "cortex-m4", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 4 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_emit_float_only_with_the_flag(capsys, digits_dir, tmp_path):
    p = tmp_path / "digits_float.tflite"
    p.write_bytes(digits_tflite(str(digits_dir), "float"))
    rc = main(["emit", str(p), "--target", "cortex-m4", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 4 and "--allow-float" in err and "4x the flash" in err and not (tmp_path / "o").exists()
    rc = main(["emit", str(p), "--target", "cortex-m4", "--out", str(tmp_path / "o"), "--allow-float"])
    out = capsys.readouterr().out
    assert rc == 0 and "float model emitted on request" in out
    m = check_project(tmp_path / "o", p.read_bytes())
    assert "typedef float model_input0_t;" in (tmp_path / "o" / "model_data.h").read_text()
    assert m["arena"] > 0


def test_cli_emit_over_budget_is_exit_3(capsys, digits_dir, tmp_path):
    board = tmp_path / "tiny.toml"
    board.write_text('name="tiny"\ndescription="too small"\nruntime="tflm"\ncpu="cortex-m0"\narch="armv6-m"\n'
                     'ram_bytes=2048\nflash_bytes=16384\n[toolchain]\nmcpu="cortex-m0"\nmfpu="none"\nmfloat_abi="soft"\n')
    p = tmp_path / "digits.tflite"
    p.write_bytes(digits_tflite(str(digits_dir)))
    rc = main(["emit", str(p), "--target", str(board), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 3 and "16,384 B" in err and "2,048 B" in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("args,needle", [(["--target", "rpi4"], "emit writes microcontroller"),
                                         (["--target", "cortex-m4", "--name", "int"], "not a usable C identifier"),
                                         (["--target", "cortex-m4", "--name", "9lives"], "not a usable C identifier")])
def test_cli_emit_bad_options_exit_2(capsys, digits_dir, tmp_path, args, needle):
    p = tmp_path / "digits.tflite"
    p.write_bytes(digits_tflite(str(digits_dir)))
    rc = main(["emit", str(p), *args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and not (tmp_path / "o").exists()


@pytest.mark.shared_models
def test_cli_emit_every_shared_int8_model(capsys, shared_models, tmp_path):
    done = []
    for p in sorted(shared_models.rglob("*.tflite")):
        if "float" in p.name:
            continue
        out = tmp_path / p.stem
        rc = main(["emit", str(p), "--target", "cortex-m55", "--out", str(out), "--json"])
        res = json.loads(capsys.readouterr().out) if rc == 0 else None
        assert rc == 0, p.name
        m = check_project(out, p.read_bytes())
        assert m["arena"] >= res["arena_min_bytes"] and m["arena"] >= res["arena_used_bytes"]
        done.append(p.name)
        if p.name == "person_detect.tflite":
            assert abs(res["arena_used_bytes"] - 85_264) <= 0.02 * 85_264
    assert "person_detect.tflite" in done and len(done) >= 8
