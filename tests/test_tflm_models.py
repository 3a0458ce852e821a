"""Test models for the TFLM tests (built once per session, shared by import) and the TFLM compatibility check.

Every model is converted here with the real TFLiteConverter; every verdict of
``check_tflm`` is compared with what the real TFLM interpreter does.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import UnsupportedOpError
from edgekit.tflite_model import read_model
from edgekit.tflm_compat import check_tflm, ensure_tflm, resolver_method, tflm_builtin_ops

REPO = Path(__file__).resolve().parent.parent


def _convert(fn, shape, *, rep=None, mode: str = "int8") -> bytes:
    """Convert a tf.function: mode int8 (full int8, int8 I/O), int16 (16x8, float I/O), hybrid, float."""
    import tensorflow as tf

    c = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function(tf.TensorSpec(shape, tf.float32))], fn)
    if mode != "float":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode in ("int8", "int16"):
        c.representative_dataset = rep
    if mode == "int8":
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = tf.int8
        c.inference_output_type = tf.int8
    if mode == "int16":
        c.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return c.convert()


def _rep(shape, low=-1.0, high=1.0, n=16):
    def gen():
        rng = np.random.default_rng(0)
        for _ in range(n):
            yield [rng.uniform(low, high, size=shape).astype(np.float32)]
    return gen


@lru_cache(maxsize=None)
def digits_tflite(model_dir: str, mode: str = "int8") -> bytes:
    """The digits CNN of the ``digits_dir`` fixture as a batch-1 .tflite (int8, hybrid or float)."""
    import keras
    import tensorflow as tf

    model = keras.models.load_model(Path(model_dir) / "model.keras")
    calib = np.load(Path(model_dir) / "calib.npz")["x"].astype(np.float32)
    fn = tf.function(lambda x: model(x, training=False))

    def rep():
        for i in range(min(64, len(calib))):
            yield [calib[i:i + 1]]
    return _convert(fn, [1, 8, 8, 1], rep=rep, mode=mode)


@lru_cache(maxsize=None)
def single_op_tflite(kind: str) -> bytes:
    """Tiny models: ``gelu`` (int8, GELU which TFLM lacks), ``dense_hybrid``, ``exp16``/``log16``/``rsqrt16`` (16x8)."""
    import tensorflow as tf

    w = tf.constant(np.random.default_rng(1).normal(size=(16, 8)).astype(np.float32))
    if kind == "gelu":
        return _convert(tf.function(lambda x: tf.nn.gelu(tf.matmul(x, w))), [1, 16], rep=_rep([1, 16]))
    big = tf.constant(np.random.default_rng(1).normal(size=(64, 64)).astype(np.float32))
    if kind == "dense_hybrid":  # the converter only quantizes weights of 1024+ elements
        return _convert(tf.function(lambda x: tf.nn.relu(tf.matmul(x, big))), [1, 64], mode="hybrid")
    if kind == "flex_det":  # no builtin for a determinant: a TF Select (Flex) custom op
        fn = tf.function(lambda x: tf.reshape(tf.linalg.det(tf.reshape(x, [2, 2, 2])), [1, 2]))
        c = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function(tf.TensorSpec([1, 8], tf.float32))], fn)
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        return c.convert()
    if kind == "dense_float16":
        fn = tf.function(lambda x: tf.nn.relu(tf.matmul(x, big)))
        c = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function(tf.TensorSpec([1, 64], tf.float32))], fn)
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.target_spec.supported_types = [tf.float16]
        return c.convert()
    ops16 = {"exp16": tf.exp, "log16": tf.math.log, "rsqrt16": tf.math.rsqrt}
    return _convert(tf.function(lambda x: ops16[kind](x)), [1, 8], rep=_rep([1, 8], 0.1, 1.0), mode="int16")


def tflm_runs(tflite: bytes) -> bool:
    """Whether the real TFLM interpreter allocates and invokes the model (in a child: it may crash)."""
    from edgekit.tflm_host import _probe

    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.tflite"
        p.write_bytes(tflite)
        return bool(_probe(p, [1 << 20], mode="run")[1 << 20]["ok"])


# ---- the op list and resolver names ----------------------------------------------------------

def test_tflm_ops_file_matches_the_runtime_library_symbols():
    if shutil.which("nm") is None:
        pytest.skip("nm not installed")
    rc = subprocess.run(["python", str(REPO / "scripts" / "gen_tflm_ops.py"), "--check"], capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr
    ops = tflm_builtin_ops()
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX", "RESHAPE", "SVDF"} <= ops
    assert "GELU" not in ops and "CUSTOM" not in ops and len(ops) > 80


def test_resolver_method_names_follow_tflm():
    assert [resolver_method(o) for o in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "RELU6",
                                         "PADV2", "BATCH_TO_SPACE_ND", "L2_POOL_2D", "CUMSUM", "SVDF")] == [
        "AddConv2D", "AddDepthwiseConv2D", "AddAveragePool2D", "AddFullyConnected", "AddRelu6",
        "AddPadV2", "AddBatchToSpaceNd", "AddL2Pool2D", "AddCumSum", "AddSvdf"]


# ---- refusals: each names the op and the layer, says what to do, and agrees with real TFLM -----

def test_op_tflm_lacks_is_refused_naming_op_and_layer():
    tfl = single_op_tflite("gelu")
    info = read_model(tfl, name="gelu.tflite")
    assert "GELU" in info.ops and info.is_full_int8
    problems = check_tflm(info)
    assert len(problems) == 1 and problems[0].startswith("GELU (layer '")
    assert "no kernel" in problems[0] and "replace that layer" in problems[0]
    with pytest.raises(UnsupportedOpError) as e:
        ensure_tflm(info)
    assert e.value.exit_code == 4 and "gelu.tflite" in str(e.value) and "\n" not in str(e.value)
    assert not tflm_runs(tfl)  # and the real interpreter indeed cannot


def test_hybrid_model_is_refused_with_a_fix():
    tfl = single_op_tflite("dense_hybrid")
    info = read_model(tfl)
    fc = [o for o in info.operators if o.op == "FULLY_CONNECTED"][0]
    assert fc.input_dtypes[0] == "float32" and "int8" in fc.weight_dtypes
    problems = check_tflm(info, allow_float=True)
    assert len(problems) == 1
    assert problems[0].startswith(f"FULLY_CONNECTED (layer '{fc.layer}')")
    assert "hybrid (dynamic-range)" in problems[0] and "representative dataset" in problems[0]
    assert not tflm_runs(tfl)


def test_flex_op_is_refused_as_tf_select():
    tfl = single_op_tflite("flex_det")
    info = read_model(tfl)
    assert info.custom_ops == ("FlexMatrixDeterminant",)
    problems = check_tflm(info, allow_float=True)
    assert len(problems) == 1 and problems[0].startswith("CUSTOM:FlexMatrixDeterminant (layer 'MatrixDeterminant')")
    assert "TF Select (Flex)" in problems[0]
    assert not tflm_runs(tfl)


def test_float16_weights_are_refused():
    tfl = single_op_tflite("dense_float16")
    problems = check_tflm(read_model(tfl), allow_float=True)
    assert len(problems) == 1 and problems[0].startswith("DEQUANTIZE (layer '") and "float16 weights" in problems[0]
    assert not tflm_runs(tfl)


@pytest.mark.parametrize("kind,supported", [("exp16", False), ("log16", False), ("rsqrt16", True)])
def test_int16_activation_verdict_agrees_with_tflm(kind, supported):
    tfl = single_op_tflite(kind)
    info = read_model(tfl)
    assert "int16" in info.activation_dtypes
    problems = check_tflm(info)
    assert (problems == []) is supported, problems
    if not supported:
        op = {"exp16": "EXP", "log16": "LOG"}[kind]
        assert problems[0].startswith(f"{op} (layer '") and "no int16 path" in problems[0]
    assert tflm_runs(tfl) is supported


def test_float_model_needs_the_explicit_flag(digits_dir):
    tfl = digits_tflite(str(digits_dir), "float")
    info = read_model(tfl, name="digits_float.tflite")
    assert info.is_float and not info.is_full_int8
    problems = check_tflm(info)
    assert len(problems) == 1 and problems[0].startswith("float model:") and "--allow-float" in problems[0]
    assert "4x the flash" in problems[0]
    with pytest.raises(UnsupportedOpError, match="without --allow-float"):
        ensure_tflm(info)
    assert check_tflm(info, allow_float=True) == []
    ensure_tflm(info, allow_float=True)
    assert tflm_runs(tfl)


def test_full_int8_digits_passes(digits_dir):
    info = read_model(digits_tflite(str(digits_dir)))
    assert info.is_full_int8 and check_tflm(info) == []
    assert set(info.ops) == {"CONV_2D", "FULLY_CONNECTED", "RESHAPE", "SOFTMAX"} | ({"MAX_POOL_2D"} & set(info.ops))


@pytest.mark.shared_models
def test_every_shared_int8_model_passes_and_the_float_one_needs_the_flag(shared_models):
    for path in sorted(shared_models.rglob("*.tflite")):
        info = read_model(path)
        problems = check_tflm(info)
        if "float" in path.name:
            assert problems and problems[0].startswith("float model:")
        else:
            assert problems == [], (path.name, problems)
