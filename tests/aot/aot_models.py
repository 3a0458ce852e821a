"""Model builders for the AOT tests: single-op int8 models (spec §13) and the digits CNN."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def convert(fn: Callable, input_shape: Sequence[int], *, seed: int = 0, float_io: bool = False,
            low: float = -1.0, high: float = 1.0, per_tensor_dense: bool = False, int16x8: bool = False,
            int16_io: bool = False, int32_bias: bool = False) -> bytes:
    """Full-int8 convert a ``tf.function`` of one float32 input, calibrated on seeded uniform data.

    ``int16x8``: int16 activations and I/O, int8 weights (int64 biases, or int32 with ``int32_bias``);
    ``int16_io``: int8 activations behind int16 I/O (the converter adds int16 <-> int8 QUANTIZE ops)."""
    import tensorflow as tf

    spec = tf.TensorSpec(list(input_shape), tf.float32)
    tf_fn = tf.function(fn)
    conc = tf_fn.get_concrete_function(spec)
    rng = np.random.default_rng(seed)

    def rep():
        for _ in range(50):
            yield [rng.uniform(low, high, size=input_shape).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([conc], tf_fn)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int16x8:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    if int32_bias:
        conv._experimental_full_integer_quantization_bias_type = tf.int32
    if per_tensor_dense:
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    if not float_io:
        io = tf.int16 if int16x8 or int16_io else tf.int8
        conv.inference_input_type = io
        conv.inference_output_type = io
    return conv.convert()


def convert_keras(model, calib: np.ndarray) -> bytes:
    """Full-int8 convert a Keras model (int8 I/O) through a concrete function."""
    import tensorflow as tf

    shape = [1, *model.input_shape[1:]]
    fn = tf.function(lambda x: model(x, training=False))
    conc = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32))

    def rep():
        for x in calib[:100]:
            yield [x[None].astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([conc], fn)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def random_inputs(tflite: bytes, n: int, seed: int = 0) -> np.ndarray:
    """``n`` seeded inputs in the model's input dtype: all minimum, all maximum, then uniform random."""
    from edgekit.aot.hostcheck import generated_inputs

    return generated_inputs(tflite, n, seed)


def edit_scales(tflite: bytes, factors: dict[int, float]) -> bytes:
    """Multiply the quantization scale of tensor ``index`` by ``factor`` and re-pack the flatbuffer (spec §13)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(tflite, 0)
    for idx, f in factors.items():
        q = m.subgraphs[0].tensors[idx].quantization
        q.scale = [float(np.float32(v * f)) for v in q.scale]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def op_output(tflite: bytes, name: str) -> int:
    """The output tensor index of the first op called ``name``."""
    from edgekit.aot.graph import parse

    g = parse(tflite)
    return next(op.outputs[0] for op in g.ops if op.name == name)


def retype_only_op(tflite: bytes, new_op: str) -> bytes:
    """Turn a one-op model's op into ``new_op`` (e.g. RELU -> QUANTIZE to get an int8 -> int8 requantize)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(tflite, 0)
    (op,) = m.subgraphs[0].operators
    code = m.operatorCodes[op.opcodeIndex]
    code.builtinCode = getattr(s.BuiltinOperator, new_op)
    code.deprecatedBuiltinCode = min(code.builtinCode, 127)
    code.version = 1
    op.builtinOptionsType, op.builtinOptions = 0, None
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def set_quant(tflite: bytes, tensor: int, scale: list[float] | None = None, zero_point: list[int] | None = None,
              data: np.ndarray | None = None, dtype: str | None = None) -> bytes:
    """Overwrite a tensor's scale, zero point, constant data and/or type (``"int8"``...), and re-pack the flatbuffer."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(tflite, 0)
    t = m.subgraphs[0].tensors[tensor]
    if scale is not None:
        t.quantization.scale = [float(v) for v in scale]
    if zero_point is not None:
        t.quantization.zeroPoint = [int(v) for v in zero_point]
    if dtype is not None:
        t.type = getattr(s.TensorType, dtype.upper())
    if data is not None:
        m.buffers[t.buffer].data = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def pow2_scales(tflite: bytes) -> bytes:
    """Round every quantization scale to a power of two (spec §13): all multipliers become M = 2^30,
    so accumulators land exactly on rounding ties, where SRDHM and RDBP round twice."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(tflite, 0)
    for t in m.subgraphs[0].tensors:
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale):
            q.scale = [float(2.0 ** np.round(np.log2(v))) if v > 0 else float(v) for v in q.scale]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())
