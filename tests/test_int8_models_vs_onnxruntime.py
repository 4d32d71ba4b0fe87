"""The int8 shared models: importer + fuse-qdq + interpreter (exact semantics) vs onnxruntime.

onnxruntime's QDQ kernels round differently from the exact semantics (see the models'
README), so we require the same top-1 class and a few LSB of difference on the logits.
"""

import numpy as np
import pytest
from shared_models import MODEL_NAMES, sample_photos, shared_model

from tinymlir.dialects import quant
from tinymlir.frontend import import_onnx
from tinymlir.interpreter import run_function
from tinymlir.passes.fuse_qdq import FuseQDQPass

ort = pytest.importorskip("onnxruntime")

MAX_LSB = 8


def output_scale(module) -> float:
    (dq,) = [op for op in module.walk() if isinstance(op, quant.DequantizeOp)]
    return quant.qtype(dq.input).scale


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_int8_model_matches_onnxruntime_on_photos(name):
    path = shared_model(f"{name}-int8.onnx")
    module = import_onnx(str(path))
    FuseQDQPass().apply(None, module)  # the context is not used by the pass
    scale = output_scale(module)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x in sample_photos():
        (got,) = run_function(module, [x])
        (want,) = sess.run(None, {sess.get_inputs()[0].name: x})
        lsb = np.abs(got.astype(np.float64) - want) / scale
        print(f"{name}: top-1 {got.argmax()} vs {want.argmax()}, max {lsb.max():.0f} LSB, "
              f"{np.mean(lsb > 0.5):.1%} of logits differ")
        assert got.argmax() == want.argmax()
        assert lsb.max() <= MAX_LSB
