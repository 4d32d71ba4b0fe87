"""Imported models run in the reference interpreter vs onnxruntime and ONNX's own node tests.

1. The fp32 shared models: importer + interpreter vs onnxruntime on a random input.
2. com.microsoft QLinearAdd / QLinearGlobalAveragePool (ONNX has no node tests for them)
   vs onnxruntime.
3. ONNX's backend node tests for every op the importer supports. The onnx wheel (1.23)
   ships the test generators (`onnx.backend.test.case.node.<op>`) but not the
   `data/node/<name>/` directories, so the cases are generated in memory from those
   modules (the `data/node` directories are used instead when an onnx build has them).

   Two adjustments, both mechanical:
   - The generated models are stamped with onnx 1.23's newest opset of each op (22-28),
     or an old one (10-11) for a few; the importer reads opsets 13-21. The ops tested
     here have the same semantics for float32 / int8 / uint8 / int32 at opset 21 (later
     versions only added element types and attributes), so the harness re-stamps the
     default-domain opset to 13..21; `onnx.checker` then validates the model at that
     opset, and a model that uses something newer is skipped with the checker's reason.
   - Node tests pass scales, zero-points, shapes, pads, axes and clip bounds as graph
     inputs; the importer needs them constant. When the importer says "'name' must be
     a constant", the harness turns that graph input into an initializer holding the
     test's data and imports again.

   A case the importer rejects for a documented reason (e.g. a 3-D pool, ceil_mode, a
   non-constant pad mode, an element type tinymlir does not have) is skipped with the
   importer's one-line message; every case that imports must match the expected output
   (float: rtol 1e-5, atol 1e-6; integers: exactly).
"""

from __future__ import annotations

import glob
import importlib
import re
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tinymlir.frontend import OnnxImportError, import_onnx
from tinymlir.frontend.onnx_importer import MAX_OPSET, MIN_OPSET

interpreter = pytest.importorskip("tinymlir.interpreter", reason="the reference interpreter is not available")
ort = pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[1]
from shared_models import MODELS  # noqa: E402
FP32_MODELS = ["mcunet-5fps-fp32", "mbv2-w0.35-fp32", "proxyless-w0.3-fp32"]


def run(module, inputs):
    return interpreter.run_function(module, inputs, name="forward")


# -- 1. shared fp32 models ---------------------------------------------------------------
@pytest.mark.parametrize("name", FP32_MODELS)
def test_fp32_model_matches_onnxruntime(name):
    path = MODELS / f"{name}.onnx"
    if not path.exists():
        pytest.skip(f"shared model {path} not found (set TINYMLIR_MODELS to the models directory)")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32)
    (got,) = run(import_onnx(str(path)), [x])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {sess.get_inputs()[0].name: x})
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)
    assert got.argmax() == want.argmax()


# -- 2. com.microsoft QOperators vs onnxruntime ------------------------------------------
def _ms_model(nodes, inputs, outputs, inits):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("storage", [TensorProto.UINT8, TensorProto.INT8])
def test_qlinear_add_and_gap_match_onnxruntime(storage):
    dt = np.uint8 if storage == TensorProto.UINT8 else np.int8
    lo, hi = np.iinfo(dt).min, np.iinfo(dt).max
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(v, n) for n, v in [
        ("sa", np.float32(0.031)), ("za", dt(7)), ("sb", np.float32(0.047)), ("zb", dt(-3 if lo < 0 else 200)),
        ("sc", np.float32(0.06)), ("zc", dt(11)), ("sg", np.float32(0.02)), ("zg", dt(-5 if lo < 0 else 5))]]
    nodes = [
        helper.make_node("QLinearAdd", ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["c"], domain="com.microsoft"),
        helper.make_node("QLinearGlobalAveragePool", ["c", "sc", "zc", "sg", "zg"], ["y"], domain="com.microsoft",
                         channels_last=0),
    ]
    m = _ms_model(nodes, [helper.make_tensor_value_info("a", storage, [1, 4, 5, 5]),
                          helper.make_tensor_value_info("b", storage, [1, 4, 5, 5])],
                  [helper.make_tensor_value_info("c", storage, [1, 4, 5, 5]),
                   helper.make_tensor_value_info("y", storage, [1, 4, 1, 1])], inits)
    a = rng.integers(lo, hi + 1, (1, 4, 5, 5)).astype(dt)
    b = rng.integers(lo, hi + 1, (1, 4, 5, 5)).astype(dt)
    got = run(import_onnx(m), [a, b])
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"a": a, "b": b})
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        # onnxruntime's QLinear kernels use a float32 lookup / fixed-point path: allow 1 LSB.
        assert np.abs(g.astype(np.int32) - w.astype(np.int32)).max() <= 1


# -- 3. ONNX backend node tests ----------------------------------------------------------
# Modules of onnx.backend.test.case.node whose ops the importer supports.
NODE_MODULES = [
    "constant", "conv", "gemm", "matmul", "relu", "clip", "add", "sub", "mul", "div", "maxpool", "averagepool",
    "globalaveragepool", "flatten", "reshape", "squeeze", "unsqueeze", "transpose", "concat", "pad", "softmax",
    "batch_normalization", "identity", "dropout", "quantizelinear", "dequantizelinear", "qlinearconv",
    "qlinearmatmul", "convinteger", "matmulinteger",
]
NODE_PREFIXES = (
    "test_constant", "test_conv", "test_basic_conv", "test_gemm", "test_matmul", "test_relu", "test_clip",
    "test_add", "test_sub", "test_mul", "test_div", "test_maxpool", "test_averagepool", "test_globalaveragepool",
    "test_flatten", "test_reshape", "test_squeeze", "test_unsqueeze", "test_transpose", "test_concat",
    "test_constant_pad", "test_edge_pad", "test_reflect_pad", "test_wrap_pad", "test_softmax", "test_batchnorm",
    "test_identity", "test_dropout", "test_training_dropout", "test_quantizelinear", "test_dequantizelinear",
    "test_qlinearconv", "test_qlinearmatmul", "test_convinteger", "test_matmulinteger",
)


def _data_dir_cases():
    root = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"
    if not root.is_dir():
        return None
    cases = {}
    for d in sorted(root.iterdir()):
        if not d.name.startswith(NODE_PREFIXES) or "expanded" in d.name or not (d / "test_data_set_0").is_dir():
            continue

        def read(pattern, d=d):
            out = []
            for f in sorted(glob.glob(str(d / "test_data_set_0" / pattern)), key=lambda p: int(re.findall(r"\d+", Path(p).name)[0])):
                t = TensorProto()
                t.ParseFromString(Path(f).read_bytes())
                out.append(numpy_helper.to_array(t))
            return out

        cases[d.name] = (lambda d=d, read=read: (onnx.load(str(d / "model.onnx")), read("input_*.pb"), read("output_*.pb")))
    return cases


def _generated_cases():
    import onnx.backend.test.case.node as node_cases

    node_cases._TargetOpType = None  # collect every op's cases, not a single one
    for mod in NODE_MODULES:
        importlib.import_module(f"onnx.backend.test.case.node.{mod}")
    cases = {}
    for case in node_cases._NodeTestCases:
        if case.name.startswith(NODE_PREFIXES) and "expanded" not in case.name and case.model is not None:
            inputs, outputs = case.data_sets[0]
            cases[case.name] = (lambda c=case, i=inputs, o=outputs: (c.model, list(i), list(o)))
    return cases


def _collect():
    try:
        return _data_dir_cases() or _generated_cases()
    except Exception as e:  # an onnx without the test generators
        pytest.skip(f"cannot collect ONNX node tests: {e}", allow_module_level=True)


NODE_CASES = _collect()


def _restamp_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = min(max(o.version, MIN_OPSET), MAX_OPSET)
    return m


def _freeze(model: onnx.ModelProto, name: str, value: np.ndarray) -> onnx.ModelProto:
    """Turn graph input `name` into an initializer holding `value`."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = [vi for vi in m.graph.input if vi.name != name]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    if isinstance(value, TensorProto):
        t = TensorProto()
        t.CopyFrom(value)
        t.name = name
    else:
        t = numpy_helper.from_array(np.asarray(value), name)
    m.graph.initializer.append(t)
    return m


def _array(v) -> np.ndarray:
    return numpy_helper.to_array(v) if isinstance(v, TensorProto) else np.asarray(v)


SKIPS: Counter[str] = Counter()


def _skip_reason(msg: str) -> str:
    """A short category for the summary printed at the end."""
    msg = re.sub(r"\(node [^)]*\)", "", msg)
    msg = re.sub(r"'[^']*'", "'…'", msg)
    return msg[:110]


@pytest.mark.parametrize("name", sorted(NODE_CASES))
def test_onnx_node(name):
    model, inputs, outputs = NODE_CASES[name]()
    model = _restamp_opset(model)
    feeds = dict(zip([vi.name for vi in model.graph.input], inputs))
    for _ in range(len(feeds) + 1):
        try:
            module = import_onnx(model)
            break
        except OnnxImportError as e:
            m = re.search(r"'([^']+)' must be a constant", str(e))
            if m and m.group(1) in feeds:
                model = _freeze(model, m.group(1), feeds.pop(m.group(1)))
                continue
            SKIPS[_skip_reason(str(e))] += 1
            pytest.skip(f"importer rejects it: {e}")
    args = [_array(feeds[vi.name]) for vi in model.graph.input if vi.name in feeds]
    got = run(module, args)
    assert len(got) == len(outputs)
    for g, w in zip(got, outputs):
        w = _array(w)
        assert g.shape == w.shape
        if np.issubdtype(w.dtype, np.floating):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
        else:
            assert g.dtype == w.dtype, (g.dtype, w.dtype)
            np.testing.assert_array_equal(g, w)


def test_zz_print_node_test_skip_summary():
    """Not a check: prints how many node tests were skipped and why (run with -s)."""
    for reason, n in SKIPS.most_common():
        print(f"\n  {n:3d} x {reason}", end="")
    print()
