"""The `cmsisnn` dialect: one op per CMSIS-NN function call (level 5).

Each op is one call of a CMSIS-NN s8 function, carrying that function's exact integer
parameters as properties, so the C emitter only has to print them:

    %y = cmsisnn.convolve_wrapper_s8 %x, %w, %b input_offset 128 output_offset -128
           stride [2, 2] padding [1, 1] dilation [1, 1] activation(-128, 127)
           multipliers [1367209344, ...] shifts [-8, ...]
         : (tensor<1x128x128x3xi8>, tensor<16x3x3x3xi8>, tensor<16xi32>) -> tensor<1x64x64x16xi8>

Conventions (those of CMSIS-NN, see `tinymlir/runtime/cmsisnn/include/`):
- Tensors are plain integer tensors: activations and weights `i8`, biases `i32`. All
  quantization information is in the properties; there are no quantized types here.
- Activations are NHWC. Convolution filters are OHWI (`[C_OUT, KH, KW, C_IN / groups]`),
  depthwise filters `[1, KH, KW, C_OUT]` with `C_OUT = C_IN * ch_mult`, fully connected
  weights `[C_OUT, K]`.
- `input_offset = -z_x` (range [-127, 128]), `filter_offset = -z_w`,
  `output_offset = +z_y`; `stride`, `padding`, `dilation` and `kernel` are `[h, w]`;
  `padding` is the top/left padding, the output shape implies the rest.
- A requantization is `arm_nn_requantize(acc, multiplier, shift)`: `multiplier` a Q31
  value in [2**30, 2**31) (or 0), `shift` a left shift (negative: right) in [-31, 30].
  Per-channel ops hold one multiplier and shift per output channel.
- `activation(min, max)` clamps the stored output (CMSIS-NN's `cmsis_nn_activation`).

Three ops are tinymlir's own small kernels, not CMSIS-NN functions:
`cmsisnn.requantize_s8` (change the quantization of an s8 tensor), and
`cmsisnn.quantize_s8` / `cmsisnn.dequantize_s8` (float32 <-> s8 at the graph boundary,
with ONNX QuantizeLinear / DequantizeLinear semantics).

The numeric meaning of every op is `tinymlir/interpreter/cmsisnn_impls.py`, bit-exact with
the C kernels (`tinymlir/interpreter/cmsisnn_math.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import (
    I32,
    I64,
    DenseArrayBase,
    FloatAttr,
    Float32Type,
    IntegerAttr,
    IntegerType,
    Signedness,
    TensorType,
    f32,
    i32,
    i64,
)
from xdsl.ir import Attribute, Dialect, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

S8_MIN, S8_MAX = -128, 127
MULTIPLIER_MAX = 2**31 - 1
SHIFT_MIN, SHIFT_MAX = -31, 30

_TAIL = "attr-dict `:` functional-type(operands, results)"
_ACTIVATION = "`activation` `(` $act_min `,` $act_max `)`"
_REQUANT = "`multipliers` $multipliers `shifts` $shifts"


# -- property builders ----------------------------------------------------------------
def i32_attr(value: int) -> IntegerAttr:
    return IntegerAttr(int(value), i32)


def pair(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, [int(v) for v in values])


def i32_array(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i32, [int(v) for v in values])


def ints(attr: DenseArrayBase) -> tuple[int, ...]:
    return tuple(int(v) for v in attr.get_values())


def activation_props(act: tuple[int, int]) -> dict[str, Attribute]:
    return {"act_min": i32_attr(act[0]), "act_max": i32_attr(act[1])}


def _shape(value: SSAValue) -> tuple[int, ...]:
    assert isinstance(value.type, TensorType)
    return tuple(int(d) for d in value.type.get_shape())


def _align4(n: int) -> int:
    return (n + 3) & ~3


# -- verification helpers -------------------------------------------------------------
def _int_tensor(op: IRDLOperation, value: SSAValue, width: int, what: str, rank: int | None = None) -> tuple[int, ...]:
    """The shape of `value`, which must be a tensor of signless `i<width>` (of `rank`)."""
    t = value.type
    et = t.element_type if isinstance(t, TensorType) else None
    if not (isinstance(et, IntegerType) and et.width.data == width and et.signedness.data == Signedness.SIGNLESS):
        raise VerifyException(f"{op.name}: {what} must be a tensor of i{width}, got {t}")
    assert isinstance(t, TensorType)
    shape = tuple(t.get_shape())
    if rank is not None and len(shape) != rank:
        raise VerifyException(f"{op.name}: {what} must have rank {rank}, got shape {list(shape)}")
    return shape


def _f32_tensor(op: IRDLOperation, value: SSAValue, what: str) -> tuple[int, ...]:
    t = value.type
    if not (isinstance(t, TensorType) and isinstance(t.element_type, Float32Type)):
        raise VerifyException(f"{op.name}: {what} must be a tensor of f32, got {t}")
    return tuple(t.get_shape())


def _value(attr: IntegerAttr) -> int:
    return attr.value.data


def _in_range(op: IRDLOperation, name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise VerifyException(f"{op.name}: {name} {value} is outside [{lo}, {hi}]")


def _check_pair(op: IRDLOperation, name: str, minimum: int) -> tuple[int, int]:
    values = ints(getattr(op, name))
    if len(values) != 2 or any(v < minimum for v in values):
        kind = "positive" if minimum > 0 else "non-negative"
        raise VerifyException(f"{op.name}: {name} must be [h, w], two {kind} integers, got {list(values)}")
    return values[0], values[1]


def _check_activation(op: IRDLOperation) -> None:
    lo, hi = _value(op.act_min), _value(op.act_max)  # type: ignore[attr-defined]
    if not S8_MIN <= lo <= hi <= S8_MAX:
        raise VerifyException(
            f"{op.name}: activation range [{lo}, {hi}] must be a non-empty range inside [{S8_MIN}, {S8_MAX}]"
        )


def _check_multiplier(op: IRDLOperation, what: str, multiplier: int, shift: int) -> None:
    if not 0 <= multiplier <= MULTIPLIER_MAX:
        raise VerifyException(f"{op.name}: {what} multiplier {multiplier} must be a non-negative Q31 value")
    if not SHIFT_MIN <= shift <= SHIFT_MAX:
        raise VerifyException(f"{op.name}: {what} shift {shift} is outside [{SHIFT_MIN}, {SHIFT_MAX}]")


def _check_requant_arrays(op: IRDLOperation, channels: int, allow_per_tensor: bool = False) -> None:
    mults, shifts = ints(op.multipliers), ints(op.shifts)  # type: ignore[attr-defined]
    allowed = (1, channels) if allow_per_tensor else (channels,)
    if len(mults) not in allowed or len(shifts) != len(mults):
        want = f"1 or {channels}" if allow_per_tensor else str(channels)
        raise VerifyException(
            f"{op.name}: needs {want} multipliers and as many shifts (one per output channel), "
            f"got {len(mults)} multipliers and {len(shifts)} shifts"
        )
    for c, (m, s) in enumerate(zip(mults, shifts)):
        _check_multiplier(op, f"channel {c}", m, s)


def _check_window(op: IRDLOperation, dim: str, size: int, kernel: int, stride: int, pad: int, out: int,
                  dilation: int = 1) -> None:
    """Every output position's window must read at least one input element."""
    extent = dilation * (kernel - 1) + 1
    if out < 1 or pad >= extent or (out - 1) * stride - pad > size - 1:
        raise VerifyException(
            f"{op.name}: output {dim} {out} does not fit input {dim} {size} with kernel {kernel}, "
            f"stride {stride}, padding {pad} and dilation {dilation}"
        )


def _check_bias(op: IRDLOperation, bias: SSAValue | None, channels: int) -> None:
    if bias is None:
        return
    shape = _int_tensor(op, bias, 32, "bias")
    if shape != (channels,):
        raise VerifyException(f"{op.name}: bias must have shape [{channels}], got {list(shape)}")


def _check_offsets(op: IRDLOperation) -> None:
    _in_range(op, "input_offset", _value(op.input_offset), -S8_MAX, -S8_MIN)  # type: ignore[attr-defined]
    _in_range(op, "output_offset", _value(op.output_offset), S8_MIN, S8_MAX)  # type: ignore[attr-defined]


def _check_conv_geometry(op: IRDLOperation, xs: tuple[int, ...], kh: int, kw: int, ys: tuple[int, ...]) -> None:
    sh, sw = _check_pair(op, "stride", 1)
    ph, pw = _check_pair(op, "padding", 0)
    dh, dw = _check_pair(op, "dilation", 1)
    if ys[0] != xs[0]:
        raise VerifyException(f"{op.name}: input batch {xs[0]} differs from output batch {ys[0]}")
    _check_window(op, "height", xs[1], kh, sh, ph, ys[1], dh)
    _check_window(op, "width", xs[2], kw, sw, pw, ys[2], dw)


# -- convolutions ---------------------------------------------------------------------
@irdl_op_definition
class ConvolveWrapperS8Op(IRDLOperation):
    """`arm_convolve_wrapper_s8`: per-channel requantized s8 convolution.

    input [N, H, W, C_IN], filter [C_OUT, KH, KW, C_IN / groups] (OHWI; groups > 1 as in
    CMSIS-NN v7), bias [C_OUT] i32 (optional), output [N, OH, OW, C_OUT]:

        acc[c] = bias[c] + sum((x + input_offset) * w[c])      (outside the input: x + input_offset = 0)
        y[c]   = clamp(requantize(acc[c], multipliers[c], shifts[c]) + output_offset, act_min, act_max)
    """

    name = "cmsisnn.convolve_wrapper_s8"
    input = operand_def(TensorType)
    filter = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    result = result_def(TensorType)
    input_offset = prop_def(IntegerAttr[I32])
    output_offset = prop_def(IntegerAttr[I32])
    stride = prop_def(DenseArrayBase[I64])
    padding = prop_def(DenseArrayBase[I64])
    dilation = prop_def(DenseArrayBase[I64])
    act_min = prop_def(IntegerAttr[I32])
    act_max = prop_def(IntegerAttr[I32])
    multipliers = prop_def(DenseArrayBase[I32])
    shifts = prop_def(DenseArrayBase[I32])
    traits = traits_def(Pure())
    assembly_format = (
        "$input `,` $filter (`,` $bias^)? `input_offset` $input_offset `output_offset` $output_offset "
        "`stride` $stride `padding` $padding `dilation` $dilation " + _ACTIVATION + " " + _REQUANT + " " + _TAIL
    )

    def __init__(self, input: SSAValue, filter: SSAValue, bias: SSAValue | None, result_type: Attribute, *,
                 input_offset: int, output_offset: int, stride: Sequence[int], padding: Sequence[int],
                 dilation: Sequence[int], act: tuple[int, int], multipliers: Sequence[int], shifts: Sequence[int]):
        super().__init__(
            operands=[input, filter, bias],
            result_types=[result_type],
            properties={
                "input_offset": i32_attr(input_offset), "output_offset": i32_attr(output_offset),
                "stride": pair(stride), "padding": pair(padding), "dilation": pair(dilation),
                **activation_props(act),
                "multipliers": i32_array(multipliers), "shifts": i32_array(shifts),
            },
        )

    def verify_(self) -> None:
        xs = _int_tensor(self, self.input, 8, "input", 4)
        ws = _int_tensor(self, self.filter, 8, "filter", 4)
        ys = _int_tensor(self, self.result, 8, "result", 4)
        if ws[3] < 1 or xs[3] % ws[3] or ws[0] % (xs[3] // ws[3]):
            raise VerifyException(
                f"{self.name}: filter [C_OUT, KH, KW, C_IN] = {list(ws)} does not match {xs[3]} input channels "
                f"(C_IN must divide them into groups, and the groups must divide C_OUT)"
            )
        if ys[3] != ws[0]:
            raise VerifyException(f"{self.name}: result has {ys[3]} channels, the filter {ws[0]}")
        _check_conv_geometry(self, xs, ws[1], ws[2], ys)
        _check_bias(self, self.bias, ws[0])
        _check_offsets(self)
        _check_activation(self)
        _check_requant_arrays(self, ws[0])

    @property
    def groups(self) -> int:
        return self.input.type.get_shape()[3] // self.filter.type.get_shape()[3]  # type: ignore[attr-defined]

    def scratch_bytes(self) -> int:
        """Bytes of `cmsis_nn_context.buf` the call needs: the larger of CMSIS-NN's pure C
        and DSP `arm_convolve_wrapper_s8_get_buffer_size` (the formulas of
        `tinymlir/runtime/cmsisnn/src`): none for the 1x1 fast path (no padding, unit
        dilation, one group), else two im2col columns of int16."""
        xs, ws = _shape(self.input), _shape(self.filter)
        if ints(self.padding) == (0, 0) and ws[1] == ws[2] == 1 and ints(self.dilation) == (1, 1) and ws[3] == xs[3]:
            return 0
        return 2 * _align4(ws[1] * ws[2] * xs[3]) * 2


@irdl_op_definition
class DepthwiseConvWrapperS8Op(IRDLOperation):
    """`arm_depthwise_conv_wrapper_s8`: per-channel requantized s8 depthwise convolution.

    input [N, H, W, C_IN], filter [1, KH, KW, C_OUT] with C_OUT = C_IN * ch_mult (output
    channel c reads input channel c / ch_mult), bias [C_OUT] i32 (optional), output
    [N, OH, OW, C_OUT]; arithmetic as `cmsisnn.convolve_wrapper_s8`.
    """

    name = "cmsisnn.depthwise_conv_wrapper_s8"
    input = operand_def(TensorType)
    filter = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    result = result_def(TensorType)
    input_offset = prop_def(IntegerAttr[I32])
    output_offset = prop_def(IntegerAttr[I32])
    ch_mult = prop_def(IntegerAttr[I32])
    stride = prop_def(DenseArrayBase[I64])
    padding = prop_def(DenseArrayBase[I64])
    dilation = prop_def(DenseArrayBase[I64])
    act_min = prop_def(IntegerAttr[I32])
    act_max = prop_def(IntegerAttr[I32])
    multipliers = prop_def(DenseArrayBase[I32])
    shifts = prop_def(DenseArrayBase[I32])
    traits = traits_def(Pure())
    assembly_format = (
        "$input `,` $filter (`,` $bias^)? `input_offset` $input_offset `output_offset` $output_offset "
        "`ch_mult` $ch_mult `stride` $stride `padding` $padding `dilation` $dilation "
        + _ACTIVATION + " " + _REQUANT + " " + _TAIL
    )

    def __init__(self, input: SSAValue, filter: SSAValue, bias: SSAValue | None, result_type: Attribute, *,
                 input_offset: int, output_offset: int, ch_mult: int, stride: Sequence[int],
                 padding: Sequence[int], dilation: Sequence[int], act: tuple[int, int],
                 multipliers: Sequence[int], shifts: Sequence[int]):
        super().__init__(
            operands=[input, filter, bias],
            result_types=[result_type],
            properties={
                "input_offset": i32_attr(input_offset), "output_offset": i32_attr(output_offset),
                "ch_mult": i32_attr(ch_mult),
                "stride": pair(stride), "padding": pair(padding), "dilation": pair(dilation),
                **activation_props(act),
                "multipliers": i32_array(multipliers), "shifts": i32_array(shifts),
            },
        )

    def verify_(self) -> None:
        xs = _int_tensor(self, self.input, 8, "input", 4)
        ws = _int_tensor(self, self.filter, 8, "filter", 4)
        ys = _int_tensor(self, self.result, 8, "result", 4)
        ch_mult = _value(self.ch_mult)
        if ws[0] != 1:
            raise VerifyException(f"{self.name}: filter must be [1, KH, KW, C_OUT], got {list(ws)}")
        if ch_mult < 1 or ws[3] != xs[3] * ch_mult:
            raise VerifyException(
                f"{self.name}: filter has {ws[3]} output channels, expected input channels {xs[3]} * ch_mult {ch_mult}"
            )
        if ys[3] != ws[3]:
            raise VerifyException(f"{self.name}: result has {ys[3]} channels, the filter {ws[3]}")
        _check_conv_geometry(self, xs, ws[1], ws[2], ys)
        _check_bias(self, self.bias, ws[3])
        _check_offsets(self)
        _check_activation(self)
        _check_requant_arrays(self, ws[3])

    def scratch_bytes(self) -> int:
        """Bytes of `cmsis_nn_context.buf`: the larger of CMSIS-NN's pure C and DSP
        `arm_depthwise_conv_wrapper_s8_get_buffer_size`: none for the 3x3 kernel (padding
        <= 1) and when the generic kernel runs (ch_mult > 1, batch > 1, dilation), else one
        int16 im2col window of all channels."""
        xs, ws, ys = _shape(self.input), _shape(self.filter), _shape(self.result)
        pad, dil = ints(self.padding), ints(self.dilation)
        if xs[3] == ys[3] and xs[0] == 1 and dil == (1, 1):
            if ws[1] == ws[2] == 3 and pad[0] <= 1 and pad[1] <= 1:
                return 0
            return xs[3] * ws[1] * ws[2] * 2
        return 0


# -- fully connected ------------------------------------------------------------------
@irdl_op_definition
class FullyConnectedS8Op(IRDLOperation):
    """`arm_fully_connected_s8` (one multiplier) or `arm_fully_connected_per_channel_s8`
    (one per output channel).

    input [N, K], filter [C_OUT, K], bias [C_OUT] i32 (optional), output [N, C_OUT]:

        acc[c] = bias[c] + sum((x + input_offset) * (w[c] + filter_offset))
        y[c]   = clamp(requantize(acc[c], multipliers[c or 0], shifts[c or 0]) + output_offset, act_min, act_max)
    """

    name = "cmsisnn.fully_connected_s8"
    input = operand_def(TensorType)
    filter = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    result = result_def(TensorType)
    input_offset = prop_def(IntegerAttr[I32])
    filter_offset = prop_def(IntegerAttr[I32])
    output_offset = prop_def(IntegerAttr[I32])
    act_min = prop_def(IntegerAttr[I32])
    act_max = prop_def(IntegerAttr[I32])
    multipliers = prop_def(DenseArrayBase[I32])
    shifts = prop_def(DenseArrayBase[I32])
    traits = traits_def(Pure())
    assembly_format = (
        "$input `,` $filter (`,` $bias^)? `input_offset` $input_offset `filter_offset` $filter_offset "
        "`output_offset` $output_offset " + _ACTIVATION + " " + _REQUANT + " " + _TAIL
    )

    def __init__(self, input: SSAValue, filter: SSAValue, bias: SSAValue | None, result_type: Attribute, *,
                 input_offset: int, filter_offset: int, output_offset: int, act: tuple[int, int],
                 multipliers: Sequence[int], shifts: Sequence[int]):
        super().__init__(
            operands=[input, filter, bias],
            result_types=[result_type],
            properties={
                "input_offset": i32_attr(input_offset), "filter_offset": i32_attr(filter_offset),
                "output_offset": i32_attr(output_offset), **activation_props(act),
                "multipliers": i32_array(multipliers), "shifts": i32_array(shifts),
            },
        )

    @property
    def per_channel(self) -> bool:
        """One multiplier per output channel (`arm_fully_connected_per_channel_s8`)."""
        return len(ints(self.multipliers)) > 1

    def verify_(self) -> None:
        xs = _int_tensor(self, self.input, 8, "input", 2)
        ws = _int_tensor(self, self.filter, 8, "filter", 2)
        ys = _int_tensor(self, self.result, 8, "result", 2)
        if xs[1] != ws[1] or ys != (xs[0], ws[0]):
            raise VerifyException(
                f"{self.name}: expects input [N, K], filter [C_OUT, K] and result [N, C_OUT], got "
                f"{list(xs)}, {list(ws)} and {list(ys)}"
            )
        _check_bias(self, self.bias, ws[0])
        _check_offsets(self)
        _in_range(self, "filter_offset", _value(self.filter_offset), -S8_MAX, -S8_MIN)
        _check_activation(self)
        _check_requant_arrays(self, ws[0], allow_per_tensor=True)


# -- elementwise ----------------------------------------------------------------------
@irdl_op_definition
class ElementwiseAddS8Op(IRDLOperation):
    """`arm_elementwise_add_s8`, with TFLite's parametrization of a quantized add:

        a = requantize((x1 + input1.offset) << left_shift, input1.multiplier, input1.shift)
        b = requantize((x2 + input2.offset) << left_shift, input2.multiplier, input2.shift)
        y = clamp(requantize(a + b, output.multiplier, output.shift) + output.offset, act_min, act_max)

    Operands and result have the same shape.
    """

    name = "cmsisnn.elementwise_add_s8"
    input1 = operand_def(TensorType)
    input2 = operand_def(TensorType)
    result = result_def(TensorType)
    input1_offset = prop_def(IntegerAttr[I32])
    input1_multiplier = prop_def(IntegerAttr[I32])
    input1_shift = prop_def(IntegerAttr[I32])
    input2_offset = prop_def(IntegerAttr[I32])
    input2_multiplier = prop_def(IntegerAttr[I32])
    input2_shift = prop_def(IntegerAttr[I32])
    left_shift = prop_def(IntegerAttr[I32])
    output_offset = prop_def(IntegerAttr[I32])
    output_multiplier = prop_def(IntegerAttr[I32])
    output_shift = prop_def(IntegerAttr[I32])
    act_min = prop_def(IntegerAttr[I32])
    act_max = prop_def(IntegerAttr[I32])
    traits = traits_def(Pure())
    assembly_format = (
        "$input1 `,` $input2 "
        "`input1` `(` `offset` `=` $input1_offset `,` `multiplier` `=` $input1_multiplier `,` `shift` `=` $input1_shift `)` "
        "`input2` `(` `offset` `=` $input2_offset `,` `multiplier` `=` $input2_multiplier `,` `shift` `=` $input2_shift `)` "
        "`left_shift` $left_shift "
        "`output` `(` `offset` `=` $output_offset `,` `multiplier` `=` $output_multiplier `,` `shift` `=` $output_shift `)` "
        + _ACTIVATION + " " + _TAIL
    )

    def __init__(self, input1: SSAValue, input2: SSAValue, result_type: Attribute, *,
                 input1_params: tuple[int, int, int], input2_params: tuple[int, int, int],
                 output_params: tuple[int, int, int], act: tuple[int, int], left_shift: int = 20):
        """Each `*_params` is `(offset, multiplier, shift)`."""
        props: dict[str, Attribute] = {"left_shift": i32_attr(left_shift), **activation_props(act)}
        for k, params in (("input1", input1_params), ("input2", input2_params), ("output", output_params)):
            for field, v in zip(("offset", "multiplier", "shift"), params):
                props[f"{k}_{field}"] = i32_attr(v)
        super().__init__(operands=[input1, input2], result_types=[result_type], properties=props)

    def verify_(self) -> None:
        s1 = _int_tensor(self, self.input1, 8, "input1")
        s2 = _int_tensor(self, self.input2, 8, "input2")
        sy = _int_tensor(self, self.result, 8, "result")
        if not s1 == s2 == sy:
            raise VerifyException(
                f"{self.name}: operands and result must have the same shape, got {list(s1)}, {list(s2)} and {list(sy)}"
            )
        for k in ("input1", "input2"):
            _in_range(self, f"{k} offset", _value(getattr(self, f"{k}_offset")), -S8_MAX, -S8_MIN)
        _in_range(self, "output offset", _value(self.output_offset), S8_MIN, S8_MAX)
        _in_range(self, "left_shift", _value(self.left_shift), 0, 23)
        for k in ("input1", "input2", "output"):
            _check_multiplier(self, k, _value(getattr(self, f"{k}_multiplier")), _value(getattr(self, f"{k}_shift")))
        _check_activation(self)

    def in_place_operand(self) -> int | None:
        """The result may overwrite input1 (the memory planner's in-place reuse): CMSIS-NN's
        C and DSP kernels both read element i of each input before writing element i."""
        return 0


# -- pooling --------------------------------------------------------------------------
class _PoolOp(IRDLOperation):
    """input [N, H, W, C] -> output [N, OH, OW, C], windows `kernel` [h, w]."""

    input = operand_def(TensorType)
    result = result_def(TensorType)
    kernel = prop_def(DenseArrayBase[I64])
    stride = prop_def(DenseArrayBase[I64])
    padding = prop_def(DenseArrayBase[I64])
    act_min = prop_def(IntegerAttr[I32])
    act_max = prop_def(IntegerAttr[I32])
    traits = traits_def(Pure())
    assembly_format = "$input `kernel` $kernel `stride` $stride `padding` $padding " + _ACTIVATION + " " + _TAIL

    def __init__(self, input: SSAValue, result_type: Attribute, *, kernel: Sequence[int], stride: Sequence[int],
                 padding: Sequence[int], act: tuple[int, int]):
        super().__init__(
            operands=[input],
            result_types=[result_type],
            properties={"kernel": pair(kernel), "stride": pair(stride), "padding": pair(padding),
                        **activation_props(act)},
        )

    def verify_(self) -> None:
        xs = _int_tensor(self, self.input, 8, "input", 4)
        ys = _int_tensor(self, self.result, 8, "result", 4)
        kh, kw = _check_pair(self, "kernel", 1)
        sh, sw = _check_pair(self, "stride", 1)
        ph, pw = _check_pair(self, "padding", 0)
        if ys[0] != xs[0] or ys[3] != xs[3]:
            raise VerifyException(f"{self.name}: result {list(ys)} must keep the batch and channels of input {list(xs)}")
        _check_window(self, "height", xs[1], kh, sh, ph, ys[1])
        _check_window(self, "width", xs[2], kw, sw, pw, ys[2])
        _check_activation(self)


@irdl_op_definition
class AvgpoolS8Op(_PoolOp):
    """`arm_avgpool_s8`: the mean of the window elements inside the input, rounded half
    away from zero, clamped. No offsets and no rescaling: input and output share their
    quantization."""

    name = "cmsisnn.avgpool_s8"

    def scratch_bytes(self) -> int:
        """Bytes of `cmsis_nn_context.buf`: `arm_avgpool_s8_get_buffer_size`, an int32
        accumulator per channel (the DSP build's; the pure C build needs none)."""
        return _shape(self.input)[3] * 4


@irdl_op_definition
class MaxPoolS8Op(_PoolOp):
    """`arm_max_pool_s8`: the maximum of the window elements inside the input, clamped."""

    name = "cmsisnn.max_pool_s8"


# -- tinymlir's own kernels -------------------------------------------------------------
@irdl_op_definition
class RequantizeS8Op(IRDLOperation):
    """Own kernel (CMSIS-NN has none): change the quantization of an s8 tensor,
    element-wise, same shape; the input stage of `arm_elementwise_add_s8`:

        y = clamp(requantize((x + input_offset) << left_shift, multiplier, shift) + output_offset,
                  act_min, act_max)

    The left shift (20, as the add's) gives `arm_nn_requantize` 20 more bits to round
    from: without it, its doubling-high-multiply rounds an 8-bit value to a few bits
    before the final rounding shift (double rounding, off by one LSB from the real
    value on some inputs)."""

    name = "cmsisnn.requantize_s8"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    input_offset = prop_def(IntegerAttr[I32])
    output_offset = prop_def(IntegerAttr[I32])
    left_shift = prop_def(IntegerAttr[I32])
    multiplier = prop_def(IntegerAttr[I32])
    shift = prop_def(IntegerAttr[I32])
    act_min = prop_def(IntegerAttr[I32])
    act_max = prop_def(IntegerAttr[I32])
    traits = traits_def(Pure())
    assembly_format = (
        "$input `input_offset` $input_offset `output_offset` $output_offset `left_shift` $left_shift "
        "`multiplier` $multiplier `shift` $shift " + _ACTIVATION + " " + _TAIL
    )

    def __init__(self, input: SSAValue, result_type: Attribute, *, input_offset: int, output_offset: int,
                 multiplier: int, shift: int, act: tuple[int, int], left_shift: int = 0):
        super().__init__(
            operands=[input],
            result_types=[result_type],
            properties={"input_offset": i32_attr(input_offset), "output_offset": i32_attr(output_offset),
                        "left_shift": i32_attr(left_shift), "multiplier": i32_attr(multiplier),
                        "shift": i32_attr(shift), **activation_props(act)},
        )

    def verify_(self) -> None:
        xs = _int_tensor(self, self.input, 8, "input")
        ys = _int_tensor(self, self.result, 8, "result")
        if xs != ys:
            raise VerifyException(f"{self.name}: operand shape {list(xs)} differs from result shape {list(ys)}")
        _check_offsets(self)
        _in_range(self, "left_shift", _value(self.left_shift), 0, 23)
        _check_multiplier(self, "the", _value(self.multiplier), _value(self.shift))
        _check_activation(self)


class _BoundaryOp(IRDLOperation):
    input = operand_def(TensorType)
    result = result_def(TensorType)
    scale = prop_def(FloatAttr[Float32Type])
    zero_point = prop_def(IntegerAttr[I32])
    traits = traits_def(Pure())
    assembly_format = "$input `scale` $scale `zero_point` $zero_point " + _TAIL

    def __init__(self, input: SSAValue, result_type: Attribute, *, scale: float, zero_point: int):
        super().__init__(
            operands=[input],
            result_types=[result_type],
            properties={"scale": FloatAttr(scale, f32), "zero_point": i32_attr(zero_point)},
        )

    def _verify(self, float_value: SSAValue, int_value: SSAValue) -> None:
        fs = _f32_tensor(self, float_value, "float side")
        qs = _int_tensor(self, int_value, 8, "integer side")
        if fs != qs:
            raise VerifyException(f"{self.name}: operand shape {list(self.input.type.get_shape())} differs from "  # type: ignore[attr-defined]
                                  f"result shape {list(self.result.type.get_shape())}")  # type: ignore[attr-defined]
        s = self.scale.value.data
        if not (s > 0 and s < float("inf")):
            raise VerifyException(f"{self.name}: scale must be positive and finite, got {s}")
        _in_range(self, "zero_point", _value(self.zero_point), S8_MIN, S8_MAX)


@irdl_op_definition
class QuantizeS8Op(_BoundaryOp):
    """Own kernel: float32 -> s8 as ONNX QuantizeLinear,
    `y = saturate(round_half_even(x / scale) + zero_point)` with the division in float32."""

    name = "cmsisnn.quantize_s8"

    def verify_(self) -> None:
        self._verify(self.input, self.result)


@irdl_op_definition
class DequantizeS8Op(_BoundaryOp):
    """Own kernel: s8 -> float32 as ONNX DequantizeLinear, `y = float32(x - zero_point) * scale`."""

    name = "cmsisnn.dequantize_s8"

    def verify_(self) -> None:
        self._verify(self.result, self.input)


CmsisNN = Dialect(
    "cmsisnn",
    [
        ConvolveWrapperS8Op, DepthwiseConvWrapperS8Op, FullyConnectedS8Op, ElementwiseAddS8Op,
        AvgpoolS8Op, MaxPoolS8Op, RequantizeS8Op, QuantizeS8Op, DequantizeS8Op,
    ],
    [],
)
