"""``edgekit inspect`` and the .tflite reader, checked against Keras and LiteRT's own view of the model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.cli import main
from edgekit.tflite_model import read_model
from test_tflm_models import digits_tflite, single_op_tflite


def _inspect_json(capsys, *args) -> dict:
    rc = main(["inspect", *map(str, args), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_reader_agrees_with_keras_and_litert(digits_dir, tmp_path):
    import keras
    from ai_edge_litert.interpreter import Interpreter

    tfl = digits_tflite(str(digits_dir))
    info = read_model(tfl)
    km = keras.models.load_model(digits_dir / "model.keras")
    kernels = sum(int(np.prod(w.shape)) for l in km.layers for w in l.weights if len(w.shape) > 1)
    biases = sum(int(np.prod(w.shape)) for l in km.layers for w in l.weights if len(w.shape) == 1)
    # the converter adds only a few int32 shape constants (RESHAPE's target shape)
    assert km.count_params() <= info.param_count <= km.count_params() + 8
    assert kernels + 4 * biases <= info.weight_bytes <= kernels + 4 * biases + 32
    ip = Interpreter(model_content=tfl)
    for spec, d in ((info.inputs[0], ip.get_input_details()[0]), (info.outputs[0], ip.get_output_details()[0])):
        assert spec.shape == tuple(d["shape"]) and spec.dtype == np.dtype(d["dtype"]).name
        assert (np.float32(spec.scale), spec.zero_point) == (np.float32(d["quantization"][0]), d["quantization"][1])
    assert info.size_bytes == len(tfl) and info.op_count == len(info.ops)
    # activation bytes: every non-constant tensor once; Keras' layer outputs are a subset of them
    outs = sum(int(np.prod(l.output.shape[1:])) for l in km.layers)
    assert outs <= info.activation_bytes == sum(t["bytes"] for t in info.tensors if not t["constant"])
    assert info.largest_by_weights(1)[0].weight_bytes == max(o.weight_bytes for o in info.operators)


def test_inspect_json_digits(capsys, digits_dir, tmp_path):
    p = tmp_path / "digits.tflite"
    p.write_bytes(digits_tflite(str(digits_dir)))
    d = _inspect_json(capsys, p)
    assert d["size_bytes"] == p.stat().st_size and d["is_full_int8"] is True
    assert d["tflm"] == {"runnable": True, "problems": [], "float_ops": 0, "float_note": "", "missing_ops": []}
    assert d["inputs"][0]["dtype"] == "int8" and d["inputs"][0]["shape"] == [1, 8, 8, 1]
    assert {o["op"] for o in d["operators"]} == set(d["ops"]) and d["op_count"] == len(d["ops"])
    assert d["largest_by_weights"][0]["weight_bytes"] >= d["largest_by_weights"][-1]["weight_bytes"]


def test_inspect_with_target_measures_the_arena(capsys, digits_dir, tmp_path):
    p = tmp_path / "digits.tflite"
    p.write_bytes(digits_tflite(str(digits_dir)))
    d = _inspect_json(capsys, p, "--target", "cortex-m4")
    m = d["memory"]
    assert m["target"] == "cortex-m4" and m["arena_bytes"] > 0 and m["fits"] is True
    assert m["flash_bytes"] > d["size_bytes"]


def test_inspect_names_what_tflm_lacks(capsys, tmp_path):
    p = tmp_path / "gelu.tflite"
    p.write_bytes(single_op_tflite("gelu"))
    d = _inspect_json(capsys, p)
    assert d["tflm"]["runnable"] is False and d["tflm"]["missing_ops"] == ["GELU"]
    rc = main(["inspect", str(p)])
    out = capsys.readouterr().out
    assert rc == 0 and "TFLM can run it" in out and "GELU (layer 'Identity')" in out


@pytest.mark.parametrize("content,why", [(b"", "no 'TFL3' identifier"), (b"hello world, not a model", "no 'TFL3'"),
                                         (None, "not a TFLite flatbuffer")])
def test_bad_files_are_one_line_exit_2(capsys, tmp_path, digits_dir, content, why):
    p = tmp_path / "bad.tflite"
    p.write_bytes(content if content is not None else digits_tflite(str(digits_dir))[:2000])
    rc = main(["inspect", str(p)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(p) in err and why in err


def test_missing_file_is_exit_2(capsys, tmp_path):
    rc = main(["inspect", str(tmp_path / "nope.tflite")])
    err = capsys.readouterr().err
    assert rc == 2 and "nope.tflite: file not found" in err


@pytest.mark.shared_models
def test_inspect_every_shared_model(capsys, shared_models):
    paths = sorted(shared_models.rglob("*.tflite"))
    assert len(paths) >= 9
    for p in paths:
        d = _inspect_json(capsys, p)
        assert d["size_bytes"] == p.stat().st_size and d["ops"] and d["param_count"] > 0
        assert d["weight_bytes"] <= d["size_bytes"]
        assert d["tflm"]["runnable"] is True, (p.name, d["tflm"])
        assert (d["tflm"]["float_ops"] > 0) == ("float" in p.name)
        rc = main(["inspect", str(p)])
        assert rc == 0 and "TFLM can run it" in capsys.readouterr().out
    pd = _inspect_json(capsys, shared_models / "tflm" / "person_detect.tflite")
    assert pd["ops"] == ["AVERAGE_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "RESHAPE", "SOFTMAX"]
    assert pd["inputs"][0]["shape"] == [1, 96, 96, 1] and pd["inputs"][0]["zero_point"] == -1
