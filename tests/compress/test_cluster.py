"""Weight clustering on both Keras kinds, the n-bit index storage (byte layout, round trip, bytes saved) and TFLM's LUT compression."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.compress import cluster
from edgekit.convert import convert_int8
from edgekit.data import load_data
from edgekit.errors import ConversionError, InputError
from edgekit.load import load_model
from edgekit.quant_debug import tflite_accuracy


def _custom_ops(tflite: bytes) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    return sorted({c.customCode.decode() for c in model.operatorCodes if c.customCode})


def test_pack_layout_is_lsb_first_nibbles():
    packed, table = cluster.pack_indices(np.array([1, -2, 3], np.int8), bits=4, axis=None)
    assert table.shape == (1, 16) and list(table[0, :3]) == [-2, 1, 3] and not table[0, 3:].any()
    assert packed == b"\x01\x02"  # indices 1, 0, 2: low nibble first, zero padded


@pytest.mark.parametrize("bits,axis", [(4, 0), (4, 3), (4, None), (3, 0), (2, -1), (8, None)])
def test_pack_unpack_round_trip(bits, axis):
    rng = np.random.default_rng(bits)
    shape = (6, 3, 3, 5)
    chans = shape[axis if axis is not None else 0]
    values = rng.integers(-128, 128, (chans, 2**bits)).astype(np.int8)
    idx = rng.integers(0, 2**bits, shape)
    if axis is None:
        w = values[0][idx]
    else:
        ch = np.arange(shape[axis]).reshape([-1 if d == axis % 4 else 1 for d in range(4)])
        w = values[np.broadcast_to(ch, shape), idx]
    packed, table = cluster.pack_indices(w, bits, axis)
    assert len(packed) == (w.size * bits + 7) // 8
    assert table.shape == ((1 if axis is None else chans), 2**bits)
    assert np.array_equal(cluster.unpack_indices(packed, table, shape, bits, axis), w)


def test_pack_refuses_too_many_values():
    w = np.arange(-20, 20, dtype=np.int8).reshape(2, 20)
    with pytest.raises(InputError, match="channel 0 .* 20 distinct values; 4-bit"):
        cluster.pack_indices(w, 4, 0)
    with pytest.raises(InputError, match="int8"):
        cluster.pack_indices(w.astype(np.int16), 4, 0)


def test_config_is_strict():
    with pytest.raises(InputError, match="unknown parameter 'cluster'"):
        cluster.Config.from_dict({"cluster": 16})
    with pytest.raises(InputError, match="clusters must be"):
        cluster.Config.from_dict({"clusters": 1})
    assert cluster.Config.from_dict({"clusters": 8}).to_dict()["clusters"] == 8


def test_kmeans_is_deterministic_and_exact_on_few_values():
    v = np.repeat(np.array([-1.0, 0.0, 2.5], np.float32), 10)
    cent, idx = cluster.kmeans_1d(v, 16)
    assert list(cent) == [-1.0, 0.0, 2.5] and np.array_equal(cent[idx], v)


@pytest.fixture(scope="module", params=["keras3", "tf_keras"])
def clustered(request, digits_dir, digits_tfkeras_dir):
    d, name = (digits_dir, "model.keras") if request.param == "keras3" else (digits_tfkeras_dir, "model.h5")
    loaded = load_model(d / name)
    train, calib, ev = (load_data(d / f"{s}.npz", s) for s in ("train", "calib", "eval"))
    out, details = cluster.apply(loaded, cluster.Config(clusters=16, epochs=2), train, seed=0)
    base_tfl, clus_tfl = convert_int8(loaded, calib), convert_int8(out, calib)
    return request.param, loaded, out, details, base_tfl, clus_tfl, ev


@pytest.mark.slow
def test_clustering_cuts_device_weight_bytes_45_percent_within_1_point(clustered):
    kind, loaded, out, details, base_tfl, clus_tfl, ev = clustered
    json.dumps(details)  # the report stores it as is
    assert out.kind == kind and out.model is not loaded.model
    assert details["method"] == ("native" if kind == "keras3" else "tfmot")
    assert [r["layer"] for r in details["layers"]] and all(r["distinct_values"] <= 16 for r in details["layers"])
    plain = cluster.device_weight_bytes(base_tfl)
    packed = cluster.device_weight_bytes(clus_tfl)
    assert plain.indexed_bytes == plain.int8_bytes == 70608  # unclustered: nothing fits 16 values
    assert packed.int8_bytes == 70608 and packed.saving >= 0.45, packed.to_dict()
    acc_base = tflite_accuracy(base_tfl, ev.x, ev.y)
    acc_clus = tflite_accuracy(clus_tfl, ev.x, ev.y)
    assert acc_clus >= acc_base - 0.01, (acc_base, acc_clus)
    # the stored indices decode to exactly the int8 weights of the model
    for w in cluster.weight_tensors(clus_tfl):
        if w["data"].size >= 4096:
            p, t = cluster.pack_indices(w["data"], 4, w["axis"])
            assert np.array_equal(cluster.unpack_indices(p, t, w["data"].shape, 4, w["axis"]), w["data"])


@pytest.mark.slow
def test_tflm_compression_runs_bit_exact_in_the_tflm_interpreter(clustered):
    from tflite_micro import runtime

    *_, base_tfl, clus_tfl, ev = clustered
    small = cluster.tflm_compress(clus_tfl)
    assert len(small) < len(clus_tfl) - 30000
    assert _custom_ops(small) == ["TFLM_DECODE"] and _custom_ops(clus_tfl) == []
    x = np.clip(np.round(ev.x[:16] * 255) - 128, -128, 127).astype(np.int8)
    outs = []
    for buf in (clus_tfl, small):
        ip = runtime.Interpreter.from_bytes(buf)
        rows = []
        for i in range(len(x)):
            ip.set_input(x[i : i + 1], 0)
            ip.invoke()
            rows.append(ip.get_output(0).copy())
        outs.append(np.stack(rows))
    assert np.array_equal(outs[0], outs[1])
    with pytest.raises(ConversionError, match="nothing for TFLM to compress"):
        cluster.tflm_compress(base_tfl)


def test_cluster_needs_labels_to_fine_tune(digits_dir):
    loaded = load_model(digits_dir / "model.keras")
    with pytest.raises(InputError, match="no training data"):
        cluster.apply(loaded, cluster.Config(), None, 0)
    with pytest.raises(InputError, match="tf_keras"):
        cluster.apply(loaded, cluster.Config(method="tfmot", epochs=0), None, 0)
