"""`convert-quant-to-cmsisnn`: quant ops -> CMSIS-NN calls with their integer parameters.

    quant.conv2d (groups 1 or grouped)   -> cmsisnn.convolve_wrapper_s8
    quant.conv2d (depthwise)             -> cmsisnn.depthwise_conv_wrapper_s8
    quant.fully_connected                -> cmsisnn.fully_connected_s8 (per-tensor or per-channel)
    quant.add                            -> cmsisnn.elementwise_add_s8 (TFLite's parameters)
    quant.global_avg_pool                -> cmsisnn.avgpool_s8 (same in/out quantization)
                                            or cmsisnn.depthwise_conv_wrapper_s8 (constant weights)
    nn.max_pool (quantized)              -> cmsisnn.max_pool_s8
    quant.requantize                     -> cmsisnn.requantize_s8
    quant.quantize / quant.dequantize    -> cmsisnn.quantize_s8 / cmsisnn.dequantize_s8
    quant.constant                       -> arith.constant of the storage integers
    nn data movement (quantized)         -> the same op on the storage integers

Quantized types disappear: every value becomes its storage (`i8`, biases `i32`), 4-D
activations NHWC. The multipliers and shifts come from `quantize_multiplier` (TFLite's
QuantizeMultiplier) of the real scales, as TFLite Micro computes them for CMSIS-NN. See
`ConvertQuantToCmsisNNPass`.

The rewrite is a dialect conversion: each pattern converts one op and talks to its
not-yet-converted neighbours through `builtin.unrealized_conversion_cast` (storage <->
quantized type); the casts, and the layout adaptors of `convert-layout`, cancel in pairs
once both sides are converted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects import arith, func
from xdsl.dialects.builtin import (
    FunctionType,
    IntegerType,
    ModuleOp,
    TensorType,
    UnrealizedConversionCastOp,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint
from xdsl.transforms.dead_code_elimination import dce
from xdsl.utils.exceptions import PassFailedException

from tinymlir.dialects import cmsisnn, nn, quant, train
from tinymlir.dialects.nn import ints, shape_of
from tinymlir.dialects.quant import UniformQuantizedType, qtype
from tinymlir.passes.convert_layout import (
    TO_NCHW,
    TO_NHWC,
    filter_perm,
    inverse,
    is_depthwise,
    is_quantized,
    transposed_from,
    transposed_type,
)
from tinymlir.passes.fold_constants import constant_value, materialize_constant

ADD_LEFT_SHIFT = 20  # TFLite's left_shift for int8 add
REQUANTIZE_LEFT_SHIFT = 20  # the same headroom for cmsisnn.requantize_s8
GAP_UNIT_WEIGHT = 64  # the weight of a global average pool lowered to a depthwise conv
I32_MAX = 2**31 - 1
DATA_MOVEMENT = (nn.TransposeOp, nn.FlattenOp, nn.ReshapeOp, nn.PadOp, nn.ConcatOp)


def quantize_multiplier(real: float) -> tuple[int, int]:
    from tinymlir.interpreter.cmsisnn_math import quantize_multiplier as qm

    m, s = qm(float(real))
    return int(m), int(s)


def _fail(message: str) -> PassFailedException:
    return PassFailedException("convert-quant-to-cmsisnn: " + message)


# -- types and values ---------------------------------------------------------------------
def storage_type(t: Attribute) -> Attribute:
    """A tensor of quantized values as a tensor of its storage integers (signless)."""
    if isinstance(t, TensorType) and isinstance(et := t.element_type, UniformQuantizedType):
        return TensorType(IntegerType(et.storage.width.data), t.get_shape())
    return t


def _cast(value: SSAValue, t: Attribute) -> tuple[list[Operation], SSAValue]:
    op, res = UnrealizedConversionCastOp.cast_one(value, t)
    return [op], res


def _cast_source(value: SSAValue) -> SSAValue | None:
    """`x` if `value` is a one-operand cast of `x`."""
    owner = value.owner
    if isinstance(owner, UnrealizedConversionCastOp) and len(owner.inputs) == 1 and len(owner.outputs) == 1:
        return owner.inputs[0]
    return None


def stored(value: SSAValue) -> tuple[list[Operation], SSAValue]:
    """The storage integers of the quantized `value` (a cast, cancelled later)."""
    src = _cast_source(value)
    if src is not None and src.type == storage_type(value.type):
        return [], src
    return _cast(value, storage_type(value.type))


def stored_nhwc(value: SSAValue) -> tuple[list[Operation], SSAValue]:
    """The NHWC storage integers of the 4-D NCHW quantized `value`: the source of a
    layout adaptor (as `convert-layout` leaves them), else a new transpose."""
    src = _cast_source(value)
    inner = transposed_from(src if src is not None and src.type == storage_type(value.type) else value, TO_NCHW)
    if inner is not None:
        return stored(inner) if is_quantized(inner) else ([], inner)
    ops, x = stored(value)
    t = nn.TransposeOp(x, transposed_type(x.type, TO_NHWC), TO_NHWC)
    if value.name_hint:
        t.result.name_hint = value.name_hint + "_nhwc"
    return [*ops, t], t.result


def constant_data(value: SSAValue) -> np.ndarray | None:
    """The constant behind `value`, through casts and transposes (as the interpreter
    would compute it), or None."""
    perms: list[tuple[int, ...]] = []
    v: SSAValue = value
    while True:
        if (src := _cast_source(v)) is not None:
            v = src
        elif isinstance(v.owner, nn.TransposeOp):
            perms.append(ints(v.owner.perm))
            v = v.owner.input
        else:
            break
    data = constant_value(v)
    if data is None:
        return None
    for perm in reversed(perms):
        data = np.transpose(data, perm)
    return data


def stored_filter(value: SSAValue, perm: Sequence[int]) -> tuple[list[Operation], SSAValue]:
    """The storage of the weight `value` permuted by `perm`: a new constant when it is
    one, else the source of an inverse transpose, else a transpose."""
    data = constant_data(value)
    target = storage_type(transposed_type(value.type, perm))
    if data is not None:
        const = materialize_constant(np.ascontiguousarray(np.transpose(data, perm)), target)  # type: ignore[arg-type]
        assert const is not None
        const.results[0].name_hint = value.name_hint
        return [const], const.results[0]
    src = transposed_from(value, inverse(perm))
    if src is not None:
        return stored(src)
    ops, x = stored(value)
    t = nn.TransposeOp(x, target, perm)
    return [*ops, t], t.result


def _result_nhwc_type(op: Operation) -> Attribute:
    return storage_type(transposed_type(op.results[0].type, TO_NHWC))


def _back_to_nchw(new: Operation, old: Operation) -> list[Operation]:
    """Ops turning the NHWC storage result of `new` into the NCHW quantized value `old`
    produced (a transpose and a cast, cancelled once the users are converted too)."""
    t = nn.TransposeOp(new.results[0], storage_type(old.results[0].type), TO_NCHW)
    cast, _ = _cast(t.result, old.results[0].type)
    new.results[0].name_hint = old.results[0].name_hint
    return [new, t, *cast]


def _activation(op: Operation) -> tuple[int, int]:
    if hasattr(op, "activation_range"):
        return op.activation_range()  # type: ignore[attr-defined]
    qt = qtype(op.results[0])
    return qt.storage_min, qt.storage_max


def _requant(reals: Sequence[float]) -> tuple[list[int], list[int]]:
    pairs = [quantize_multiplier(r) for r in reals]
    return [m for m, _ in pairs], [s for _, s in pairs]


def _channel_scales(op: quant.Conv2dOp | quant.FullyConnectedOp) -> np.ndarray:
    """Per output channel `s_x * s_w[c] / s_y` in float64, as TFLite computes it."""
    channels = shape_of(op.weight)[0]
    sw = np.broadcast_to(qtype(op.weight).scale_array(), (channels,))
    return qtype(op.input).scale * sw / qtype(op.result).scale


def _safe_bias(op: quant.Conv2dOp | quant.FullyConnectedOp) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(bias, accumulator-safe bias, output change in LSB per channel -- 0 where the
    output saturates anyway) when bias and weight are constants, else None. See
    `accumulator_safe_bias`."""
    if op.bias is None:
        return None
    bias, weight = constant_data(op.bias), constant_data(op.weight)
    if bias is None or weight is None:
        return None
    channels = weight.shape[0]
    centered = weight.reshape(channels, -1).astype(np.int64) - qtype(op.weight).zp_array().reshape(-1, 1)
    reach = np.abs(centered).sum(axis=1)
    limit = np.maximum(I32_MAX - 256 * reach, 0)
    safe = np.clip(bias.astype(np.int64), -limit, limit)
    scales = _channel_scales(op)
    moved = np.abs(safe - bias) * scales
    # A channel whose output is saturated for every input with either bias loses nothing.
    lo, hi = _activation(op)
    zp, r = qtype(op.result).zero_point, 255 * reach
    both = np.stack([bias.astype(np.int64), safe])
    saturated = np.all((both - r) * scales + zp >= hi + 1, axis=0) | np.all((both + r) * scales + zp <= lo - 1, axis=0)
    return bias, safe, np.where(saturated, 0.0, moved)


def accumulator_safe_bias(op: quant.Conv2dOp | quant.FullyConnectedOp) -> tuple[list[Operation], SSAValue | None]:
    """The i32 bias of `op`, each channel's value moved toward 0 just enough that
    `bias + sum((x + input_offset) * (w + filter_offset))` cannot leave int32.

    The exact semantics accumulate without bound; CMSIS-NN's int32 accumulator wraps. A
    quantizer that gives a channel a tiny weight scale saturates its bias at INT32_MIN or
    INT32_MAX (the shared models have such channels: their real bias is an ordinary
    -0.2 .. -0.9), and then the sum overflows. Every partial sum (in any order, also the
    optimized kernels' `bias + offset * sum(w)` first) stays within `256 * sum(|w|)` of
    the bias, so a bias inside `+-(2**31 - 1 - 256 * sum(|w|))` is safe. Moving it by d
    changes the real output by d * s_x * s_w / s_y LSB: at most 0.016 LSB on the shared
    models (46 of mcunet's 7008 channels, 19 of proxyless'); `lowering_problem` refuses a move of half an LSB or more.
    """
    if op.bias is None:
        return [], None
    checked = _safe_bias(op)
    if checked is None or np.array_equal(checked[0], checked[1]):
        return stored(op.bias)
    const = materialize_constant(checked[1].astype(np.int32), storage_type(op.bias.type))  # type: ignore[arg-type]
    assert const is not None
    const.results[0].name_hint = op.bias.name_hint
    return [const], const.results[0]


# -- what can be lowered -------------------------------------------------------------------
def _is_s8(value: SSAValue) -> bool:
    return is_quantized(value) and qtype(value).storage_name == "i8"


def lowering_problem(op: Operation) -> str | None:
    """Why `op` cannot be lowered to CMSIS-NN (None if it can or needs no lowering)."""
    values = [*op.operands, *op.results]
    if not any(is_quantized(v) for v in values):
        return None
    if isinstance(op, (func.FuncOp, func.ReturnOp, train.LoadOp)) or op.dialect_name() == "tk":
        return None
    if isinstance(op, quant.ConstantOp):
        return None if qtype(op.result).signed else "unsigned storage has no CMSIS-NN s8 kernel"
    if isinstance(op, DATA_MOVEMENT):
        return None if all(qtype(v).signed for v in values if is_quantized(v)) else \
            "unsigned storage has no CMSIS-NN s8 kernel"
    if isinstance(op, quant.QuantizeOp):
        return None if _is_s8(op.result) and not qtype(op.result).is_per_channel else \
            "only per-tensor quantization to i8 has a kernel"
    if isinstance(op, quant.DequantizeOp):
        return None if _is_s8(op.input) and not qtype(op.input).is_per_channel else \
            "only per-tensor dequantization from i8 has a kernel"
    s8 = all(_is_s8(v) for v in values if v is not getattr(op, "bias", None))
    if isinstance(op, (quant.Conv2dOp, quant.FullyConnectedOp, quant.AddOp, quant.GlobalAvgPoolOp,
                       quant.RequantizeOp, nn.MaxPoolOp)) and not s8:
        return "CMSIS-NN s8 kernels need i8 activations and weights"
    if isinstance(op, quant.Conv2dOp) and np.any(qtype(op.weight).zp_array() != 0):
        return "CMSIS-NN convolutions need symmetric weights (zero-point 0)"
    if isinstance(op, quant.FullyConnectedOp) and np.any(qtype(op.weight).zp_array() != qtype(op.weight).zero_point):
        return "fully connected weights need one zero-point for all channels (CMSIS-NN has one filter_offset)"
    if isinstance(op, (quant.Conv2dOp, quant.FullyConnectedOp)):
        checked = _safe_bias(op)
        if checked is not None and np.any(checked[2] >= 0.5):
            c = int(np.argmax(checked[2]))
            return (f"channel {c}'s bias {int(checked[0][c])} and weights overflow CMSIS-NN's int32 accumulator "
                    f"(keeping it in range moves the output by {checked[2][c]:.2f} LSB)")
        return None
    if isinstance(op, nn.MaxPoolOp):
        return None if len(shape_of(op.input)) == 4 else "only 4-D max pooling has a kernel"
    if isinstance(op, (quant.AddOp, quant.GlobalAvgPoolOp, quant.RequantizeOp)):
        return None
    return "no CMSIS-NN lowering for this op"


def _describe(op: Operation) -> str:
    names = [r.name_hint for r in op.results if r.name_hint]
    return f"%{names[0]} = {op.name}" if names else f"'{op.name}'"


# -- compute ops ----------------------------------------------------------------------------
class ConvertConv2d(RewritePattern):
    """quant.conv2d -> cmsisnn.convolve_wrapper_s8 (OHWI filter), or
    cmsisnn.depthwise_conv_wrapper_s8 ([1, KH, KW, C] filter) for a depthwise one."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.Conv2dOp, rewriter: PatternRewriter) -> None:
        x_ops, x = stored_nhwc(op.input)
        w_ops, w = stored_filter(op.weight, filter_perm(op))
        b_ops, b = accumulator_safe_bias(op)
        multipliers, shifts = _requant(_channel_scales(op))
        pads = ints(op.pads)
        common = dict(
            input_offset=-qtype(op.input).zero_point, output_offset=qtype(op.result).zero_point,
            stride=ints(op.strides), padding=pads[:2], dilation=ints(op.dilations), act=_activation(op),
            multipliers=multipliers, shifts=shifts,
        )
        if is_depthwise(op):
            ch_mult = shape_of(op.weight)[0] // shape_of(op.input)[1]
            new: Operation = cmsisnn.DepthwiseConvWrapperS8Op(x, w, b, _result_nhwc_type(op), ch_mult=ch_mult, **common)
        else:
            new = cmsisnn.ConvolveWrapperS8Op(x, w, b, _result_nhwc_type(op), **common)
        out = _back_to_nchw(new, op)
        rewriter.replace(op, [*x_ops, *w_ops, *b_ops, *out], [out[-1].results[0]])


class ConvertFullyConnected(RewritePattern):
    """quant.fully_connected -> cmsisnn.fully_connected_s8, one multiplier for a
    per-tensor weight, one per output channel for a per-channel one."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.FullyConnectedOp, rewriter: PatternRewriter) -> None:
        x_ops, x = stored(op.input)
        w_ops, w = stored(op.weight)
        b_ops, b = accumulator_safe_bias(op)
        qw = qtype(op.weight)
        scales = _channel_scales(op)
        multipliers, shifts = _requant(scales if qw.is_per_channel else scales[:1])
        new = cmsisnn.FullyConnectedS8Op(
            x, w, b, storage_type(op.result.type),
            input_offset=-qtype(op.input).zero_point, filter_offset=-int(qw.zp_array()[0]),
            output_offset=qtype(op.result).zero_point, act=_activation(op), multipliers=multipliers, shifts=shifts,
        )
        new.result.name_hint = op.result.name_hint
        cast, res = _cast(new.result, op.result.type)
        rewriter.replace(op, [*x_ops, *w_ops, *b_ops, new, *cast], [res])


class ConvertAdd(RewritePattern):
    """quant.add -> cmsisnn.elementwise_add_s8 with TFLite's parameters (PrepareGeneralSubOp /
    CalculateOpDataAdd): left_shift 20, inputs scaled by s_i / (2 max(s_1, s_2)), output by
    2 max(s_1, s_2) / (2**20 s_y). Element-wise, so in whatever layout its operands are
    (NHWC after convert-layout)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.AddOp, rewriter: PatternRewriter) -> None:
        q1, q2, qy = qtype(op.lhs), qtype(op.rhs), qtype(op.result)
        a_ops, a = stored(op.lhs)
        b_ops, b = stored(op.rhs)
        twice_max = 2 * max(q1.scale, q2.scale)
        m1, s1 = quantize_multiplier(q1.scale / twice_max)
        m2, s2 = quantize_multiplier(q2.scale / twice_max)
        my, sy = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * qy.scale))
        new = cmsisnn.ElementwiseAddS8Op(
            a, b, storage_type(op.result.type),
            input1_params=(-q1.zero_point, m1, s1), input2_params=(-q2.zero_point, m2, s2),
            output_params=(qy.zero_point, my, sy), act=_activation(op), left_shift=ADD_LEFT_SHIFT,
        )
        new.result.name_hint = op.result.name_hint
        cast, res = _cast(new.result, op.result.type)
        rewriter.replace(op, [*a_ops, *b_ops, new, *cast], [res])


class ConvertGlobalAvgPool(RewritePattern):
    """quant.global_avg_pool -> cmsisnn.avgpool_s8 over the whole image when input and
    output share their quantization (TFLite's average pool; one rounding, no rescale).
    Otherwise a depthwise convolution with constant weights u (64, or 1 for huge images),
    `input_offset = -z_x` and the multiplier of s_x / (H W s_y u): still one rounding,
    where avgpool + requantize would round twice."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.GlobalAvgPoolOp, rewriter: PatternRewriter) -> None:
        qx, qy = qtype(op.input), qtype(op.result)
        x_ops, x = stored_nhwc(op.input)
        _, c, h, w = shape_of(op.input)
        if qx.scale == qy.scale and qx.zero_point == qy.zero_point:
            new: Operation = cmsisnn.AvgpoolS8Op(x, _result_nhwc_type(op), kernel=(h, w), stride=(1, 1),
                                                 padding=(0, 0), act=_activation(op))
            rewriter.replace(op, [*x_ops, *(out := _back_to_nchw(new, op))], [out[-1].results[0]])
            return
        # Weights of 64 instead of 1 give arm_nn_requantize 6 more bits to round from.
        unit = GAP_UNIT_WEIGHT if 255 * h * w * GAP_UNIT_WEIGHT < I32_MAX else 1
        ones = materialize_constant(np.full((1, h, w, c), unit, np.int8), TensorType(IntegerType(8), [1, h, w, c]))
        assert ones is not None
        ones.results[0].name_hint = "unit"
        m, s = quantize_multiplier(qx.scale / (h * w * qy.scale * unit))
        new = cmsisnn.DepthwiseConvWrapperS8Op(
            x, ones.results[0], None, _result_nhwc_type(op), input_offset=-qx.zero_point,
            output_offset=qy.zero_point, ch_mult=1, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
            act=_activation(op), multipliers=[m] * c, shifts=[s] * c,
        )
        out = _back_to_nchw(new, op)
        rewriter.replace(op, [*x_ops, ones, *out], [out[-1].results[0]])


class ConvertMaxPool(RewritePattern):
    """nn.max_pool of a quantized tensor -> cmsisnn.max_pool_s8 (padding = top/left)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.MaxPoolOp, rewriter: PatternRewriter) -> None:
        if not is_quantized(op.input):
            return
        x_ops, x = stored_nhwc(op.input)
        new = cmsisnn.MaxPoolS8Op(x, _result_nhwc_type(op), kernel=ints(op.kernel), stride=ints(op.strides),
                                  padding=ints(op.pads)[:2], act=_activation(op))
        out = _back_to_nchw(new, op)
        rewriter.replace(op, [*x_ops, *out], [out[-1].results[0]])


class ConvertRequantize(RewritePattern):
    """quant.requantize -> cmsisnn.requantize_s8 with the multiplier of s_x / s_y, the
    input shifted left by 20 bits first (as the add's inputs) so one rounding counts."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.RequantizeOp, rewriter: PatternRewriter) -> None:
        qx, qy = qtype(op.input), qtype(op.result)
        x_ops, x = stored(op.input)
        m, s = quantize_multiplier(qx.scale / qy.scale)
        left = max(0, min(REQUANTIZE_LEFT_SHIFT, s + 31))  # keep the shift >= -31
        new = cmsisnn.RequantizeS8Op(x, storage_type(op.result.type), input_offset=-qx.zero_point,
                                     output_offset=qy.zero_point, left_shift=left, multiplier=m, shift=s - left,
                                     act=_activation(op))
        new.result.name_hint = op.result.name_hint
        cast, res = _cast(new.result, op.result.type)
        rewriter.replace(op, [*x_ops, new, *cast], [res])


# -- the float boundary, constants and data movement ----------------------------------------
class ConvertQuantize(RewritePattern):
    """quant.quantize -> cmsisnn.quantize_s8 (same float32 semantics)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.QuantizeOp, rewriter: PatternRewriter) -> None:
        qt = qtype(op.result)
        new = cmsisnn.QuantizeS8Op(op.input, storage_type(op.result.type), scale=qt.scale, zero_point=qt.zero_point)
        new.result.name_hint = op.result.name_hint
        cast, res = _cast(new.result, op.result.type)
        rewriter.replace(op, [new, *cast], [res])


class ConvertDequantize(RewritePattern):
    """quant.dequantize -> cmsisnn.dequantize_s8 (same float32 semantics)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.DequantizeOp, rewriter: PatternRewriter) -> None:
        qt = qtype(op.input)
        x_ops, x = stored(op.input)
        new = cmsisnn.DequantizeS8Op(x, op.result.type, scale=qt.scale, zero_point=qt.zero_point)
        rewriter.replace(op, [*x_ops, new])


class ConvertConstant(RewritePattern):
    """quant.constant -> arith.constant of its storage integers (the same dense value)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.ConstantOp, rewriter: PatternRewriter) -> None:
        new = arith.ConstantOp(op.value, storage_type(op.result.type))
        new.result.name_hint = op.result.name_hint
        cast, res = _cast(new.result, op.result.type)
        rewriter.replace(op, [new, *cast], [res])


class ConvertDataMovement(RewritePattern):
    """nn.transpose / flatten / reshape / pad / concat of quantized tensors: the same op
    on their storage integers (moving integers is the same in both worlds)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(
        self, op: nn.TransposeOp | nn.FlattenOp | nn.ReshapeOp | nn.PadOp | nn.ConcatOp, rewriter: PatternRewriter
    ) -> None:
        if not any(is_quantized(v) for v in (*op.operands, *op.results)):
            return
        ops: list[Operation] = []
        operands = []
        for v in op.operands:
            new_ops, x = stored(v) if is_quantized(v) else ([], v)
            ops += new_ops
            operands.append(x)
        new = type(op).create(operands=operands, result_types=[storage_type(op.results[0].type)],
                              properties=dict(op.properties), attributes=dict(op.attributes))
        new.results[0].name_hint = op.results[0].name_hint
        cast, res = _cast(new.results[0], op.results[0].type)
        rewriter.replace(op, [*ops, new, *cast], [res])


class ConvertFunctionBoundary(RewritePattern):
    """func.func with quantized arguments or results: take and return the storage
    integers (what the interpreter passes for quantized tensors anyway)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: func.FuncOp, rewriter: PatternRewriter) -> None:
        ftype = op.function_type
        if not any(isinstance(t, TensorType) and storage_type(t) != t for t in (*ftype.inputs, *ftype.outputs)):
            return
        if not op.body.blocks:
            op.function_type = FunctionType.from_lists([storage_type(t) for t in ftype.inputs],
                                                       [storage_type(t) for t in ftype.outputs])
            rewriter.notify_op_modified(op)
            return
        block = op.body.blocks[0]
        for arg in list(block.args):
            old = arg.type
            if storage_type(old) == old:
                continue
            new_arg = rewriter.replace_value_with_new_type(arg, storage_type(old))
            cast, res = UnrealizedConversionCastOp.cast_one(new_arg, old)
            rewriter.insert(cast, InsertPoint.at_start(block))
            rewriter.replace_uses_with_if(new_arg, res, lambda use, c=cast: use.operation is not c)
        for ret in [o for o in op.walk() if isinstance(o, func.ReturnOp) and o.parent_op() is op]:
            ops: list[Operation] = []
            values = []
            for v in ret.arguments:
                new_ops, x = stored(v) if is_quantized(v) else ([], v)
                ops += new_ops
                values.append(x)
            rewriter.replace(ret, [*ops, func.ReturnOp(*values)])
        op.function_type = FunctionType.from_lists([a.type for a in block.args],
                                                   [storage_type(t) for t in ftype.outputs])
        rewriter.notify_op_modified(op)


# -- training state and kernels -------------------------------------------------------------
class ConvertParamLoad(RewritePattern):
    """train.load of a quantized param -> a load of its storage integers (the params
    themselves are retyped by the pass; their values already are the integers)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: train.LoadOp, rewriter: PatternRewriter) -> None:
        if not is_quantized(op.result):
            return
        new = train.LoadOp(op.param, storage_type(op.result.type))
        new.result.name_hint = op.result.name_hint
        cast, res = _cast(new.result, op.result.type)
        rewriter.replace(op, [new, *cast], [res])


class KernelOperandsToStorage(RewritePattern):
    """A `tk` kernel reads a quantized operand as its storage integers."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if op.dialect_name() != "tk" or not any(is_quantized(v) for v in op.operands):
            return
        operands = []
        for v in op.operands:
            new_ops, x = stored(v) if is_quantized(v) else ([], v)
            rewriter.insert(new_ops)  # before `op`, the default insertion point
            operands.append(x)
        new = type(op).create(operands=operands, result_types=[r.type for r in op.results],
                              properties=dict(op.properties), attributes=dict(op.attributes))
        for old, res in zip(op.results, new.results):
            res.name_hint = old.name_hint
        rewriter.replace(op, [new])


def params_to_storage(module: ModuleOp) -> None:
    for op in module.body.block.ops:
        if isinstance(op, train.ParamOp) and op.quantized_type is not None:
            op.type = storage_type(op.type)  # type: ignore[assignment]


# -- cancelling what the conversion leaves behind -------------------------------------------
class FoldCastPair(RewritePattern):
    """cast(cast(x)) back to the type of x  ->  x."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: UnrealizedConversionCastOp, rewriter: PatternRewriter) -> None:
        src = _cast_source(op.outputs[0]) if len(op.outputs) == 1 else None
        inner = _cast_source(src) if src is not None else None
        if inner is None or inner.type != op.outputs[0].type:
            return
        rewriter.replace(op, [], [inner])


class FoldTransposePair(RewritePattern):
    """transpose(transpose(x, p), q) with q undoing p  ->  x (the layout adaptors)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.TransposeOp, rewriter: PatternRewriter) -> None:
        inner = op.input.owner
        if not isinstance(inner, nn.TransposeOp) or inner.input.type != op.result.type:
            return
        p, q = ints(inner.perm), ints(op.perm)
        if any(p[q[i]] != i for i in range(len(q))):
            return
        rewriter.replace(op, [], [inner.input])


@dataclass(frozen=True)
class ConvertQuantToCmsisNNPass(ModulePass):
    """Lower the quantized level to CMSIS-NN calls (level 5).

    Input: `quant` ops and `nn` data movement on quantized tensors, preferably NHWC
    after `convert-layout` (NCHW works too: the needed transposes are inserted and the
    convolution weights permuted here). Every op touching a quantized tensor must be one
    of those listed in the module docstring, with i8 activations and weights, symmetric
    convolution weights, and one zero-point for all channels of a fully connected weight;
    otherwise the pass fails with a diagnostic naming the op, before changing anything.

    Output: no quantized type is left. Activations are `i8` tensors, NHWC into and out
    of every CMSIS-NN op (after convert-layout everything between ops is NHWC and only
    the function boundary is transposed; without it, element-wise ops and data movement
    stay NCHW between transposes), weights `arith.constant` in CMSIS-NN's layouts,
    biases `i32`; quantized function arguments and results become their storage integers. Each CMSIS-NN op carries its exact parameters:
    `input_offset = -z_x`, `output_offset = z_y`, `filter_offset = -z_w`, activation range,
    and per output channel `quantize_multiplier(s_x * s_w[c] / s_y)` (float64, as TFLite's
    PopulateConvolutionQuantizationParams). The add uses TFLite's parametrization.

    Meaning. The quant ops round `acc * s_x * s_w / s_y` half to even in float64; the
    CMSIS-NN ops use a Q31 multiplier and `arm_nn_requantize`, which rounds twice (its
    doubling high multiply, then a rounding shift, ties away from zero). So an output may
    move by 1 LSB where the real value is near a .5 tie, never more. Measured op by op
    (each op fed the same inputs under both semantics, tests/test_cmsisnn_lowering.py)
    on the three shared models and six photos: convolutions differ on 0.38-0.42 % of
    their outputs, fully connected 0.13-0.25 %, the global average pool 3 % (exact ties
    of sum / 16, rounded to even vs away from zero), adds, requantizes, quantize,
    dequantize and data movement not at all; always by 1 LSB at most. End to end the
    int8 logits move by up to 4-6 LSB; the top-1 class of both photos is the exact one.
    A saturated int32 bias is moved just inside the range CMSIS-NN's int32 accumulator
    needs (`accumulator_safe_bias`).
    """

    name = "convert-quant-to-cmsisnn"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for inner in op.walk():
            problem = lowering_problem(inner)
            if problem is not None:
                raise _fail(f"cannot lower {_describe(inner)}: {problem}")
        params_to_storage(op)
        patterns = GreedyRewritePatternApplier([
            ConvertParamLoad(), KernelOperandsToStorage(),
            ConvertConv2d(), ConvertFullyConnected(), ConvertAdd(), ConvertGlobalAvgPool(), ConvertMaxPool(),
            ConvertRequantize(), ConvertQuantize(), ConvertDequantize(), ConvertConstant(), ConvertDataMovement(),
            ConvertFunctionBoundary(), FoldCastPair(), FoldTransposePair(),
        ])
        PatternRewriteWalker(patterns).rewrite_module(op)
        dce(op)
        for inner in op.walk():
            if isinstance(inner, UnrealizedConversionCastOp) or any(
                is_quantized(v) for v in (*inner.operands, *inner.results)
            ):
                raise _fail(f"internal error: {_describe(inner)} still has quantized operands after the conversion")
