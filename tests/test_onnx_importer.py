"""The ONNX frontend: small handmade graphs per op, error diagnostics, the shared models."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.dialects.func import FuncOp
from xdsl.parser import Parser

from tinymlir.context import make_context
from tinymlir.dialects.quant import UniformQuantizedType
from tinymlir.frontend import OnnxImportError, import_onnx, parse_onnx_for_opt

F, I8, U8, I32 = TensorProto.FLOAT, TensorProto.INT8, TensorProto.UINT8, TensorProto.INT32

REPO = Path(__file__).resolve().parents[1]
from shared_models import MODELS  # noqa: E402
SHARED = [
    "mcunet-5fps-int8", "mbv2-w0.35-int8", "proxyless-w0.3-int8",
    "mcunet-5fps-fp32", "mbv2-w0.35-fp32", "proxyless-w0.3-fp32",
]


# -- helpers ---------------------------------------------------------------------------
def vi(name, shape, elem=F):
    return helper.make_tensor_value_info(name, elem, shape)


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def model(nodes, inputs, outputs, inits=(), opset=17, ms=False):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    return helper.make_model(graph, opset_imports=opsets)


def forward(m: ModuleOp) -> FuncOp:
    (fn,) = [op for op in m.ops if isinstance(op, FuncOp)]
    assert fn.sym_name.data == "forward"
    return fn


def op_names(m: ModuleOp) -> list[str]:
    return [op.name for op in forward(m).body.block.ops]


def result_shapes(m: ModuleOp) -> list[tuple[int, ...]]:
    return [tuple(t.get_shape()) for t in forward(m).function_type.outputs.data]


def imported(proto) -> ModuleOp:
    m = import_onnx(proto)
    m.verify()
    return m


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def error_of(proto_or_path) -> str:
    with pytest.raises(OnnxImportError) as info:
        import_onnx(proto_or_path)
    msg = str(info.value)
    assert "\n" not in msg and msg, msg
    return msg


# -- float ops -------------------------------------------------------------------------
def test_conv_and_signature():
    m = imported(model(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2], group=1, name="c0")],
        [vi("x", [1, 3, 8, 8])], [vi("y", [1, 4, 4, 4])], [init("w", rnd(4, 3, 3, 3)), init("b", rnd(4))]))
    assert op_names(m) == ["arith.constant", "arith.constant", "nn.conv2d", "func.return"]
    fn = forward(m)
    assert fn.body.block.args[0].name_hint == "x"
    assert [tuple(t.get_shape()) for t in fn.function_type.inputs.data] == [(1, 3, 8, 8)]
    assert result_shapes(m) == [(1, 4, 4, 4)]


def test_conv_auto_pad_same_upper_and_depthwise():
    m = imported(model(
        [helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2], group=3)],
        [vi("x", [1, 3, 7, 7])], [vi("y", [1, 3, 4, 4])], [init("w", rnd(3, 1, 3, 3))]))
    conv = next(op for op in forward(m).body.block.ops if op.name == "nn.conv2d")
    assert list(conv.pads.get_values()) == [1, 1, 1, 1]
    assert conv.groups.value.data == 3
    assert result_shapes(m) == [(1, 3, 4, 4)]


def test_gemm_matmul():
    m = imported(model(
        [helper.make_node("Gemm", ["a", "w", "c"], ["g"], transB=1, alpha=0.5),
         helper.make_node("MatMul", ["g", "k"], ["y"])],
        [vi("a", [2, 5])], [vi("y", [2, 3])],
        [init("w", rnd(4, 5)), init("c", rnd(4)), init("k", rnd(4, 3))]))
    assert "nn.gemm" in op_names(m) and "nn.matmul" in op_names(m)
    assert result_shapes(m) == [(2, 3)]


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_binary_broadcast(op):
    m = imported(model([helper.make_node(op, ["x", "y"], ["z"])],
                       [vi("x", [2, 3, 4]), vi("y", [3, 1])], [vi("z", [2, 3, 4])]))
    assert op_names(m) == [f"nn.{op.lower()}", "func.return"]


def test_relu_clip_softmax():
    m = imported(model(
        [helper.make_node("Relu", ["x"], ["r"]),
         helper.make_node("Clip", ["r", "lo", "hi"], ["c"]),
         helper.make_node("Clip", ["c", "", "hi"], ["c2"]),
         helper.make_node("Softmax", ["c2"], ["y"], axis=-1)],
        [vi("x", [2, 5])], [vi("y", [2, 5])],
        [init("lo", np.float32(0)), init("hi", np.float32(6))]))
    names = op_names(m)
    assert names == ["nn.relu", "nn.clip", "nn.clip", "nn.softmax", "func.return"]
    clips = [op for op in forward(m).body.block.ops if op.name == "nn.clip"]
    assert clips[0].min.value.data == 0 and clips[0].max.value.data == 6
    assert clips[1].min.value.data == -np.finfo(np.float32).max
    soft = next(op for op in forward(m).body.block.ops if op.name == "nn.softmax")
    assert soft.axis.value.data == 1


def test_batch_norm_pools():
    c = 4
    m = imported(model(
        [helper.make_node("BatchNormalization", ["x", "s", "b", "mu", "var"], ["bn"], epsilon=1e-3),
         helper.make_node("MaxPool", ["bn"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("AveragePool", ["mp"], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1),
         helper.make_node("GlobalAveragePool", ["ap"], ["y"])],
        [vi("x", [1, c, 8, 8])], [vi("y", [1, c, 1, 1])],
        [init("s", rnd(c)), init("b", rnd(c)), init("mu", rnd(c)), init("var", np.abs(rnd(c)) + 1)]))
    assert [n for n in op_names(m) if n.startswith("nn.")] == [
        "nn.batch_norm", "nn.max_pool", "nn.avg_pool", "nn.global_avg_pool"]
    assert result_shapes(m) == [(1, c, 1, 1)]


def test_data_movement():
    m = imported(model(
        [helper.make_node("Flatten", ["x"], ["f"], axis=2),           # [6, 20]
         helper.make_node("Reshape", ["f", "shape"], ["r"]),           # [3, 40]
         helper.make_node("Unsqueeze", ["r", "ax0"], ["u"]),           # [1, 3, 40]
         helper.make_node("Squeeze", ["u", "ax0"], ["s"]),             # [3, 40]
         helper.make_node("Transpose", ["s"], ["t"], perm=[1, 0]),     # [40, 3]
         helper.make_node("Concat", ["t", "t"], ["cat"], axis=-1),     # [40, 6]
         helper.make_node("Pad", ["cat", "pads", "pv"], ["p"]),        # [41, 8]
         helper.make_node("Identity", ["p"], ["i"]),
         helper.make_node("Dropout", ["i"], ["y"])],
        [vi("x", [2, 3, 4, 5])], [vi("y", [41, 8])],
        [init("shape", np.array([-1, 40], np.int64)), init("ax0", np.array([0], np.int64)),
         init("pads", np.array([0, 1, 1, 1], np.int64)), init("pv", np.float32(0.5))]))
    assert op_names(m) == ["nn.flatten", "nn.reshape", "nn.reshape", "nn.reshape", "nn.transpose", "nn.concat",
                           "nn.pad", "func.return"]
    assert result_shapes(m) == [(41, 8)]


def test_constant_node_and_constant_output():
    m = imported(model(
        [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(rnd(3), "k")),
         helper.make_node("Add", ["x", "k"], ["y"])],
        [vi("x", [3])], [vi("y", [3]), vi("k", [3])]))
    assert op_names(m) == ["arith.constant", "nn.add", "func.return"]
    assert result_shapes(m) == [(3,), (3,)]


def test_sanitized_input_names():
    m = imported(model([helper.make_node("Relu", ["input:0/a", ], ["y"])], [vi("input:0/a", [2])], [vi("y", [2])]))
    assert forward(m).body.block.args[0].name_hint == "input_0_a"


# -- QDQ -------------------------------------------------------------------------------
def qdq_conv_model():
    """Q -> DQ -> Conv(DQ w per-channel, DQ b int32) -> Q -> Flatten -> DQ, the shape of the shared models."""
    w = np.random.default_rng(1).integers(-127, 128, (4, 3, 1, 1)).astype(np.int8)
    ws = np.array([0.01, 0.02, 0.03, 0.04], np.float32)
    xs = np.float32(0.05)
    return model(
        [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
         helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
         helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
         helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"], axis=0),
         helper.make_node("Conv", ["xd", "wd", "bd"], ["c"]),
         helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["cq"]),
         helper.make_node("Flatten", ["cq"], ["fq"]),
         helper.make_node("DequantizeLinear", ["fq", "ys", "yz"], ["y"])],
        [vi("x", [1, 3, 2, 2])], [vi("y", [1, 16])],
        [init("xs", xs), init("xz", np.int8(0)), init("w", w), init("ws", ws), init("wz", np.zeros(4, np.int8)),
         init("b", np.array([1, -2, 3, 4], np.int32)), init("bs", ws * xs), init("bz", np.zeros(4, np.int32)),
         init("ys", np.float32(0.1)), init("yz", np.int8(-128))])


def test_qdq_conv_per_channel():
    m = imported(qdq_conv_model())
    names = op_names(m)
    assert names == ["quant.quantize", "quant.dequantize", "quant.constant", "quant.dequantize", "quant.constant",
                     "quant.dequantize", "nn.conv2d", "quant.quantize", "nn.flatten", "quant.dequantize", "func.return"]
    ops = list(forward(m).body.block.ops)
    wt = ops[2].result.type.element_type
    assert isinstance(wt, UniformQuantizedType) and wt.is_per_channel and wt.axis.data == 0
    assert wt.storage_name == "i8" and len(wt.scales) == 4
    bt = ops[4].result.type.element_type
    assert bt.storage_name == "i32" and bt.is_per_channel
    flat = ops[8]
    assert isinstance(flat.result.type.element_type, UniformQuantizedType)
    assert flat.result.type.element_type.zero_point == -128
    assert tuple(flat.result.type.get_shape()) == (1, 16)


def test_qdq_scales_are_float32():
    m = imported(qdq_conv_model())
    q = next(op for op in forward(m).body.block.ops if op.name == "quant.quantize")
    assert q.result.type.element_type.scale == float(np.float32(0.05))


def test_quantize_uint8_default_and_int_graph_io():
    # A uint8 graph input read by DequantizeLinear gets the DQ's quantized type; an int8
    # graph output stays quantized.
    m = imported(model(
        [helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["x"]),
         helper.make_node("QuantizeLinear", ["x", "s2"], ["y"])],
        [vi("xq", [2, 3], U8)], [vi("y", [2, 3], U8)],
        [init("s", np.float32(0.5)), init("z", np.uint8(128)), init("s2", np.float32(0.25))]))
    fn = forward(m)
    arg_t = fn.function_type.inputs.data[0]
    assert isinstance(arg_t, TensorType) and arg_t.element_type == UniformQuantizedType("u8", 0.5, 128)
    assert fn.function_type.outputs.data[0].element_type == UniformQuantizedType("u8", 0.25, 0)


@pytest.mark.parametrize("op", ["MaxPool", "Transpose", "Reshape", "Pad", "Concat"])
def test_data_movement_on_quantized(op):
    attrs, extra_inputs, inits = {}, [], [init("s", np.float32(0.1)), init("z", np.int8(3))]
    out_shape = [1, 2, 4, 4]
    if op == "MaxPool":
        attrs, out_shape = {"kernel_shape": [2, 2], "strides": [2, 2]}, [1, 2, 2, 2]
    elif op == "Transpose":
        attrs, out_shape = {"perm": [0, 2, 3, 1]}, [1, 4, 4, 2]
    elif op == "Reshape":
        extra_inputs, out_shape = ["shape"], [2, 16]
        inits.append(init("shape", np.array([2, 16], np.int64)))
    elif op == "Pad":
        extra_inputs, out_shape = ["pads"], [1, 2, 5, 5]
        inits.append(init("pads", np.array([0, 0, 1, 1, 0, 0, 0, 0], np.int64)))
    else:
        attrs, out_shape = {"axis": 1}, [1, 4, 4, 4]
    ins = ["q", "q"] if op == "Concat" else ["q"] + extra_inputs
    m = imported(model(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
         helper.make_node(op, ins, ["m"], **attrs),
         helper.make_node("DequantizeLinear", ["m", "s", "z"], ["y"])],
        [vi("x", [1, 2, 4, 4])], [vi("y", out_shape)], inits))
    moved = list(forward(m).body.block.ops)[1]
    assert moved.name.startswith("nn.")
    assert isinstance(moved.result.type.element_type, UniformQuantizedType)
    assert result_shapes(m) == [tuple(out_shape)]


# -- QOperator -------------------------------------------------------------------------
def qlinear_conv_model(per_channel=True, bias=True):
    w = np.random.default_rng(2).integers(-100, 100, (4, 3, 3, 3)).astype(np.int8)
    ws = np.array([0.01, 0.02, 0.03, 0.04], np.float32) if per_channel else np.float32(0.02)
    wz = np.zeros(4, np.int8) if per_channel else np.int8(0)
    inputs = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"] + (["b"] if bias else [])
    inits = [init("xs", np.float32(0.05)), init("xz", np.uint8(128)), init("w", w), init("ws", ws), init("wz", wz),
             init("ys", np.float32(0.2)), init("yz", np.uint8(100)), init("b", np.arange(4, dtype=np.int32))]
    return model([helper.make_node("QLinearConv", inputs, ["y"], pads=[1, 1, 1, 1])],
                 [vi("x", [1, 3, 5, 5], U8)], [vi("y", [1, 4, 5, 5], U8)], inits)


@pytest.mark.parametrize("per_channel", [True, False])
def test_qlinear_conv(per_channel):
    m = imported(qlinear_conv_model(per_channel))
    assert op_names(m) == ["quant.dequantize", "quant.constant", "quant.dequantize", "quant.constant",
                           "quant.dequantize", "nn.conv2d", "quant.quantize", "func.return"]
    ops = list(forward(m).body.block.ops)
    bias_t = ops[3].result.type.element_type
    assert bias_t.storage_name == "i32" and bias_t.is_per_channel == per_channel
    assert np.allclose(bias_t.scale_array(), np.float32(0.05) * np.atleast_1d(ops[1].result.type.element_type.scale_array()))
    assert forward(m).function_type.inputs.data[0].element_type == UniformQuantizedType("u8", float(np.float32(0.05)), 128)


def test_qlinear_matmul_and_add_and_gap():
    inits = [init("s", np.float32(0.1)), init("z", np.int8(0)), init("bs", np.array([0.1, 0.2], np.float32)),
             init("bz", np.zeros(2, np.int8)), init("b", np.ones((3, 2), np.int8)), init("sy", np.float32(0.3))]
    m = imported(model(
        [helper.make_node("QLinearMatMul", ["a", "s", "z", "b", "bs", "bz", "sy", "z"], ["mm"]),
         helper.make_node("QLinearAdd", ["mm", "sy", "z", "mm", "sy", "z", "s", "z"], ["add"], domain="com.microsoft"),
         helper.make_node("Reshape", ["add", "shape"], ["r"]),
         helper.make_node("QLinearGlobalAveragePool", ["r", "s", "z", "s", "z"], ["y"], domain="com.microsoft",
                          channels_last=0)],
        [vi("a", [4, 3], I8)], [vi("y", [1, 4, 1, 1], I8)],
        inits + [init("shape", np.array([1, 4, 2, 1], np.int64))], ms=True))
    names = [n for n in op_names(m) if n.startswith("nn.")]
    assert names == ["nn.matmul", "nn.add", "nn.reshape", "nn.global_avg_pool"]
    assert result_shapes(m) == [(1, 4, 1, 1)]
    bq = next(op for op in forward(m).body.block.ops if op.name == "quant.constant")
    assert bq.result.type.element_type.axis.data == 1  # per column of b


def test_conv_integer_and_matmul_integer():
    m = imported(model(
        [helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["c"]),
         helper.make_node("MatMulInteger", ["a", "b", "az"], ["mm"])],
        [vi("x", [1, 1, 3, 3], U8), vi("a", [2, 3], U8)], [vi("c", [1, 2, 2, 2], I32), vi("mm", [2, 2], I32)],
        [init("w", np.ones((2, 1, 2, 2), np.uint8)), init("xz", np.uint8(1)), init("wz", np.array([0, 1], np.uint8)),
         init("b", np.ones((3, 2), np.uint8)), init("az", np.uint8(3))]))
    outs = forward(m).function_type.outputs.data
    assert all(t.element_type == UniformQuantizedType("i32", 1.0, 0) for t in outs)
    assert [n for n in op_names(m) if n.startswith("nn.")] == ["nn.conv2d", "nn.matmul"]


# -- errors ----------------------------------------------------------------------------
def test_error_truncated_file(tmp_path):
    src = MODELS / "mcunet-5fps-int8.onnx"
    data = src.read_bytes()[:100] if src.exists() else qdq_conv_model().SerializeToString()[:100]
    f = tmp_path / "f.onnx"
    f.write_bytes(data)
    msg = error_of(str(f))
    assert "f.onnx" in msg and ("cannot read" in msg or "invalid ONNX model" in msg)


def test_error_garbage_bytes(tmp_path):
    f = tmp_path / "garbage.onnx"
    f.write_bytes(bytes(range(256)) * 4)
    msg = error_of(f)
    assert "garbage.onnx" in msg
    msg = error_of(b"\xff\xfe this is not a model")
    assert "<bytes>" in msg


def test_error_missing_file(tmp_path):
    assert "no such file" in error_of(str(tmp_path / "nope.onnx"))


def test_error_not_a_model():
    assert "expects a path" in error_of(42)


def test_error_unsupported_op():
    msg = error_of(model([helper.make_node("Sigmoid", ["x"], ["y"], name="sig_3")], [vi("x", [2])], [vi("y", [2])]))
    assert msg == "unsupported ONNX op 'Sigmoid' (node 'sig_3')"


def test_error_unnamed_node_location():
    msg = error_of(model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Tanh", ["r"], ["y"])],
                         [vi("x", [2])], [vi("y", [2])]))
    assert msg == "unsupported ONNX op 'Tanh' (node #1 -> 'y')"


def test_error_dynamic_dim():
    msg = error_of(model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", ["N", 3])], [vi("y", ["N", 3])]))
    assert msg == "input 'x' has a dynamic dimension 'N'; tinymlir needs static shapes"


def test_error_float16_input():
    msg = error_of(model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [2], TensorProto.FLOAT16)],
                         [vi("y", [2], TensorProto.FLOAT16)]))
    assert msg == "unsupported element type 'float16' for 'x'"


def test_error_opset_9():
    msg = error_of(model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [2])], [vi("y", [2])], opset=9))
    assert msg.startswith("opset 9 is not supported (13 to 21)")


def test_error_checker():
    bad = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [2])], [vi("y", [2])])
    bad.graph.node[0].input[0] = "nowhere"
    msg = error_of(bad)
    assert msg.startswith("invalid ONNX model") and "nowhere" in msg


def test_error_non_constant_scale():
    msg = error_of(model([helper.make_node("QuantizeLinear", ["x", "s"], ["y"], name="q")],
                         [vi("x", [2]), vi("s", [])], [vi("y", [2], U8)]))
    assert "'s' must be a constant" in msg and "node 'q'" in msg


def test_error_mismatched_qdq():
    msg = error_of(model(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s2", "z"], ["y"], name="dq")],
        [vi("x", [2])], [vi("y", [2])],
        [init("s", np.float32(0.1)), init("s2", np.float32(0.2)), init("z", np.int8(0))]))
    assert "node 'dq'" in msg and "same scale and zero-point" in msg


def test_error_block_size():
    msg = error_of(model(
        [helper.make_node("DequantizeLinear", ["w", "s"], ["y"], axis=0, block_size=2, name="dq")],
        [], [vi("y", [4, 2])],
        [init("w", np.ones((4, 2), np.int8)), init("s", np.ones((2, 2), np.float32))], opset=21))
    assert "block" in msg and "node 'dq'" in msg


def test_error_ceil_mode():
    msg = error_of(model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1, name="mp")],
                         [vi("x", [1, 1, 5, 5])], [vi("y", [1, 1, 3, 3])]))
    assert msg == "MaxPool (node 'mp'): ceil_mode=1 is not supported"


def test_error_conv_1d():
    msg = error_of(model([helper.make_node("Conv", ["x", "w"], ["y"], name="c1")],
                         [vi("x", [1, 1, 5])], [vi("y", [1, 1, 3])], [init("w", rnd(1, 1, 3))]))
    assert "only 2-D convolution" in msg


def test_error_pad_reflect():
    msg = error_of(model([helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect", name="pad")],
                         [vi("x", [3])], [vi("y", [5])], [init("p", np.array([1, 1], np.int64))]))
    assert "mode 'reflect'" in msg


def test_error_integer_input_not_dequantized():
    msg = error_of(model([helper.make_node("Add", ["x", "x"], ["y"], name="add")],
                         [vi("x", [2], I32)], [vi("y", [2], I32)]))
    assert msg.startswith("unsupported element type 'int32' for 'x'")


# -- the CLI frontend hook ---------------------------------------------------------------
def test_parse_onnx_for_opt_bytesio_and_file(tmp_path):
    proto = qdq_conv_model()
    m = parse_onnx_for_opt(io.BytesIO(proto.SerializeToString()))
    assert "nn.conv2d" in op_names(m)
    f = tmp_path / "m.onnx"
    onnx.save(proto, f)
    with open(f, "rb") as fh:
        assert op_names(parse_onnx_for_opt(fh)) == op_names(m)
    with open(f, encoding="latin-1") as fh:  # text mode: the bytes underneath are read
        assert op_names(parse_onnx_for_opt(fh)) == op_names(m)
    with pytest.raises(OnnxImportError, match="cannot read ONNX model"):
        parse_onnx_for_opt(io.BytesIO(b"\x0a\xff\xff\xff"))


# -- shared models -----------------------------------------------------------------------
def shared_path(name: str) -> Path:
    p = MODELS / f"{name}.onnx"
    if not p.exists():
        pytest.skip(f"shared model {p} not found (set TINYMLIR_MODELS to the models directory)")
    return p


@pytest.mark.parametrize("name", SHARED)
def test_shared_model_imports(name):
    path = shared_path(name)
    t0 = time.perf_counter()
    m = import_onnx(str(path))
    dt = time.perf_counter() - t0
    print(f"\nimport {name}: {dt:.2f} s")
    m.verify()
    fn = forward(m)
    assert [tuple(t.get_shape()) for t in fn.function_type.inputs.data] == [(1, 3, 128, 128)]
    assert result_shapes(m) == [(1, 1000)]
    names = op_names(m)
    src = onnx.load(str(path))
    assert names.count("nn.conv2d") == sum(n.op_type == "Conv" for n in src.graph.node)
    if "int8" in name:
        assert names.count("quant.quantize") == sum(n.op_type == "QuantizeLinear" for n in src.graph.node)
        assert names.count("quant.dequantize") == sum(n.op_type == "DequantizeLinear" for n in src.graph.node)


def test_shared_int8_round_trip():
    path = shared_path("mcunet-5fps-int8")
    m = import_onnx(str(path))
    text = str(m)
    again = Parser(make_context(), text).parse_module()
    again.verify()
    assert str(again) == text
