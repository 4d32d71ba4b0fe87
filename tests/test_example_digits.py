"""The bundled digits example: valid ONNX, numpy == onnxruntime, accurate, deterministic."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tinymlir.examples import digits

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    # Training takes a few seconds: build once for the whole module.
    return digits.make_example(tmp_path_factory.mktemp("digits"), seed=0)


@pytest.fixture(scope="module")
def ort_logits(example):
    sess = ort.InferenceSession(str(example["onnx"]), providers=["CPUExecutionProvider"])
    x = np.load(example["test_x"])
    return np.concatenate([sess.run(["logits"], {"input": xi[None]})[0] for xi in x])


def _params_from_onnx(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


def test_files_and_shapes(example):
    calib = np.load(example["calib"])
    x, y = np.load(example["test_x"]), np.load(example["test_y"])
    assert calib.shape == (32, 1, 16, 16) and calib.dtype == np.float32
    assert x.shape[1:] == (1, 16, 16) and x.dtype == np.float32
    assert y.shape == (len(x),) and y.dtype == np.int64
    assert -1.0 <= x.min() and x.max() <= 1.0


def test_onnx_is_valid(example):
    model = onnx.load(example["onnx"])
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    ops = [n.op_type for n in model.graph.node]
    for op in ("Conv", "BatchNormalization", "Relu", "Clip", "GlobalAveragePool", "Flatten", "Gemm"):
        assert op in ops
    assert any(a.name == "group" and a.i == 8 for n in model.graph.node for a in n.attribute)
    # The BatchNormalization must carry real (non-identity) statistics.
    p = _params_from_onnx(example["onnx"])
    assert np.abs(p["bn1.mean"]).max() > 1e-3 and np.abs(p["bn1.var"] - 1).max() > 1e-3


def test_numpy_matches_onnxruntime(example, ort_logits):
    params = _params_from_onnx(example["onnx"])
    ref = digits.forward(params, np.load(example["test_x"]))
    assert ort_logits.shape == ref.shape
    assert np.abs(ort_logits - ref).max() <= 1e-4
    y = np.load(example["test_y"])
    assert float((ref.argmax(1) == y).mean()) == pytest.approx(example["accuracy"])


def test_onnxruntime_accuracy(example, ort_logits):
    y = np.load(example["test_y"])
    assert (ort_logits.argmax(1) == y).mean() >= 0.85


def test_deterministic(tmp_path):
    data = digits.load_digits_dataset()
    a = digits.export_onnx(digits.train_digits_cnn(seed=0, epochs=1, data=data), tmp_path / "a.onnx")
    b = digits.export_onnx(digits.train_digits_cnn(seed=0, epochs=1, data=data), tmp_path / "b.onnx")
    assert a.read_bytes() == b.read_bytes()
