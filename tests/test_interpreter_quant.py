"""The interpreter's quant ops against a naive, independent numpy reference."""

import numpy as np
import pytest
from xdsl.parser import Parser

from tinymlir.context import make_context
from tinymlir.dialects.quant import UniformQuantizedType
from tinymlir.interpreter import InterpreterError, run_function


def parse(text: str):
    module = Parser(make_context(), text).parse_module()
    module.verify()
    return module


def naive_conv(x, w, stride, pad, groups):
    """Direct loops over every output element: slow and obviously right."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, o, oh, ow), dtype=np.int64)
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(oh):
            for j in range(ow):
                patch = xp[0, g * cg : (g + 1) * cg, i * stride : i * stride + kh, j * stride : j * stride + kw]
                out[0, oc, i, j] = np.sum(patch.astype(np.int64) * w[oc].astype(np.int64))
    return out


def qt_text(scale, zp):
    return f"!quant.uniform<i8:f32, {scale!r}:{zp}>"


@pytest.mark.parametrize("groups,stride,pad", [(1, 1, 0), (1, 2, 1), (4, 1, 1), (2, 2, 1)])
def test_quant_conv2d_matches_naive(groups, stride, pad):
    rng = np.random.default_rng(groups * 10 + stride)
    c, o, k, hw = 4, 4, 3, 7
    x = rng.integers(-128, 128, (1, c, hw, hw), dtype=np.int8)
    w = rng.integers(-127, 128, (o, c // groups, k, k), dtype=np.int8)
    b = rng.integers(-5000, 5000, (o,), dtype=np.int32)
    sx, zx, sy, zy = float(np.float32(0.05)), 3, float(np.float32(0.2)), -7
    sw = [float(np.float32(s)) for s in rng.uniform(0.001, 0.02, o)]
    wt = "!quant.uniform<i8:f32:0, {" + ", ".join(f"{s!r}:0" for s in sw) + "}>"
    bt = "!quant.uniform<i32:f32:0, {" + ", ".join(f"{sx * s!r}:0" for s in sw) + "}>"
    oh = (hw + 2 * pad - k) // stride + 1
    xt, yt = f"tensor<1x{c}x{hw}x{hw}x{qt_text(sx, zx)}>", f"tensor<1x{o}x{oh}x{oh}x{qt_text(sy, zy)}>"
    wtt, btt = f"tensor<{o}x{c // groups}x{k}x{k}x{wt}>", f"tensor<{o}x{bt}>"
    module = parse(f"""
    func.func @forward(%x: {xt}, %w: {wtt}, %b: {btt}) -> {yt} {{
      %y = quant.conv2d %x, %w, %b {{strides = array<i64: {stride}, {stride}>, pads = array<i64: {pad}, {pad}, {pad}, {pad}>,
           dilations = array<i64: 1, 1>, groups = {groups} : i64, act_min = -100 : i32}} : ({xt}, {wtt}, {btt}) -> {yt}
      func.return %y : {yt}
    }}""")
    got = run_function(module, [x, w, b])[0]
    acc = naive_conv(x.astype(np.int64) - zx, w, stride, pad, groups) + b[None, :, None, None]
    real = acc * (sx * np.array(sw))[None, :, None, None]
    want = np.clip(np.rint(real / sy) + zy, -100, 127)
    np.testing.assert_array_equal(got, want.astype(np.int8))


def test_requantization_rounds_half_to_even():
    # (q - 0) * 1.0 / 2.0: the values 1, 3, 5 land exactly on .5 ties.
    t_in, t_out = "tensor<4x!quant.uniform<i8:f32, 1.0:0>>", "tensor<4x!quant.uniform<i8:f32, 2.0:0>>"
    module = parse(f"""
    func.func @forward(%x: {t_in}) -> {t_out} {{
      %y = quant.requantize %x : {t_in} -> {t_out}
      func.return %y : {t_out}
    }}""")
    got = run_function(module, [np.array([1, 3, 5, -3], dtype=np.int8)])[0]
    np.testing.assert_array_equal(got, [0, 2, 2, -2])


def test_add_and_global_avg_pool():
    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, (1, 3, 4, 4), dtype=np.int8)
    b = rng.integers(-128, 128, (1, 3, 4, 4), dtype=np.int8)
    ta, tb, ty = qt_text(0.1, 5), qt_text(0.05, -3), qt_text(0.12, 1)
    t = lambda q, s="1x3x4x4": f"tensor<{s}x{q}>"  # noqa: E731
    module = parse(f"""
    func.func @forward(%a: {t(ta)}, %b: {t(tb)}) -> ({t(ty)}, {t(ty, "1x3x1x1")}) {{
      %s = quant.add %a, %b : ({t(ta)}, {t(tb)}) -> {t(ty)}
      %g = quant.global_avg_pool %s : ({t(ty)}) -> {t(ty, "1x3x1x1")}
      func.return %s, %g : {t(ty)}, {t(ty, "1x3x1x1")}
    }}""")
    s, g = run_function(module, [a, b])
    want_s = np.clip(np.rint(((a - 5.0) * 0.1 + (b + 3.0) * 0.05) / 0.12) + 1, -128, 127)
    np.testing.assert_array_equal(s, want_s)
    want_g = np.clip(np.rint((want_s - 1.0).sum(axis=(2, 3), keepdims=True) * 0.12 / 16 / 0.12) + 1, -128, 127)
    np.testing.assert_array_equal(g, want_g)


def test_quantize_dequantize_follow_onnx():
    ort = pytest.importorskip("onnxruntime")
    import onnx
    from onnx import TensorProto, helper

    x = np.linspace(-3, 3, 64, dtype=np.float32).reshape(1, 64)
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
        "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64]), helper.make_tensor_value_info("q", TensorProto.INT8, [1, 64])],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [0.0470588]), helper.make_tensor("z", TensorProto.INT8, [], [-5])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want_y, want_q = sess.run(None, {"x": x})
    s = float(np.float32(0.0470588))
    qt = f"tensor<1x64x{qt_text(s, -5)}>"
    module = parse(f"""
    func.func @forward(%x: tensor<1x64xf32>) -> ({qt}, tensor<1x64xf32>) {{
      %q = quant.quantize %x : tensor<1x64xf32> -> {qt}
      %y = quant.dequantize %q : {qt} -> tensor<1x64xf32>
      func.return %q, %y : {qt}, tensor<1x64xf32>
    }}""")
    q, y = run_function(module, [x])
    np.testing.assert_array_equal(q, want_q)
    np.testing.assert_array_equal(y, want_y)
    del onnx


def test_uniform_type_round_trips_and_checks():
    t = UniformQuantizedType("i8", [0.1, 0.25], [0, 0], axis=0)
    text = str(t)
    assert text == "!quant.uniform<i8:f32:0, {0.1:0, 0.25:0}>"
    assert Parser(make_context(), text).parse_type() == t
    u = UniformQuantizedType("u8", 0.5, 128)
    assert (u.storage_min, u.storage_max, u.storage_dtype) == (0, 255, np.dtype("uint8"))


def test_bad_inputs_are_reported():
    module = parse("""
    func.func @forward(%x: tensor<1x4xf32>) -> tensor<1x4xf32> {
      %y = nn.relu %x : (tensor<1x4xf32>) -> tensor<1x4xf32>
      func.return %y : tensor<1x4xf32>
    }""")
    with pytest.raises(InterpreterError, match=r"expected shape \[1, 4\], got \[2, 4\]"):
        run_function(module, [np.zeros((2, 4), np.float32)])
    with pytest.raises(InterpreterError, match="takes 1 inputs, got 0"):
        run_function(module, [])
    with pytest.raises(InterpreterError, match="no function @main"):
        run_function(module, [np.zeros((1, 4), np.float32)], name="main")
