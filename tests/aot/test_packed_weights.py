"""Clustered weights stored as 4-bit indices + per-channel tables in the generated C, decoded bit-exactly.

Single-op models whose weights take at most 16 values per channel exercise every
kernel path that reads packed weights (conv four-channel and single-channel,
dilated, grouped; depthwise dm 1 and 2; FC per-channel, per-tensor, batched);
the digits CNN clustered by the ``cluster`` stage shows the bytes saved.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from aot_models import convert, random_inputs
from conftest import require_tools

from edgekit.aot import generate, generated_inputs, host_check
from edgekit.aot.graph import parse
from edgekit.aot.packing import pack4, packed_bytes, unpack4
from edgekit.compress.cluster import pack_indices, unpack_indices
from edgekit.errors import InputError

rng = np.random.default_rng(7)


def _clustered(*shape, axis: int = -1) -> tf.Tensor:
    """Seeded weights with at most 12 distinct values along each slice of ``axis`` (int8 keeps them distinct)."""
    levels = np.linspace(-1.0, 1.0, 12, dtype=np.float32)
    w = levels[rng.integers(0, 12, size=shape)] * np.float32(0.4)
    w *= np.logspace(0, 1, shape[axis]).astype(np.float32).reshape([-1 if d == axis % len(shape) else 1 for d in range(len(shape))])
    return tf.constant(w)


def _conv(in_c, oc, k, dil=1, groups=1):
    w, b = _clustered(k, k, in_c // groups, oc), _clustered(oc)
    return lambda x: tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME", dilations=dil) + b)


def _dw(in_c, dm, k, stride=1):
    w, b = _clustered(k, k, in_c, dm, axis=-2), _clustered(in_c * dm)
    return lambda x: tf.nn.depthwise_conv2d(x, w, [1, stride, stride, 1], "SAME") + b


def _fc(depth, units):
    w, b = _clustered(depth, units), _clustered(units)
    return lambda x: tf.matmul(x, w) + b


CASES = {
    "conv_4ch_pass_and_remainder_odd_rows": (_conv(3, 6, 3), [1, 7, 7, 3], {}),
    "conv_dilation2": (_conv(2, 5, 3, dil=2), [1, 9, 9, 2], {}),
    "conv_grouped": (_conv(4, 6, 3, groups=2), [1, 6, 6, 4], {}),
    "conv_batch2": (_conv(3, 9, 3), [2, 5, 6, 3], {}),
    "dw_dm1_4ch": (_dw(5, 1, 3), [1, 8, 8, 5], {}),
    "dw_dm2_stride2": (_dw(3, 2, 4, 2), [1, 9, 10, 3], {}),
    "fc_per_channel_odd_depth": (_fc(21, 7), [1, 21], {}),
    "fc_per_tensor": (_fc(33, 9), [1, 33], {"per_tensor_dense": True}),
    "fc_batched_3d": (_fc(13, 5), [1, 3, 13], {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_packed_kernels_bit_exact(case, tmp_path):
    require_tools("gcc")
    fn, shape, kw = CASES[case]
    tfl = convert(fn, shape, **kw)
    r = host_check(tfl, random_inputs(tfl, 16, seed=5), tmp_path, weight_bits=4)
    assert len(r.codegen.packed_weight_tensors) == 1, r.codegen.packed_weight_tensors
    assert r.codegen.weight_scratch_bytes > 0
    assert r.bit_exact_fraction == 1.0, r.to_dict()


def test_numpy_packer_matches_cluster_format():
    for shape, axis in (((6, 3, 3, 5), 0), ((1, 3, 3, 6), 3), ((10, 33), 0)):
        vals = rng.integers(-128, 128, (shape[axis], 16)).astype(np.int8)
        ch = np.arange(shape[axis]).reshape([-1 if d == axis else 1 for d in range(len(shape))])
        w = vals[np.broadcast_to(ch, shape), rng.integers(0, 16, shape)]
        packed, table = pack4(w, axis)
        ref_packed, ref_table = pack_indices(w, 4, axis)
        assert packed == ref_packed and np.array_equal(table, ref_table)
        assert len(packed) + table.size == packed_bytes(shape, axis)
        assert np.array_equal(unpack4(packed, table, shape, axis), w)
        assert np.array_equal(unpack_indices(packed, table, shape, 4, axis), w)
    assert pack4(np.arange(-20, 20, dtype=np.int8).reshape(2, 20), 0) is None  # 20 values in a channel


def test_weight_bits_is_checked(tmp_path):
    tfl = convert(_fc(8, 3), [1, 8])
    with pytest.raises(InputError, match="weight_bits must be 4, 8 or None"):
        generate(tfl, tmp_path, weight_bits=2)


def _cluster_digits(d):
    from edgekit.compress import apply_recipe
    from edgekit.convert import convert_int8
    from edgekit.data import load_data
    from edgekit.load import load_model
    from edgekit.recipe import Recipe

    loaded = load_model(d / "model.keras")
    train, calib = load_data(d / "train.npz", "train"), load_data(d / "calib.npz", "calib")
    recipe = Recipe.from_dict({"stage": [{"name": "cluster", "clusters": 16, "epochs": 1}]})
    return convert_int8(loaded, calib), convert_int8(apply_recipe(loaded, recipe, train=train, seed=0).model, calib)


@pytest.fixture(scope="module")
def digits_models(digits_dir):
    return _cluster_digits(digits_dir)


def test_clustered_digits_packed_bit_exact_and_45_percent_smaller(digits_models, tmp_path):
    require_tools("gcc")
    _, clus = digits_models
    x = generated_inputs(clus, 100, seed=0)
    packed = host_check(clus, x, tmp_path / "auto")
    plain = host_check(clus, x, tmp_path / "plain", weight_bits=8)
    assert packed.bit_exact_fraction == 1.0 and plain.bit_exact_fraction == 1.0
    kinds = {op.name for op in parse(clus).ops}
    assert {"CONV_2D", "FULLY_CONNECTED"} <= kinds
    # conv 3x3x16x32 and dense 2048x32 pay; the 144-weight conv and the 320-weight dense would not
    assert len(packed.codegen.packed_weight_tensors) == 2
    assert plain.codegen.packed_weight_tensors == []
    cut = 1 - packed.codegen.weight_bytes / plain.codegen.weight_bytes
    assert cut >= 0.45, (packed.codegen.weight_bytes, plain.codegen.weight_bytes)
    assert packed.codegen.weight_scratch_bytes == 2048  # one dense row; conv needs 4 x 144


def test_unclustered_digits_code_is_identical_auto_vs_8(digits_models, tmp_path):
    base, _ = digits_models
    a = generate(base, tmp_path / "auto")
    b = generate(base, tmp_path / "eight", weight_bits=8)
    assert a.packed_weight_tensors == [] and a.weight_scratch_bytes == b.weight_scratch_bytes == 2 * 2 * 3 * 3 * 16  # im2col, int16
    assert a.weight_bytes == b.weight_bytes
    for name in a.files:
        assert (tmp_path / "auto" / name).read_bytes() == (tmp_path / "eight" / name).read_bytes(), name


def test_cli_weight_bits(digits_models, tmp_path, capsys):
    import json

    from edgekit.cli import main

    _, clus = digits_models
    model = tmp_path / "clus.tflite"
    model.write_bytes(clus)
    sizes = {}
    for bits in ("auto", "8"):
        rc = main(["codegen", str(model), "--out", str(tmp_path / bits), "--weight-bits", bits, "--json"])
        assert rc == 0
        d = json.loads(capsys.readouterr().out)
        sizes[bits] = (d["weight_bytes"], len(d["packed_weight_tensors"]))
    assert sizes["auto"][1] == 2 and sizes["8"][1] == 0 and sizes["auto"][0] < 0.55 * sizes["8"][0]
    assert main(["codegen", str(model), "--out", str(tmp_path / "x"), "--weight-bits", "2"]) == 2
