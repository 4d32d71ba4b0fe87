"""`quantize-ptq`: post-training static int8 quantization of a float `nn` graph.

Input invariant: `func.func @forward` (`quantize_module(function=...)` takes another name)
with one float32 tensor argument and a straight-line body of `nn` ops, float weights as
`arith.constant`, batch norms already folded into the convolutions (`fold-batch-norm`).

Output: the same function, still float in / float out, computing in int8:

* `quant.quantize` on the graph input and `quant.dequantize` on each returned value;
* `nn.conv2d` (incl. depthwise) -> `quant.conv2d`, `nn.gemm` -> `quant.fully_connected`,
  `nn.add` -> `quant.add`, `nn.global_avg_pool` -> `quant.global_avg_pool`;
* weights per output channel, symmetric int8: zero-point 0, `scale = max|w_c| / 127`;
* biases int32 with scale `s_x * s_w[c]` and zero-point 0;
* activations per tensor, asymmetric int8: the range calibrated on sample inputs, widened to
  contain 0 so that 0 is exact, `scale = (max - min) / 255`, zero-point in [-128, 127];
* `nn.relu` / `nn.clip` (ReLU6, Clip) that is the only user of a conv / gemm / add / global
  average pool result is folded into it: the output takes the calibrated range of the
  activation's output and `act_min` / `act_max` hold the clip bounds quantized (only
  when they clamp more than the int8 range, e.g. Clip(0.5, 3); ReLU/ReLU6 need none);
* `nn.flatten`, `nn.reshape` and `nn.max_pool` on a quantized tensor run on the integers and
  keep the input's quantization.

Anything else stays float, with `quant.dequantize` before it and `quant.quantize` after it
when its neighbours are quantized: `nn.relu`/`nn.clip` that cannot be folded (their operand
has other users), `nn.add` with broadcasting or a constant operand, `nn.gemm` with `trans_a`
or a non-constant B, convolutions with non-constant weights, and every other op (softmax,
avg_pool, batch_norm, concat, ...). Each float value gets one quantization, so quantized ops
meet without conversions; a `quantize(dequantize(q))` pair between two different types
(only possible in input that was already partly quantized) becomes `quant.requantize`.

Calibration runs every sample through the reference interpreter once and records the
min / max (or a percentile) of every value that gets quantized.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, Float32Type, ModuleOp, TensorType
from xdsl.dialects.func import FuncOp
from xdsl.interpreter import Interpreter
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import PassFailedException

from tinymlir.dialects import nn, quant
from tinymlir.dialects.nn import ints, shape_of
from tinymlir.dialects.quant import UniformQuantizedType, qtype

METHODS = ("minmax", "percentile")
_I8_MIN, _I8_MAX = -128, 127
_W_MAX = 127  # symmetric weights use [-127, 127]
_I32_MAX = 2**31 - 1
_MIN_SCALE = 1e-10  # a calibrated range below 255 * this counts as constant zero


def _fail(message: str) -> PassFailedException:
    """A pass error whose message is one line (xDSL prints it as the diagnostic)."""
    return PassFailedException("quantize-ptq: " + " ".join(str(message).split()))


# -- quantization parameters ------------------------------------------------------------
def _f32(x: float) -> float:
    return float(np.float32(x))


def activation_qtype(lo: float, hi: float) -> UniformQuantizedType:
    """Per-tensor asymmetric int8 for the real range [lo, hi], widened to contain 0."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = _f32((hi - lo) / (_I8_MAX - _I8_MIN))
    if not (_MIN_SCALE <= scale < np.inf):
        # (Almost) constant zero: any scale represents it; 1.0 is onnxruntime's choice and
        # keeps products such as s_x * s_w (bias scales) far from float32 underflow.
        scale = 1.0
    zp = int(np.clip(np.rint(_I8_MIN - lo / scale), _I8_MIN, _I8_MAX))
    return UniformQuantizedType("i8", scale, zp)


def quantize_weights(w: np.ndarray, bias: np.ndarray | None, input_scale: float):
    """Per-output-channel (axis 0) symmetric int8 weights and the matching int32 bias.

    Returns (w_q, w_type, b_q, b_type); the bias pair is None without a bias. A channel's
    weight scale is raised when needed so that its bias fits int32 (and an all-zero
    channel gets a scale that keeps its bias precise).
    """
    w = np.asarray(w, dtype=np.float64)
    channels = w.shape[0]
    scale = np.abs(w.reshape(channels, -1)).max(axis=1) / _W_MAX
    b = None if bias is None else np.asarray(bias, dtype=np.float64).reshape(channels)
    if b is not None:
        dead = scale == 0
        scale[dead] = np.abs(b[dead]) / (input_scale * 2**20)  # the bias keeps 20 bits
        scale = np.maximum(scale, np.abs(b) / (input_scale * _I32_MAX) * 1.001)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32).astype(np.float64)
    view = scale.reshape((channels,) + (1,) * (w.ndim - 1))
    w_q = np.clip(np.rint(w / view), -_W_MAX, _W_MAX).astype(np.int8)
    w_type = UniformQuantizedType("i8", scale.tolist(), [0] * channels, axis=0)
    if b is None:
        return w_q, w_type, None, None
    b_scale = (np.float64(input_scale) * scale).astype(np.float32).astype(np.float64)
    b_q = np.clip(np.rint(b / b_scale), -_I32_MAX, _I32_MAX).astype(np.int32)
    b_type = UniformQuantizedType("i32", b_scale.tolist(), [0] * channels, axis=0)
    return w_q, w_type, b_q, b_type


def _activation_bounds(lo: float, hi: float, qt: UniformQuantizedType) -> tuple[int, int] | None:
    """The folded activation's bounds in storage units; None when they do not restrict."""
    from tinymlir.interpreter.quant_impls import quantize_f32

    with np.errstate(over="ignore", invalid="ignore"):
        a, b = (int(v) for v in quantize_f32(np.array([lo, hi], dtype=np.float32), qt))
    return None if (a, b) == (qt.storage_min, qt.storage_max) else (a, b)


# -- what gets quantized ------------------------------------------------------------------
def _is_f32_tensor(value: SSAValue) -> bool:
    t = value.type
    return isinstance(t, TensorType) and isinstance(t.element_type, Float32Type) and all(
        d >= 0 for d in t.get_shape()
    )


def float_constant(value: SSAValue | None) -> np.ndarray | None:
    """The numpy value of an `arith.constant` dense float tensor, else None."""
    from tinymlir.interpreter.nn_impls import dense_to_numpy

    if value is None or not isinstance(op := value.owner, arith.ConstantOp):
        return None
    if not isinstance(op.value, DenseIntOrFPElementsAttr) or not _is_f32_tensor(value):
        return None
    return dense_to_numpy(op.value)


def _gemm_bias_ok(op: nn.GemmOp) -> bool:
    if op.c is None:
        return True
    c = shape_of(op.c)
    return float_constant(op.c) is not None and len(c) <= 2 and (len(c) < 2 or c[0] == 1)


def quantized_inputs(op: Operation) -> Sequence[SSAValue] | None:
    """The activation operands a supported op takes quantized; None if it stays float."""
    if len(op.results) != 1 or not _is_f32_tensor(op.results[0]):
        return None
    if isinstance(op, nn.Conv2dOp):
        ok = float_constant(op.weight) is not None and (op.bias is None or float_constant(op.bias) is not None)
        return (op.input,) if ok and _is_f32_tensor(op.input) else None
    if isinstance(op, nn.GemmOp):
        ok = not op.trans_a.value.data and float_constant(op.b) is not None and _gemm_bias_ok(op)
        return (op.a,) if ok and _is_f32_tensor(op.a) else None
    if isinstance(op, nn.AddOp):
        same = shape_of(op.lhs) == shape_of(op.rhs) == shape_of(op.result)
        operands = (op.lhs, op.rhs)
        ok = same and all(_is_f32_tensor(v) and not isinstance(v.owner, arith.ConstantOp) for v in operands)
        return operands if ok else None
    if isinstance(op, nn.GlobalAvgPoolOp):
        return (op.input,) if len(shape_of(op.input)) == 4 and _is_f32_tensor(op.input) else None
    return None


PASS_THROUGH = (nn.FlattenOp, nn.ReshapeOp, nn.MaxPoolOp)


def folded_activation(value: SSAValue) -> tuple[list[Operation], SSAValue, float, float]:
    """Follow the single-use `nn.relu` / `nn.clip` chain after a compute op's result.

    Returns (chain, end value, lo, hi) with [lo, hi] the intersection of the clip bounds.
    """
    chain: list[Operation] = []
    lo, hi = -np.inf, np.inf
    while (user := value.get_user_of_unique_use()) is not None:
        if isinstance(user, nn.ReluOp):
            nlo, nhi = 0.0, np.inf
        elif isinstance(user, nn.ClipOp):
            nlo, nhi = user.min.value.data, user.max.value.data
        else:
            break
        if max(lo, nlo) > min(hi, nhi):
            break
        lo, hi = max(lo, nlo), min(hi, nhi)
        chain.append(user)
        value = user.results[0]
    return chain, value, lo, hi


def plan_quantization(func: FuncOp) -> tuple[list[SSAValue], dict[SSAValue, SSAValue]]:
    """The float values to quantize, in program order, and for the results of pass-through
    ops the value whose quantization they inherit."""
    block = _body(func)
    chosen: dict[SSAValue, None] = {}  # an ordered set
    for op in block.ops:
        if (inputs := quantized_inputs(op)) is None:
            continue
        for v in inputs:
            chosen[v] = None
        chosen[folded_activation(op.results[0])[1]] = None
    inherits: dict[SSAValue, SSAValue] = {}
    for op in block.ops:  # in program order, so chains of pass-through ops propagate
        if isinstance(op, PASS_THROUGH) and op.input in chosen and _is_f32_tensor(op.result):
            chosen[op.result] = None
            inherits[op.result] = inherits.get(op.input, op.input)
    order = {v: i for i, v in enumerate(block.args)}
    for i, op in enumerate(block.ops):
        for r in op.results:
            order[r] = len(block.args) + i
    return sorted(chosen, key=order.__getitem__), inherits


def _body(func: FuncOp) -> Block:
    if len(func.body.blocks) != 1:
        raise _fail(f"@{func.sym_name.data} must have a single block")
    return func.body.blocks.first  # type: ignore[return-value]


# -- calibration ------------------------------------------------------------------------
class _RangeRecorder(Interpreter.Listener):
    """Collects, for every watched value, its per-sample min/max or all its elements."""

    def __init__(self, watched: Iterable[SSAValue], keep_values: bool):
        self.watched = set(watched)
        self.keep_values = keep_values
        self.lo: dict[SSAValue, float] = {}
        self.hi: dict[SSAValue, float] = {}
        self.values: dict[SSAValue, list[np.ndarray]] = {}

    def record(self, value: SSAValue, data: np.ndarray) -> None:
        if value not in self.watched:
            return
        data = np.asarray(data, dtype=np.float32)
        if not np.all(np.isfinite(data)):
            raise _fail(f"calibration produced a non-finite value for {value.type}")
        self.lo[value] = min(self.lo.get(value, np.inf), float(data.min()))
        self.hi[value] = max(self.hi.get(value, -np.inf), float(data.max()))
        if self.keep_values:
            self.values.setdefault(value, []).append(data.ravel())

    def did_interpret_op(self, op: Operation, results: tuple) -> None:
        for value, data in zip(op.results, results):
            self.record(value, data)


def calibration_samples(func: FuncOp, calibration: np.ndarray) -> list[np.ndarray]:
    """Split a [N, *input_shape[1:]] or [N, *input_shape] array into function inputs."""
    inputs = func.function_type.inputs.data
    if len(inputs) != 1 or not isinstance(inputs[0], TensorType) or not isinstance(
        inputs[0].element_type, Float32Type
    ):
        raise _fail(f"@{func.sym_name.data} must take exactly one f32 tensor to be calibrated")
    shape = tuple(inputs[0].get_shape())
    data = np.asarray(calibration)
    if data.dtype.kind != "f":
        raise _fail(f"calibration data must be floating point, got dtype {data.dtype}")
    if data.ndim == len(shape) + 1 and data.shape[1:] == shape:
        samples = [data[i] for i in range(data.shape[0])]
    elif shape and shape[0] == 1 and data.ndim == len(shape) and data.shape[1:] == shape[1:]:
        samples = [data[i : i + 1] for i in range(data.shape[0])]
    else:
        want = [*shape[1:]] if shape and shape[0] == 1 else [*shape]
        raise _fail(f"calibration data must have shape [N, {', '.join(map(str, want))}], got {list(data.shape)}")
    if not samples:
        raise _fail("calibration data holds no samples (N = 0)")
    if not all(np.all(np.isfinite(s)) for s in samples):
        raise _fail("calibration data contains NaN or infinity")
    return [s.astype(np.float32) for s in samples]


def calibrate(
    module: ModuleOp,
    func: FuncOp,
    samples: Sequence[np.ndarray],
    values: Sequence[SSAValue],
    method: str = "minmax",
    percentile: float = 99.99,
) -> dict[SSAValue, tuple[float, float]]:
    """The real range of each value over the samples, run through the reference interpreter."""
    from tinymlir.interpreter import make_interpreter

    recorder = _RangeRecorder(values, keep_values=method == "percentile")
    interpreter = make_interpreter(module)
    interpreter.listeners = (recorder,)
    name = func.sym_name.data
    for x in samples:
        recorder.record(func.args[0], x)
        try:
            # NaN/inf in weights or overflowing sums are reported by `record` as one error;
            # numpy's RuntimeWarnings would only add lines to stderr.
            with np.errstate(all="ignore"):
                interpreter.call_op(name, (x,))
        except PassFailedException:
            raise
        except Exception as e:
            raise _fail(f"cannot run @{name} on a calibration sample: {e}") from e
    missing = [v for v in values if v not in recorder.lo]
    if missing:
        raise _fail(f"calibration did not reach {len(missing)} value(s), e.g. one of type {missing[0].type}")
    if method == "minmax":
        return {v: (recorder.lo[v], recorder.hi[v]) for v in values}
    ranges = {}
    for v in values:
        data = np.concatenate(recorder.values[v])
        lo, hi = np.percentile(data, [100.0 - percentile, percentile])
        ranges[v] = (float(lo), float(hi))
    return ranges


# -- fake quantization: quantize/dequantize after every chosen value ----------------------
def insert_quantize_dequantize(block: Block, types: dict[SSAValue, UniformQuantizedType]) -> None:
    """After each value v: `q = quant.quantize v; d = quant.dequantize q`, uses of v -> d.

    The patterns below then turn `dequantize -> nn op -> quantize` into quant ops.
    """
    for value, qt in types.items():
        assert isinstance(value.type, TensorType)
        q = quant.QuantizeOp(value, TensorType(qt, value.type.get_shape()))
        d = quant.DequantizeOp(q.result)
        if isinstance(value.owner, Operation):
            point = InsertPoint.after(value.owner)
        elif block.first_op is not None:
            point = InsertPoint.before(block.first_op)
        else:
            point = InsertPoint.at_end(block)
        Rewriter.insert_op([q, d], point)
        value.replace_uses_with_if(d.result, lambda use, q=q: use.operation is not q)


# -- patterns ---------------------------------------------------------------------------
def _dequantized(value: SSAValue) -> SSAValue | None:
    """The quantized tensor `value` is the dequantization of, if it is one."""
    op = value.owner
    return op.input if isinstance(op, quant.DequantizeOp) else None


class _Output(NamedTuple):
    chain: list[Operation]  # the folded nn.relu / nn.clip ops
    quantize: quant.QuantizeOp  # the quantize that the quant op replaces
    act: tuple[int, int] | None  # act_min / act_max

    @property
    def type(self) -> TensorType:
        return self.quantize.result.type  # type: ignore[return-value]


def _quantized_output(op: Operation) -> _Output | None:
    """How op's result is quantized: through a foldable activation chain into exactly one
    `quant.quantize` (what `plan_quantization` arranged); None otherwise."""
    chain, end, lo, hi = folded_activation(op.results[0])
    if not isinstance(q := end.get_user_of_unique_use(), quant.QuantizeOp):
        return None
    return _Output(chain, q, _activation_bounds(lo, hi, qtype(q.result)) if chain else None)


def _replace_with(rewriter: PatternRewriter, op: Operation, output: _Output, new_ops: list[Operation]) -> None:
    """Replace `op -> chain -> quantize` by new_ops (the last one yields the quantized value)."""
    rewriter.replace(output.quantize, new_ops)
    for dead in reversed(output.chain):
        rewriter.erase(dead)
    rewriter.erase(op)


def _weight_constants(w: np.ndarray, b: np.ndarray | None, x: UniformQuantizedType):
    """`quant.constant` ops for the int8 weight and the int32 bias; (ops, weight, bias)."""
    w_q, w_type, b_q, b_type = quantize_weights(w, b, x.scale)
    weight = quant.ConstantOp(w_q, TensorType(w_type, w_q.shape))
    if b_q is None:
        return [weight], weight.result, None
    bias = quant.ConstantOp(b_q, TensorType(b_type, b_q.shape))
    return [weight, bias], weight.result, bias.result


class QuantizeConv2d(RewritePattern):
    """`dequantize -> nn.conv2d (-> relu/clip) -> quantize` => `quant.conv2d`."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.Conv2dOp, rewriter: PatternRewriter) -> None:
        if quantized_inputs(op) is None or (x := _dequantized(op.input)) is None:
            return
        if (output := _quantized_output(op)) is None:
            return
        w, b = float_constant(op.weight), float_constant(op.bias)
        consts, weight, bias = _weight_constants(w, b, qtype(x))  # type: ignore[arg-type]
        conv = quant.Conv2dOp(
            x, weight, bias, output.type, strides=ints(op.strides), pads=ints(op.pads),
            dilations=ints(op.dilations), groups=op.groups.value.data, act=output.act,
        )
        _replace_with(rewriter, op, output, [*consts, conv])


class QuantizeGemm(RewritePattern):
    """`dequantize -> nn.gemm (-> relu/clip) -> quantize` => `quant.fully_connected`;
    B becomes the [out, in] weight (transposed unless trans_b), alpha and beta are folded."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.GemmOp, rewriter: PatternRewriter) -> None:
        if quantized_inputs(op) is None or (x := _dequantized(op.a)) is None:
            return
        if (output := _quantized_output(op)) is None:
            return
        b = float_constant(op.b).astype(np.float64)  # type: ignore[union-attr]
        w = (b if op.trans_b.value.data else b.T) * op.alpha.value.data
        c = float_constant(op.c)
        bias = None if c is None else np.broadcast_to(c.astype(np.float64).reshape(-1), w.shape[:1]) * op.beta.value.data
        consts, weight, qbias = _weight_constants(w, bias, qtype(x))
        fc = quant.FullyConnectedOp(x, weight, qbias, output.type, act=output.act)
        _replace_with(rewriter, op, output, [*consts, fc])


class QuantizeAdd(RewritePattern):
    """`dequantize x2 -> nn.add (-> relu/clip) -> quantize` => `quant.add`."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.AddOp, rewriter: PatternRewriter) -> None:
        if quantized_inputs(op) is None:
            return
        a, b = _dequantized(op.lhs), _dequantized(op.rhs)
        if a is None or b is None or (output := _quantized_output(op)) is None:
            return
        _replace_with(rewriter, op, output, [quant.AddOp(a, b, output.type, act=output.act)])


class QuantizeGlobalAvgPool(RewritePattern):
    """`dequantize -> nn.global_avg_pool (-> relu/clip) -> quantize` => `quant.global_avg_pool`."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.GlobalAvgPoolOp, rewriter: PatternRewriter) -> None:
        if quantized_inputs(op) is None or (x := _dequantized(op.input)) is None:
            return
        if (output := _quantized_output(op)) is None:
            return
        _replace_with(rewriter, op, output, [quant.GlobalAvgPoolOp(x, output.type, act=output.act)])


class PassThroughQuantized(RewritePattern):
    """`dequantize -> flatten/reshape/max_pool` => the same op on the integers, then
    `dequantize`: these ops commute with the (monotone, per-tensor) dequantization."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.FlattenOp | nn.ReshapeOp | nn.MaxPoolOp, rewriter: PatternRewriter) -> None:
        if (x := _dequantized(op.input)) is None:
            return
        qt = qtype(x)
        new = type(op).create(
            operands=[x],
            result_types=[TensorType(qt, shape_of(op.result))],
            properties=dict(op.properties),
            attributes=dict(op.attributes),
        )
        rewriter.replace(op, [new, quant.DequantizeOp(new.results[0])])


class FoldDequantizeQuantize(RewritePattern):
    """`quantize(dequantize(q))` => `q`, or `quant.requantize q` when the types differ."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.QuantizeOp, rewriter: PatternRewriter) -> None:
        if (x := _dequantized(op.input)) is None:
            return
        if x.type == op.result.type:
            rewriter.replace(op, [], [x])
        elif not qtype(x).is_per_channel and not qtype(op.result).is_per_channel:
            rewriter.replace(op, [quant.RequantizeOp(x, op.result.type)])  # type: ignore[arg-type]


# -- driver ------------------------------------------------------------------------------
def _find_function(module: ModuleOp, name: str) -> FuncOp:
    for op in module.walk():
        if isinstance(op, FuncOp) and op.sym_name.data == name and op.body.blocks:
            return op
    raise _fail(f"no function @{name} with a body in the module")


def quantize_module(
    module: ModuleOp,
    calibration_inputs: np.ndarray,
    method: str = "minmax",
    percentile: float = 99.99,
    function: str = "forward",
) -> None:
    """Quantize function `function` of `module` in place, calibrated on `calibration_inputs`
    ([N, *input_shape[1:]] or [N, *input_shape] floats). Raises PassFailedException."""
    if method not in METHODS:
        raise _fail(f"unknown calibration method '{method}', expected one of {', '.join(METHODS)}")
    if method == "percentile" and not 50.0 < percentile <= 100.0:
        raise _fail(f"percentile must be in (50, 100], got {percentile}")
    func = _find_function(module, function)
    block = _body(func)
    samples = calibration_samples(func, calibration_inputs)
    values, inherits = plan_quantization(func)
    if not values:
        return
    ranges = calibrate(module, func, samples, [v for v in values if v not in inherits], method, percentile)
    types = {v: activation_qtype(*ranges[v]) for v in values if v not in inherits}
    for v in values:  # in program order, so a chain of pass-throughs sees its source first
        if v in inherits:
            types[v] = types[inherits[v]]
    insert_quantize_dequantize(block, {v: types[v] for v in values})
    PatternRewriteWalker(
        GreedyRewritePatternApplier([
            QuantizeConv2d(),
            QuantizeGemm(),
            QuantizeAdd(),
            QuantizeGlobalAvgPool(),
            PassThroughQuantized(),
            FoldDequantizeQuantize(),
        ])
    ).rewrite_module(module)


def load_calibration(path: str) -> np.ndarray:
    """The array in a .npy file (never unpickled)."""
    try:
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise _fail(f"cannot read calibration file '{path}': not a .npy file")
            f.seek(0)
            data = np.load(f, allow_pickle=False)
    except PassFailedException:
        raise
    except Exception as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise _fail(f"cannot read calibration file '{path}': {reason}") from e
    if not isinstance(data, np.ndarray):
        raise _fail(f"calibration file '{path}' must hold one array (.npy), not an archive")
    return data


@dataclass(frozen=True)
class QuantizePTQPass(ModulePass):
    """Post-training static quantization of a float `nn` graph (after `fold-batch-norm`) to
    int8 `quant` ops, calibrated on the samples in a .npy file; see the module docstring.

        quantize-ptq{calibration="calib.npy" calibration-method=percentile percentile=99.99}
    """

    name = "quantize-ptq"

    calibration: str | None = None
    """Path of a .npy float array [N, *input_shape[1:]] or [N, *input_shape]."""
    calibration_method: str = "minmax"
    """"minmax" (the observed range) or "percentile" (clip outliers at `percentile`)."""
    percentile: float | int = 99.99
    """Upper percentile kept by the "percentile" method (`int` too: the option parser
    reads `percentile=99` as an integer)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if not self.calibration:
            raise _fail('needs calibration samples: quantize-ptq{calibration="path/to/samples.npy"}')
        quantize_module(op, load_calibration(self.calibration), self.calibration_method, float(self.percentile))
