"""Lowering the quantized level to CMSIS-NN: `convert-layout` and `convert-quant-to-cmsisnn`.

(a) convert-layout only moves data: the interpreter gives bitwise the same results before
    and after, on small random graphs and on the three shared int8 models.
(b) convert-quant-to-cmsisnn replaces the exact quant semantics (float64 rescale, round
    half to even) by CMSIS-NN's fixed point. Measured op by op: each op of a model is run
    alone under both semantics on the SAME inputs (recorded from the exact run on photos),
    so differences do not compound; every requantizing op is within 1 LSB, data movement
    and the float boundary are bitwise. End to end, the top-1 class on the photos is the
    exact interpreter's. `pytest -s` prints the measurements.

The models come from $TINYMLIR_MODELS (default <repo>/../shared/models); the CMSIS-NN
semantics from tinymlir/interpreter/cmsisnn_math.py.
"""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerType, ModuleOp, TensorType, f32
from xdsl.interpreter import Interpreter
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.utils.exceptions import PassFailedException

from tinymlir.context import make_context
from tinymlir.dialects import cmsisnn, nn, quant
from tinymlir.dialects.quant import UniformQuantizedType
from tinymlir.interpreter import make_interpreter, run_function
from tinymlir.passes.convert_layout import TO_NCHW, ConvertLayoutPass, transposed_from
from tinymlir.passes.convert_quant_to_cmsisnn import ConvertQuantToCmsisNNPass

from ir_builder import build  # noqa: E402
from shared_models import MODELS  # noqa: E402
MODEL_NAMES = ["mcunet-5fps", "mbv2-w0.35", "proxyless-w0.3"]
REQUANTIZING = {"quant.conv2d", "quant.fully_connected", "quant.add", "quant.global_avg_pool", "quant.requantize"}
EXACT = {"quant.quantize", "quant.dequantize", "nn.max_pool", "nn.pad", "nn.concat", "nn.flatten", "nn.reshape",
         "nn.transpose"}

needs_cmsisnn_math = pytest.mark.skipif(
    importlib.util.find_spec("tinymlir.interpreter.cmsisnn_math") is None,
    reason="tinymlir/interpreter/cmsisnn_math.py (CMSIS-NN's integer semantics) is not there yet",
)


def model_path(name: str) -> Path:
    path = MODELS / f"{name}-int8.onnx"
    if not path.exists():
        pytest.skip(f"shared model {path} is absent (set TINYMLIR_MODELS to the models directory)")
    return path


# -- helpers ---------------------------------------------------------------------------
def apply(pass_, module: ModuleOp) -> ModuleOp:
    out = module.clone()
    pass_.apply(make_context(), out)
    out.verify()
    return out


def lower(module: ModuleOp) -> ModuleOp:
    return apply(ConvertQuantToCmsisNNPass(), apply(ConvertLayoutPass(), module))


def forward_ops(module: ModuleOp) -> list[Operation]:
    return [op for op in module.walk() if not isinstance(op, (ModuleOp, func.FuncOp, func.ReturnOp))]


def qt(scale: float, zp: int) -> UniformQuantizedType:
    return UniformQuantizedType("i8", float(np.float32(scale)), zp)


def qtensor(shape: Sequence[int], scale: float, zp: int) -> TensorType:
    return TensorType(qt(scale, zp), list(shape))


class Graph:
    """Random quantized layers for small test graphs (weights i8 per-channel, biases i32)."""

    def __init__(self, emit: Callable[[Operation], SSAValue], seed: int):
        self.emit, self.rng = emit, np.random.default_rng(seed)

    def scale(self) -> float:
        return float(np.float32(self.rng.uniform(0.01, 0.1)))

    def weight(self, shape: Sequence[int]) -> tuple[SSAValue, np.ndarray]:
        scales = [float(np.float32(s)) for s in self.rng.uniform(0.002, 0.02, shape[0])]
        t = TensorType(UniformQuantizedType("i8", scales, [0] * shape[0], axis=0), list(shape))
        return self.emit(quant.ConstantOp(self.rng.integers(-127, 128, shape).astype(np.int8), t)), np.array(scales)

    def bias(self, s_x: float, s_w: np.ndarray) -> SSAValue:
        t = TensorType(UniformQuantizedType("i32", (s_x * s_w).tolist(), [0] * len(s_w), axis=0), [len(s_w)])
        return self.emit(quant.ConstantOp(self.rng.integers(-3000, 3000, len(s_w)).astype(np.int32), t))

    def conv(self, x: SSAValue, out_ch: int, k: int, *, stride=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1),
             groups=1, act=None, zp=None) -> SSAValue:
        n, c, h, w = x.type.get_shape()  # type: ignore[attr-defined]
        s_x = x.type.element_type.scale  # type: ignore[attr-defined]
        wv, s_w = self.weight((out_ch, c // groups, k, k))
        b = self.bias(s_x, s_w)
        e = dilations[0] * (k - 1) + 1
        oh = (h + pads[0] + pads[2] - e) // stride[0] + 1
        ow = (w + pads[1] + pads[3] - (dilations[1] * (k - 1) + 1)) // stride[1] + 1
        zp = int(self.rng.integers(-128, 20)) if zp is None else zp
        return self.emit(quant.Conv2dOp(x, wv, b, qtensor((n, out_ch, oh, ow), self.scale(), zp), strides=stride,
                                        pads=pads, dilations=dilations, groups=groups, act=act))

    def add(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.emit(quant.AddOp(a, b, qtensor(a.type.get_shape(), self.scale(), int(self.rng.integers(-20, 20)))))  # type: ignore[attr-defined]

    def fc(self, x: SSAValue, out: int) -> SSAValue:
        n, k = x.type.get_shape()  # type: ignore[attr-defined]
        wv, s_w = self.weight((out, k))
        b = self.bias(x.type.element_type.scale, s_w)  # type: ignore[attr-defined]
        return self.emit(quant.FullyConnectedOp(x, wv, b, qtensor((n, out), self.scale(), -10)))


def graph_conv_chain(seed: int = 0) -> ModuleOp:
    """conv (stride 2, asymmetric pads, ReLU range) -> depthwise (ch_mult 2, dilation 2)
    -> pointwise -> residual add -> GAP with a new scale -> flatten -> FC; a quantized
    4-D argument and a 2-D result."""

    def body(emit, x):
        g = Graph(emit, seed)
        c1 = g.conv(x, 6, 3, stride=(2, 2), pads=(1, 0, 0, 1), zp=-128, act=(-128, 100))
        c2 = g.conv(c1, 12, 3, pads=(2, 2, 2, 2), dilations=(2, 2), groups=6)
        c3 = g.conv(c2, 6, 1)
        s = g.add(c1, c3)
        gap = emit(quant.GlobalAvgPoolOp(s, qtensor((1, 6, 1, 1), 0.03, 5)))
        flat = emit(nn.FlattenOp(gap, qtensor((1, 6), 0.03, 5), 1))
        return [g.fc(flat, 10)]

    return build([qtensor((1, 3, 9, 9), 0.02, 3)], body)


def graph_float_boundary(seed: int = 1) -> ModuleOp:
    """quantize a float NCHW input -> grouped conv (groups 2, not depthwise) -> GAP with
    the same quantization (avgpool_s8) and a 4-D dequantized result."""

    def body(emit, x):
        g = Graph(emit, seed)
        q = emit(quant.QuantizeOp(x, qtensor((1, 4, 6, 6), 0.02, -1)))
        c = g.conv(q, 4, 3, pads=(1, 1, 1, 1), groups=2)
        gap = emit(quant.GlobalAvgPoolOp(c, TensorType(c.type.element_type, [1, 4, 1, 1])))  # type: ignore[attr-defined]
        return [emit(quant.DequantizeOp(c)), emit(quant.DequantizeOp(gap))]

    return build([TensorType(f32, [1, 4, 6, 6])], body)


def graph_data_movement(seed: int = 2) -> ModuleOp:
    """max_pool, pad, concat (channels) and requantize on quantized tensors, a 4-D
    quantized result, and a flatten of an [N, C, H, W] tensor into an FC (whose weight
    columns convert-layout permutes)."""
    t = qtensor((1, 4, 8, 8), 0.05, 2)

    def body(emit, x):
        g = Graph(emit, seed)
        c = g.conv(x, 4, 3, pads=(1, 1, 1, 1))
        mp = emit(nn.MaxPoolOp(c, TensorType(c.type.element_type, [1, 4, 4, 4]), (3, 3), (2, 2), (1, 1, 1, 1)))  # type: ignore[attr-defined]
        padded = emit(nn.PadOp(mp, TensorType(c.type.element_type, [1, 4, 6, 5]), (0, 0, 1, 0, 0, 0, 1, 1), 0.0))  # type: ignore[attr-defined]
        cc = g.conv(padded, 3, 1, zp=7)
        rq = emit(quant.RequantizeOp(cc, qtensor((1, 3, 6, 5), 0.07, -4)))
        rq2 = emit(quant.RequantizeOp(g.conv(padded, 2, 1), qtensor((1, 2, 6, 5), 0.07, -4)))
        cat = emit(nn.ConcatOp([rq, rq2], qtensor((1, 5, 6, 5), 0.07, -4), 1))
        flat = emit(nn.FlattenOp(cat, qtensor((1, 150), 0.07, -4), 1))
        return [g.fc(flat, 7), cat]

    return build([t], body)


SMALL_GRAPHS = {"conv_chain": graph_conv_chain, "float_boundary": graph_float_boundary,
                "data_movement": graph_data_movement}


def random_inputs(module: ModuleOp, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    f = next(op for op in module.walk() if isinstance(op, func.FuncOp))
    out = []
    for t in f.function_type.inputs:
        shape = t.get_shape()  # type: ignore[attr-defined]
        if isinstance(t.element_type, UniformQuantizedType):  # type: ignore[attr-defined]
            out.append(rng.integers(-128, 128, shape).astype(np.int8))
        else:
            out.append(rng.uniform(-1, 1, shape).astype(np.float32))
    return out


def bitwise_equal(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
                                    for x, y in zip(a, b))


def _sample_images() -> list[np.ndarray]:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    return [img.astype(np.float64) for img in sklearn_datasets.load_sample_images().images]


def _to_input(img: np.ndarray) -> np.ndarray:
    """An HxWx3 image in [0, 255], resized to 128x128 (area average), scaled to [-1, 1]
    as the models expect, as a [1, 3, 128, 128] float32 NCHW tensor."""
    small = _resize(img, 128)
    x = (small / 255.0 - 0.5) / 0.5
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]).astype(np.float32)


@cache
def photos() -> tuple[np.ndarray, ...]:
    """scikit-learn's two sample photos (china, flower), each resized to 128x128."""
    return tuple(_to_input(img) for img in _sample_images())


@cache
def photo_crops() -> tuple[np.ndarray, ...]:
    """More realistic inputs: three square crops of each photo (left, centre, right)
    and their mirror images, resized to 128x128."""
    out = []
    for img in _sample_images():
        h, w, _ = img.shape
        for left in (0, (w - h) // 2, w - h):
            crop = img[:, left:left + h]
            out += [_to_input(crop), _to_input(crop[:, ::-1])]
    return tuple(out)


def _area_weights(size_in: int, size_out: int) -> np.ndarray:
    edges = np.linspace(0, size_in, size_out + 1)
    weights = np.zeros((size_out, size_in))
    for i in range(size_out):
        lo, hi = edges[i], edges[i + 1]
        for p in range(int(np.floor(lo)), int(np.ceil(hi))):
            weights[i, p] = max(0.0, min(hi, p + 1) - max(lo, p))
    return weights / weights.sum(axis=1, keepdims=True)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    """Area-average resize of an HxWxC image to size x size (numpy only)."""
    wh, ww = _area_weights(img.shape[0], size), _area_weights(img.shape[1], size)
    return np.einsum("jw,iwc->ijc", ww, np.einsum("ih,hwc->iwc", wh, img))


@cache
def level1(name: str) -> ModuleOp:
    from tinymlir.frontend import import_onnx
    from tinymlir.passes.fuse_qdq import FuseQDQPass

    module = import_onnx(str(model_path(name)))
    FuseQDQPass().apply(make_context(), module)
    module.verify()
    return module


# -- the dialect ------------------------------------------------------------------------
@needs_cmsisnn_math
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_multipliers_reproduce_the_scales(name):
    """Each convolution's and the classifier's multiplier * 2**(shift - 31) is its
    s_x * s_w[c] / s_y to within 2**-31 relative (TFLite's QuantizeMultiplier)."""
    checked = 0
    for op in forward_ops(level1(name)):
        if not isinstance(op, (quant.Conv2dOp, quant.FullyConnectedOp)):
            continue
        (low,) = [o for o in forward_ops(lower(single_op_module(op)[0]))
                  if isinstance(o, (cmsisnn.ConvolveWrapperS8Op, cmsisnn.DepthwiseConvWrapperS8Op,
                                    cmsisnn.FullyConnectedS8Op))]
        sw = np.broadcast_to(op.weight.type.element_type.scale_array(), (op.weight.type.get_shape()[0],))  # type: ignore[attr-defined]
        real = op.input.type.element_type.scale * sw / op.result.type.element_type.scale  # type: ignore[attr-defined]
        m = np.array(cmsisnn.ints(low.multipliers), dtype=np.float64)
        s_ = np.array(cmsisnn.ints(low.shifts), dtype=np.float64)
        approx = np.broadcast_to(m * 2.0 ** (s_ - 31), real.shape)
        ok = real >= 2.0**-32  # smaller ones flush to multiplier 0, as in TFLite
        assert np.all(np.abs(approx - real)[ok] <= real[ok] * 2.0**-31)
        assert np.all(m[np.broadcast_to(~ok, m.shape)] == 0)
        checked += 1
    assert checked > 40


def test_verifier_messages():
    x = TensorType(IntegerType(8), [1, 4, 4, 2])
    w = TensorType(IntegerType(8), [3, 3, 3, 2])

    def conv(**kw):
        block = Block(arg_types=[x, w])
        args = dict(input_offset=0, output_offset=0, stride=(1, 1), padding=(1, 1), dilation=(1, 1),
                    act=(-128, 127), multipliers=[1 << 30] * 3, shifts=[0] * 3) | kw
        op = cmsisnn.ConvolveWrapperS8Op(block.args[0], block.args[1], None, TensorType(IntegerType(8), [1, 4, 4, 3]), **args)
        block.add_op(op)
        return op

    conv().verify()
    for kw, message in (
        ({"input_offset": 129}, "input_offset 129 is outside [-127, 128]"),
        ({"act": (10, 5)}, "activation range [10, 5] must be a non-empty range"),
        ({"multipliers": [1] * 2, "shifts": [0] * 2}, "needs 3 multipliers"),
        ({"shifts": [0, 0, 40]}, "channel 2 shift 40 is outside [-31, 30]"),
        ({"padding": (3, 1)}, "output height 4 does not fit input height 4"),
    ):
        with pytest.raises(Exception, match=message.replace("[", r"\[").replace("]", r"\]")):
            conv(**kw).verify()


# -- (a) convert-layout: bitwise, structure ---------------------------------------------
@pytest.mark.parametrize("name", sorted(SMALL_GRAPHS))
def test_convert_layout_small_graphs_bitwise(name):
    module = SMALL_GRAPHS[name]()
    after = apply(ConvertLayoutPass(), module)
    for seed in range(5):
        inputs = random_inputs(module, seed)
        assert bitwise_equal(run_function(module, inputs), run_function(after, inputs))
    # Every layout-sensitive op reads NHWC data through an adaptor and hands NHWC on.
    for op in forward_ops(after):
        if isinstance(op, (quant.Conv2dOp, quant.GlobalAvgPoolOp, nn.MaxPoolOp)):
            assert transposed_from(op.operands[0], TO_NCHW) is not None, op
            (use,) = op.results[0].uses
            assert isinstance(use.operation, nn.TransposeOp)
        if isinstance(op, quant.Conv2dOp) and op.groups.value.data == 1:
            w = transposed_from(op.weight, TO_NCHW)
            assert w is not None and isinstance(w.owner, quant.ConstantOp), "OHWI constant behind a transpose"
    assert str(apply(ConvertLayoutPass(), after)) == str(after), "convert-layout is idempotent"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_convert_layout_shared_models_bitwise(name):
    module = level1(name)
    after = apply(ConvertLayoutPass(), module)
    rng = np.random.default_rng(0)
    for x in (*photos(), rng.uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32)):
        assert bitwise_equal(run_function(module, [x]), run_function(after, [x]))
    # Only the input boundary (after the input quantize) stays NCHW.
    ops = forward_ops(after)
    adaptors_in = [op for op in ops if isinstance(op, nn.TransposeOp) and isinstance(op.input.owner, quant.QuantizeOp)]
    assert len(adaptors_in) == 1


def test_convert_layout_rejects_other_layouts():
    with pytest.raises(ValueError, match="only one is 'nhwc'"):
        ConvertLayoutPass(to="nchw")


# -- (b) convert-quant-to-cmsisnn: structure and diagnostics ----------------------------
@needs_cmsisnn_math
@pytest.mark.parametrize("name", sorted(SMALL_GRAPHS))
def test_lowering_leaves_only_cmsisnn_and_data_movement(name):
    lowered = lower(SMALL_GRAPHS[name]())
    names = {op.name for op in forward_ops(lowered)}
    assert not any(n.startswith("quant.") or n == "builtin.unrealized_conversion_cast" for n in names), names
    assert names <= {op.name for op in cmsisnn.CmsisNN.operations} | {"arith.constant"} | EXACT, names


@needs_cmsisnn_math
def test_lowering_chooses_the_kernels():
    ops = [op.name for op in forward_ops(lower(graph_conv_chain()))]
    assert ops.count("cmsisnn.convolve_wrapper_s8") == 2
    # the depthwise conv, and the GAP whose output scale differs (unit-weight depthwise)
    assert ops.count("cmsisnn.depthwise_conv_wrapper_s8") == 2
    assert "cmsisnn.avgpool_s8" not in ops
    ops = [op.name for op in forward_ops(lower(graph_float_boundary()))]
    assert "cmsisnn.avgpool_s8" in ops and "cmsisnn.quantize_s8" in ops


def test_unsupported_op_is_a_diagnostic_naming_it():
    def body(emit, x):
        g = Graph(emit, 3)
        wt = TensorType(UniformQuantizedType("i8", 0.01, 3), [2, 2, 1, 1])
        w = emit(quant.ConstantOp(np.ones((2, 2, 1, 1), np.int8), wt))
        y = emit(quant.Conv2dOp(x, w, None, qtensor((1, 2, 4, 4), 0.1, 0)))
        y.name_hint = "asym"
        return [y]

    module = build([qtensor((1, 2, 4, 4), 0.02, 0)], body)
    with pytest.raises(PassFailedException, match=r"cannot lower %asym = quant.conv2d: .*zero-point 0"):
        ConvertQuantToCmsisNNPass().apply(make_context(), module)


def test_bias_that_overflows_int32_is_a_diagnostic():
    """K = 512 weights of 127 reach 256 * 127 * 512 = 16.6 million from an INT32_MAX bias;
    keeping the accumulator in int32 would move this unsaturated output (about 107 LSB)
    by about 0.8 LSB: refused. With an output scale that saturates the channel anyway,
    the bias is simply moved."""

    def fc(s_y: float) -> ModuleOp:
        def body(emit, x):
            w = emit(quant.ConstantOp(np.full((1, 512), 127, np.int8), qtensor((1, 512), 1e-6, 0)))
            bt = TensorType(UniformQuantizedType("i32", 0.5 * float(np.float32(1e-6)), 0), [1])
            b = emit(quant.ConstantOp(np.array([2**31 - 1], np.int32), bt))
            y = emit(quant.FullyConnectedOp(x, w, b, qtensor((1, 1), s_y, 0)))
            y.name_hint = "big"
            return [y]

        return build([qtensor((1, 512), 0.5, 0)], body)

    with pytest.raises(PassFailedException, match=r"cannot lower %big = quant.fully_connected: channel 0's bias "
                                                   r"2147483647 and weights overflow CMSIS-NN's int32 accumulator"):
        ConvertQuantToCmsisNNPass().apply(make_context(), fc(10.0))
    lowered = apply(ConvertQuantToCmsisNNPass(), fc(1.0))
    x = np.full((1, 512), -128, np.int8)
    assert run_function(lowered, [x])[0].tolist() == [[127]]


# -- (b) op-by-op measurement ---------------------------------------------------------------
class _Recorder(Interpreter.Listener):
    def __init__(self) -> None:
        self.args: dict[Operation, tuple] = {}

    def will_interpret_op(self, op: Operation, args: tuple) -> None:
        self.args[op] = tuple(args)


def record_inputs(module: ModuleOp, inputs: Sequence[np.ndarray]) -> dict[Operation, tuple]:
    interp = make_interpreter(module)
    recorder = _Recorder()
    interp.listeners = (recorder,)
    interp.call_op("forward", tuple(inputs))
    return recorder.args


def single_op_module(op: Operation) -> tuple[ModuleOp, list[int]]:
    """`func @forward(non-constant operands) { constants; op }` and the indices of the
    operands that became arguments."""
    arg_idx = [i for i, v in enumerate(op.operands) if not isinstance(v.owner, quant.ConstantOp)]
    block = Block(arg_types=[op.operands[i].type for i in arg_idx])
    mapping = {op.operands[i]: a for i, a in zip(arg_idx, block.args)}
    consts = []
    for v in op.operands:
        if v not in mapping:
            c = v.owner.clone()  # type: ignore[union-attr]
            consts.append(c)
            mapping[v] = c.results[0]
    new = op.clone(value_mapper=mapping)
    block.add_ops([*consts, new, func.ReturnOp(*new.results)])
    ftype = ([a.type for a in block.args], [r.type for r in new.results])
    return ModuleOp([func.FuncOp("forward", ftype, Region(block))]), arg_idx


def compare_ops(module: ModuleOp, input_sets: Sequence[Sequence[np.ndarray]]) -> dict[str, list[tuple[int, int, int]]]:
    """Per op kind, one (max |diff| in LSB, differing elements, elements) per op and input
    set: each op alone, exact vs lowered, on the inputs it saw in the exact run of `module`."""
    seen = [record_inputs(module, inputs) for inputs in input_sets]
    stats: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for op in forward_ops(module):
        if op.name not in REQUANTIZING | EXACT:
            continue
        single, arg_idx = single_op_module(op)
        lowered = lower(single)
        for record in seen:
            args = [record[op][i] for i in arg_idx]
            exact = run_function(single, args)[0]
            fixed = run_function(lowered, args)[0]
            if exact.dtype.kind == "f":
                diff = (exact.view(np.uint32) != fixed.view(np.uint32)).astype(np.int64)
            else:
                diff = np.abs(exact.astype(np.int64) - fixed.astype(np.int64))
            stats[op.name].append((int(diff.max(initial=0)), int(np.count_nonzero(diff)), int(diff.size)))
    return stats


def _summary(stats: dict[str, list[tuple[int, int, int]]]) -> dict[str, tuple[int, int, int, int, int]]:
    """op -> (ops, ops with a difference, max LSB, differing elements, elements)."""
    return {k: (len(v), sum(1 for s in v if s[1]), max(s[0] for s in v), sum(s[1] for s in v), sum(s[2] for s in v))
            for k, v in sorted(stats.items())}


def _print_summary(title: str, summary: dict) -> None:
    print(f"\n{title}")
    for k, (n, nd, mx, d, tot) in summary.items():
        print(f"  {k:24s} ops {n:3d}  with diffs {nd:3d}  max {mx} LSB  differ {d}/{tot} = {d / tot:.2e}")


def _check(summary: dict) -> None:
    for k, (_, _, mx, _, _) in summary.items():
        assert mx <= (1 if k in REQUANTIZING else 0), (k, summary[k])


@needs_cmsisnn_math
@pytest.mark.parametrize("name", sorted(SMALL_GRAPHS))
def test_lowering_small_graphs_op_by_op(name):
    module = SMALL_GRAPHS[name]()
    summary = _summary(compare_ops(module, [random_inputs(module, seed) for seed in range(3)]))
    _print_summary(f"{name}: exact vs CMSIS-NN, op by op", summary)
    _check(summary)


@needs_cmsisnn_math
def test_lowering_elementwise_ops_exhaustively():
    """Every int8 input of a requantize, every pair of int8 inputs of an add, and random
    4x4 images for a global average pool whose scale changes (depthwise lowering), each
    with 20 random quantizations: within 1 LSB of the exact result."""
    rng = np.random.default_rng(7)
    every = np.arange(-128, 128, dtype=np.int8)
    pairs = np.stack(np.meshgrid(every, every)).reshape(2, -1)
    stats: dict[str, list[tuple[int, int, int]]] = defaultdict(list)

    def measure(kind: str, module: ModuleOp, inputs: list[np.ndarray]) -> None:
        exact, fixed = run_function(module, inputs)[0], run_function(lower(module), inputs)[0]
        diff = np.abs(exact.astype(np.int64) - fixed.astype(np.int64))
        stats[kind].append((int(diff.max()), int(np.count_nonzero(diff)), int(diff.size)))

    def q(n: int) -> tuple[float, int]:
        return float(rng.uniform(0.005, 0.2)), int(rng.integers(-128, 128))

    for _ in range(20):
        (sx, zx), (sy, zy), (s2, z2) = q(0), q(0), q(0)
        measure("quant.requantize", build([qtensor((256,), sx, zx)], lambda emit, x: [
            emit(quant.RequantizeOp(x, qtensor((256,), sy, zy)))]), [every])
        measure("quant.add", build([qtensor((65536,), sx, zx), qtensor((65536,), s2, z2)], lambda emit, a, b: [
            emit(quant.AddOp(a, b, qtensor((65536,), sy, zy)))]), [pairs[0], pairs[1]])
        measure("quant.global_avg_pool", build([qtensor((1, 64, 4, 4), sx, zx)], lambda emit, x: [
            emit(quant.GlobalAvgPoolOp(x, qtensor((1, 64, 1, 1), sy, zy)))]),
            [rng.integers(-128, 128, (1, 64, 4, 4)).astype(np.int8)])
    summary = _summary(stats)
    _print_summary("element-wise ops, exhaustive inputs, 20 quantizations each", summary)
    _check(summary)


@needs_cmsisnn_math
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_lowering_shared_models_op_by_op(name):
    module = level1(name)
    inputs = [*photos(), *photo_crops()[::3]]
    summary = _summary(compare_ops(module, [[x] for x in inputs]))
    _print_summary(f"{name}: exact vs CMSIS-NN, op by op on {len(inputs)} photos", summary)
    _check(summary)


@needs_cmsisnn_math
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_lowering_shared_models_end_to_end_top1(name):
    """The two photos: same top-1 class. The crops are reported: where the exact int8
    logits lead by a single LSB, the few LSB end to end can swap the top two."""
    module = level1(name)
    lowered = lower(module)
    scale = next(op for op in forward_ops(lowered) if isinstance(op, cmsisnn.DequantizeS8Op)).scale.value.data

    def run(x: np.ndarray) -> tuple[bool, int, float]:
        """(the lowered top-1 is an exact top-1 class -- int8 logits can tie --, the
        exact lead over the runner-up in LSB, max logit difference in LSB)"""
        exact, fixed = run_function(module, [x])[0][0], run_function(lowered, [x])[0][0]
        top2 = np.sort(exact)[-2:]
        same = bool(exact[fixed.argmax()] == exact.max())
        return same, round((top2[1] - top2[0]) / scale), float(np.abs(exact - fixed).max()) / scale

    for i, x in enumerate(photos()):
        same, margin, diff = run(x)
        print(f"\n{name}: photo {i}: top-1 {'equal' if same else 'DIFFERS'} (exact lead {margin} LSB), "
              f"logits differ by up to {diff:.0f} LSB")
        assert same
    crops = [run(x) for x in photo_crops()]
    flips = [(m, d) for same, m, d in crops if not same]
    print(f"{name}: {len(crops)} crops: top-1 equal on {len(crops) - len(flips)}, logits differ by up to "
          f"{max(d for _, _, d in crops):.0f} LSB; exact lead where the top-1 differs: {[m for m, _ in flips]} LSB")
