"""TFLM's own keyword_scrambled_8bit.tflite (SVDF with int8 state, int16 in, int32 out), read from the TFLM tree.

LiteRT writes past the end of an int8 SVDF state (edgekit.litert_compat), so a cortex-m4 build does not
run LiteRT on it and says so in one line; the model is verified on the TFLM interpreter over sequences
of calls and, shipped, on edgekit's C runtime under QEMU. A Linux target, which ships LiteRT, refuses it
(exit 4). The last test keeps edgekit.litert_compat's claim honest: it measures the overflow itself.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, require_tools, shared_model

from edgekit.cli import main

KWS8 = "tensorflow/lite/micro/models/keyword_scrambled_8bit.tflite"
N, T = 6, 10  # sequences x calls per sequence


@pytest.fixture
def kws8(tflm_src):
    return tflm_src / KWS8


def _sequences(path) -> None:
    rng = np.random.default_rng(0)
    # int16 data for an int16 input: passed to the model as it is; one label per sequence
    np.savez(path, x=rng.integers(-3000, 3000, size=(N, T, 96)).astype(np.int16), y=rng.integers(0, 2, size=N))


@pytest.mark.emulator
def test_cortex_m4_build_skips_litert_by_name_and_verifies_on_tflm_and_qemu(kws8, tmp_path, capsys):
    from edgekit.verify.gates import Gates
    from edgekit.verify.host import verdict_for

    _sequences(tmp_path / "seq.npz")
    out = tmp_path / "m4"
    rc = main(["build", str(kws8), "--target", "cortex-m4", "--eval", str(tmp_path / "seq.npz"), "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    r = json.loads(captured.out)
    warned = [l for l in captured.err.splitlines() if l.startswith("edgekit: warning:")]
    assert len(warned) == 1 and "LiteRT not run: SVDF with an int8 state tensor (layer 'tensor_5' and 6 more)" in warned[0]
    assert "cortex-m4 runs TFLM" in warned[0] and "Traceback" not in captured.err
    assert r["verified_on"]["not_run"]["runtimes"] == ["litert-default", "litert-ref"]
    assert r["warnings"] == [r["verified_on"]["not_run"]["reason"]]
    for key in ("accuracy.int8_tflite", "accuracy.int8_tflite_ref", "speedup.host_latency_ratio"):
        assert r["runtimes"][key].startswith("skipped: LiteRT not run: SVDF"), key
    assert r["runtimes"]["agreement.tflm_vs_tflite_bit_exact"].startswith("not measured: LiteRT not run")
    assert "failures" not in r and r["accuracy"]["int8_tflite"] is None and r["accuracy"]["int8_tflite_ref"] is None
    # verified on the TFLM interpreter, over sequences of calls
    v = r["verified_on"]
    assert (v["sequences"], v["calls_per_sequence"], v["samples"]) == (N, T, N * T)
    assert r["accuracy"]["int8_tflm"] is not None and r["agreement"]["deployed_runtime"] == "tflm-host"
    assert r["memory"]["arena_bytes"] > 5_120  # at least the seven SVDFs' int8 state
    assert (out / "tflm" / "main.cc").is_file()
    # a gate that needs LiteRT fails as not measured, naming why, instead of passing silently
    gate = verdict_for(r, Gates(require_bit_exact=True)).gates[0]
    assert not gate.passed and gate.value is None
    assert gate.detail.startswith("bit-exactness not measured (tflm-host vs litert-ref; LiteRT not run: SVDF")

    # the shipped model on edgekit's own C runtime under QEMU, every call bit-exact with the TFLM interpreter
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    rc = main(["verify", str(out), "--emulator", "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    e = json.loads(captured.out)
    assert e["machine"] == "mps2-an386" and e["outputs_bit_exact"] == 1.0
    assert e["n_inputs"] == N * T and e["calls_per_sequence"] == T
    assert 100_000 < e["instructions_per_inference"] < 400_000  # 178,752 measured


def test_rpi4_refuses_it_in_one_line_before_litert_runs(kws8, tmp_path, capsys):
    _sequences(tmp_path / "seq.npz")
    out = tmp_path / "pi"
    rc = main(["build", str(kws8), "--target", "rpi4", "--eval", str(tmp_path / "seq.npz"), "--out", str(out)])
    err = capsys.readouterr().err
    errors = [l for l in err.splitlines() if l.startswith("edgekit: error:")]
    assert rc == 4, err
    assert len(errors) == 1 and "Traceback" not in err
    assert "keyword_scrambled_8bit.tflite: LiteRT, the runtime of rpi4, cannot run this model: SVDF with an int8 state tensor" in errors[0]
    assert "writes past the end of an int8 state" in errors[0]
    assert not out.exists() and not list(tmp_path.glob(".pi.*"))  # no output folder, no staging folder


_MEASURE = """
import ctypes, json, os, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
ip = Interpreter(model_path=sys.argv[1], experimental_op_resolver_type=OpResolverType.BUILTIN_REF, num_threads=1)
ip.allocate_tensors()
# addresses only: LiteRT refuses to invoke while numpy views of its buffers are alive
addr, n = ip.tensor(4)().ctypes.data, ip.tensor(4)().nbytes  # the first SVDF's state
next_addr = ip.tensor(12)().ctypes.data  # the next SVDF's state, which no op of the cut model uses
view = lambda: np.frombuffer(bytes((ctypes.c_uint8 * (2 * n)).from_address(addr)), np.uint8)
before = view()
x = np.random.default_rng(0).integers(-3000, 3000, (1, 96)).astype(np.int16)
ip.set_tensor(ip.get_input_details()[0]["index"], x)
ip.invoke()
changed = np.flatnonzero(view() != before)
print(json.dumps({"state_bytes": int(n), "next_is_adjacent": next_addr == addr + n,
                  "inside": int((changed < n).sum()), "past_end": int((changed >= n).sum())}))
sys.stdout.flush()
os._exit(0)  # the heap may be corrupt: leave without running destructors
"""


def _first_svdf_only(tflite: bytes) -> bytes:
    """The model cut after its first SVDF (QUANTIZE, SVDF): nothing else writes near that SVDF's state."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(tflite, 0)
    sg = m.subgraphs[0]
    assert [m.operatorCodes[o.opcodeIndex].builtinCode for o in sg.operators[:2]] == [s.BuiltinOperator.QUANTIZE, s.BuiltinOperator.SVDF]
    sg.operators, sg.outputs = sg.operators[:2], [sg.operators[1].outputs[0]]
    fb = flatbuffers.Builder(1024)
    fb.Finish(m.Pack(fb), file_identifier=b"TFL3")
    return bytes(fb.Output())


@pytest.mark.shared_models
def test_litert_still_writes_past_an_int8_svdf_state(kws8, shared_models, tmp_path):
    """The measurement behind edgekit.litert_compat, in a child process: one invoke of LiteRT's reference
    SVDF on an int8 state changes bytes past the state buffer's end (in the next, unused, state tensor);
    on keyword_scrambled's int16 state it changes none. Fails when a LiteRT upgrade fixes the kernel."""
    measured = {}
    for name, path in (("int8 state", kws8), ("int16 state", shared_model(shared_models, "tflm/keyword_scrambled.tflite"))):
        cut = tmp_path / f"{name.replace(' ', '_')}.tflite"
        cut.write_bytes(_first_svdf_only(path.read_bytes()))
        proc = subprocess.run([sys.executable, "-c", _MEASURE, str(cut)], capture_output=True, text=True, timeout=120, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-2000:]
        measured[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    i8, i16 = measured["int8 state"], measured["int16 state"]
    assert i8["next_is_adjacent"] and i16["next_is_adjacent"]
    assert (i8["state_bytes"], i16["state_bytes"]) == (512, 1024)  # 64 filters x 8 memory cells
    assert i8["inside"] > 0 and i16["inside"] > 0
    assert i8["past_end"] >= 16, i8  # 64 B measured: the int16 new column of filters 32-63
    assert i16["past_end"] == 0, i16
