"""The `quant` dialect: integer tensors with a real-valued meaning.

A quantized element type says how a stored integer `q` means the real number
`scale * (q - zero_point)`. The syntax is MLIR's:

    !quant.uniform<i8:f32, 0.0235:-128>                 per-tensor
    !quant.uniform<i8:f32:0, {0.01:0, 0.02:0, 0.5:0}>   per-channel along axis 0

Storage types: `i8` (signed), `u8` (unsigned) and `i32` (biases).

The compute ops (`quant.conv2d`, `quant.fully_connected`, `quant.add`,
`quant.global_avg_pool`) have the exact real-valued meaning of ONNX's
DequantizeLinear -> float op -> QuantizeLinear: accumulate in integers, scale by
`s_x * s_w / s_y` in float64, round half to even, add the output zero-point, clamp to
`[act_min, act_max]` (the storage range unless an activation was folded in).
See `docs/semantics.md` and `tinymlir/interpreter/quant_impls.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    Float32Type,
    FloatData,
    IntAttr,
    IntegerAttr,
    IntegerType,
    Signedness,
    TensorType,
    f32,
)
from xdsl.ir import Attribute, Dialect, ParametrizedAttribute, SSAValue, TypeAttribute
from xdsl.irdl import (
    ParsePropInAttrDict,
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.traits import ConstantLike, Pure
from xdsl.utils.exceptions import VerifyException

from tinymlir.dialects.nn import check_conv_shapes, conv_props

_STORAGE_NAMES = {"i8": (8, True), "u8": (8, False), "i32": (32, True), "i16": (16, True)}


@irdl_attr_definition
class UniformQuantizedType(ParametrizedAttribute, TypeAttribute):
    """`!quant.uniform<storage:expressed[:axis], scale:zp | {scale:zp, ...}>`."""

    name = "quant.uniform"

    storage: IntegerType
    expressed: Float32Type
    axis: IntAttr  # -1 for per-tensor
    scales: ArrayAttr[FloatData]
    zero_points: ArrayAttr[IntAttr]

    def __init__(
        self,
        storage: str | IntegerType,
        scales: float | Sequence[float],
        zero_points: int | Sequence[int],
        axis: int | None = None,
    ):
        if isinstance(storage, str):
            width, signed = _STORAGE_NAMES[storage]
            storage = IntegerType(width, Signedness.SIGNLESS if signed else Signedness.UNSIGNED)
        if axis is None:
            scales, zero_points = [scales], [zero_points]  # type: ignore[list-item]
        super().__init__(
            storage,
            f32,
            IntAttr(-1 if axis is None else axis),
            ArrayAttr(FloatData(float(s)) for s in scales),  # type: ignore[union-attr]
            ArrayAttr(IntAttr(int(z)) for z in zero_points),  # type: ignore[union-attr]
        )

    # -- convenient views --------------------------------------------------------
    @property
    def is_per_channel(self) -> bool:
        return self.axis.data >= 0

    @property
    def signed(self) -> bool:
        return self.storage.signedness.data != Signedness.UNSIGNED

    @property
    def storage_name(self) -> str:
        return ("i" if self.signed else "u") + str(self.storage.width.data)

    @property
    def storage_min(self) -> int:
        w = self.storage.width.data
        return -(1 << (w - 1)) if self.signed else 0

    @property
    def storage_max(self) -> int:
        w = self.storage.width.data
        return (1 << (w - 1)) - 1 if self.signed else (1 << w) - 1

    @property
    def storage_dtype(self) -> np.dtype:
        return np.dtype(f"{'int' if self.signed else 'uint'}{self.storage.width.data}")

    def scale_array(self) -> np.ndarray:
        """Scales as float64 (the values are float32-exact)."""
        return np.array([s.data for s in self.scales], dtype=np.float64)

    def zp_array(self) -> np.ndarray:
        return np.array([z.data for z in self.zero_points], dtype=np.int64)

    @property
    def scale(self) -> float:
        return self.scales.data[0].data

    @property
    def zero_point(self) -> int:
        return self.zero_points.data[0].data

    # -- syntax ------------------------------------------------------------------
    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        parser.parse_punctuation("<")
        pos = parser.pos
        storage = parser.parse_identifier(" for the storage type (i8, u8, i16 or i32)")
        if storage not in _STORAGE_NAMES:
            parser.raise_error(f"unsupported storage type '{storage}', expected i8, u8, i16 or i32", pos)
        parser.parse_punctuation(":")
        if parser.parse_optional_keyword("f32") is None:
            parser.raise_error("expected expressed type 'f32'")
        axis = -1
        if parser.parse_optional_punctuation(":") is not None:
            axis = parser.parse_integer(allow_boolean=False, allow_negative=False)
        parser.parse_punctuation(",")

        def scale_zp() -> tuple[float, int]:
            s = parser.parse_float()
            parser.parse_punctuation(":")
            return s, parser.parse_integer(allow_boolean=False)

        if axis >= 0:
            pairs = parser.parse_comma_separated_list(parser.Delimiter.BRACES, scale_zp)
        else:
            pairs = [scale_zp()]
        parser.parse_punctuation(">")
        width, signed = _STORAGE_NAMES[storage]
        return (
            IntegerType(width, Signedness.SIGNLESS if signed else Signedness.UNSIGNED),
            f32,
            IntAttr(axis),
            ArrayAttr(FloatData(s) for s, _ in pairs),
            ArrayAttr(IntAttr(z) for _, z in pairs),
        )

    def print_parameters(self, printer: Printer) -> None:
        def pair(i: int) -> str:
            return f"{self.scales.data[i].data!r}:{self.zero_points.data[i].data}"

        text = f"<{self.storage_name}:f32"
        if self.is_per_channel:
            text += f":{self.axis.data}, {{" + ", ".join(pair(i) for i in range(len(self.scales))) + "}>"
        else:
            text += f", {pair(0)}>"
        printer.print_string(text)

    def verify(self) -> None:
        if self.storage.width.data not in (8, 16, 32):
            raise VerifyException("quantized storage must be 8, 16 or 32 bits wide")
        n = len(self.scales)
        if n == 0 or n != len(self.zero_points):
            raise VerifyException("quantized type needs as many zero-points as scales (at least one)")
        if not self.is_per_channel and n != 1:
            raise VerifyException("per-tensor quantized type has exactly one scale")
        for s in self.scales:
            if not (s.data > 0 and np.isfinite(s.data)):
                raise VerifyException(f"quantization scale must be positive and finite, got {s.data}")
        for z in self.zero_points:
            if not self.storage_min <= z.data <= self.storage_max:
                raise VerifyException(
                    f"zero-point {z.data} is outside the {self.storage_name} storage range"
                )


QuantTensorType = TensorType[UniformQuantizedType]


def qtype(value: SSAValue | Attribute) -> UniformQuantizedType:
    """The quantized element type of a tensor value (or tensor type)."""
    t = value.type if isinstance(value, SSAValue) else value
    assert isinstance(t, TensorType) and isinstance(t.element_type, UniformQuantizedType)
    return t.element_type


def _check_per_channel(qt: UniformQuantizedType, shape: Sequence[int], what: str) -> None:
    if qt.is_per_channel:
        axis = qt.axis.data
        if axis >= len(shape) or shape[axis] != len(qt.scales):
            raise VerifyException(
                f"{what}: per-channel quantization along axis {axis} has {len(qt.scales)} "
                f"scales but the tensor shape is {list(shape)}"
            )


def _check_tensor_qtype(value: SSAValue, what: str, storage: str | None = None) -> UniformQuantizedType:
    t = value.type
    if not (isinstance(t, TensorType) and isinstance(t.element_type, UniformQuantizedType)):
        raise VerifyException(f"{what} must be a tensor of !quant.uniform, got {t}")
    qt = t.element_type
    if storage is not None and qt.storage_name != storage:
        raise VerifyException(f"{what} must have {storage} storage, got {qt.storage_name}")
    _check_per_channel(qt, t.get_shape(), what)
    return qt


def _check_per_tensor(qt: UniformQuantizedType, what: str) -> None:
    if qt.is_per_channel:
        raise VerifyException(f"{what} must be quantized per-tensor")


class _ActivationRange:
    """Mixin: optional `act_min`/`act_max` (storage units) folded into the output."""

    act_min = opt_prop_def(IntegerAttr[IntegerType])
    act_max = opt_prop_def(IntegerAttr[IntegerType])

    def activation_range(self) -> tuple[int, int]:
        qt = qtype(self.result)  # type: ignore[attr-defined]
        lo = qt.storage_min if self.act_min is None else self.act_min.value.data
        hi = qt.storage_max if self.act_max is None else self.act_max.value.data
        return lo, hi

    def verify_activation_range(self) -> None:
        qt = qtype(self.result)  # type: ignore[attr-defined]
        lo, hi = self.activation_range()
        if lo > hi:
            raise VerifyException(f"activation range is empty: act_min {lo} is above act_max {hi}")
        if not qt.storage_min <= lo <= hi <= qt.storage_max:
            raise VerifyException(
                f"activation range [{lo}, {hi}] must lie inside the {qt.storage_name} "
                f"storage range [{qt.storage_min}, {qt.storage_max}]"
            )


def activation_props(act: tuple[int, int] | None) -> dict[str, Attribute]:
    if act is None:
        return {}
    return {"act_min": IntegerAttr(act[0], 32), "act_max": IntegerAttr(act[1], 32)}


@irdl_op_definition
class ConstantOp(IRDLOperation):
    """A quantized constant; `value` holds the stored integers."""

    name = "quant.constant"
    value = prop_def(DenseIntOrFPElementsAttr)
    result = result_def(QuantTensorType)
    traits = traits_def(Pure(), ConstantLike())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$value attr-dict `->` type($result)"

    def __init__(self, data: np.ndarray, result_type: TensorType):
        qt = result_type.element_type
        assert isinstance(qt, UniformQuantizedType)
        width = qt.storage.width.data
        storage = TensorType(IntegerType(width), result_type.get_shape())
        # Stored as signless integers of the storage width (u8 keeps its bit pattern).
        arr = np.ascontiguousarray(data.astype(qt.storage_dtype)).view(f"int{width}")
        value = DenseIntOrFPElementsAttr(storage, _bytes_attr(arr))
        super().__init__(properties={"value": value}, result_types=[result_type])

    def verify_(self) -> None:
        qt = _check_tensor_qtype(self.result, "quant.constant result")
        vt = self.value.get_type()
        assert isinstance(self.result.type, TensorType)
        if tuple(vt.get_shape()) != tuple(self.result.type.get_shape()):
            raise VerifyException(
                f"quant.constant value shape {list(vt.get_shape())} differs from the result shape "
                f"{list(self.result.type.get_shape())}"
            )
        et = vt.get_element_type()
        if not isinstance(et, IntegerType) or et.width.data != qt.storage.width.data:
            raise VerifyException(
                f"quant.constant value must hold {qt.storage.width.data}-bit integers, got {et}"
            )

    def numpy(self) -> np.ndarray:
        qt = qtype(self.result)
        width = qt.storage.width.data
        raw = np.frombuffer(self.value.data.data, dtype=f"<i{width // 8}")
        return raw.view(qt.storage_dtype).reshape(self.value.get_shape()).copy()


def _bytes_attr(arr: np.ndarray):
    from xdsl.dialects.builtin import BytesAttr

    return BytesAttr(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes())


@irdl_op_definition
class QuantizeOp(IRDLOperation):
    """`q = saturate(round_half_even(x / scale) + zp)`, in float32 as ONNX QuantizeLinear."""

    name = "quant.quantize"
    input = operand_def(TensorType[Float32Type])
    result = result_def(QuantTensorType)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, result_type: TensorType):
        super().__init__(operands=[input], result_types=[result_type])

    def verify_(self) -> None:
        _check_tensor_qtype(self.result, "quant.quantize result")
        _check_same_shape(self, self.input, self.result)


@irdl_op_definition
class DequantizeOp(IRDLOperation):
    """`x = (q - zp) * scale` in float32, as ONNX DequantizeLinear."""

    name = "quant.dequantize"
    input = operand_def(QuantTensorType)
    result = result_def(TensorType[Float32Type])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, result_type: TensorType | None = None):
        if result_type is None:
            assert isinstance(input.type, TensorType)
            result_type = TensorType(f32, input.type.get_shape())
        super().__init__(operands=[input], result_types=[result_type])

    def verify_(self) -> None:
        _check_tensor_qtype(self.input, "quant.dequantize operand")
        _check_same_shape(self, self.input, self.result)


@irdl_op_definition
class RequantizeOp(IRDLOperation):
    """Change the quantization of a per-tensor value: exact rescale, round half to even."""

    name = "quant.requantize"
    input = operand_def(QuantTensorType)
    result = result_def(QuantTensorType)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, result_type: TensorType):
        super().__init__(operands=[input], result_types=[result_type])

    def verify_(self) -> None:
        _check_per_tensor(_check_tensor_qtype(self.input, "quant.requantize operand"), "quant.requantize operand")
        _check_per_tensor(_check_tensor_qtype(self.result, "quant.requantize result"), "quant.requantize result")
        _check_same_shape(self, self.input, self.result)


def _check_same_shape(op: IRDLOperation, a: SSAValue, b: SSAValue) -> None:
    assert isinstance(a.type, TensorType) and isinstance(b.type, TensorType)
    if tuple(a.type.get_shape()) != tuple(b.type.get_shape()):
        raise VerifyException(
            f"{op.name}: operand shape {list(a.type.get_shape())} differs from result shape "
            f"{list(b.type.get_shape())}"
        )


def _check_bias(bias: SSAValue | None, x: UniformQuantizedType, w: UniformQuantizedType, channels: int, what: str) -> None:
    """The bias is i32 with scale s_x * s_w[c] and zero-point 0, so it adds to the accumulator."""
    if bias is None:
        return
    b = _check_tensor_qtype(bias, f"{what} bias", "i32")
    assert isinstance(bias.type, TensorType)
    if tuple(bias.type.get_shape()) != (channels,):
        raise VerifyException(f"{what} bias must have shape [{channels}], got {list(bias.type.get_shape())}")
    want = x.scale_array()[0] * np.broadcast_to(w.scale_array(), (channels,))
    got = np.broadcast_to(b.scale_array(), (channels,))
    if not np.allclose(got, want, rtol=1e-6, atol=0):
        raise VerifyException(f"{what} bias scale must equal input scale * weight scale per channel")
    if np.any(b.zp_array() != 0):
        raise VerifyException(f"{what} bias zero-point must be 0")


def _check_weight(w: UniformQuantizedType, what: str) -> None:
    if w.is_per_channel and w.axis.data != 0:
        raise VerifyException(f"{what} weight must be quantized per output channel (axis 0)")


@irdl_op_definition
class Conv2dOp(IRDLOperation, _ActivationRange):
    """Quantized 2-D convolution (NCHW input, OIHW weight, grouped/depthwise)."""

    name = "quant.conv2d"
    input = operand_def(QuantTensorType)
    weight = operand_def(QuantTensorType)
    bias = opt_operand_def(QuantTensorType)
    result = result_def(QuantTensorType)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    groups = prop_def(IntegerAttr[IntegerType])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input `,` $weight (`,` $bias^)? attr-dict `:` functional-type(operands, results)"

    def __init__(
        self,
        input: SSAValue,
        weight: SSAValue,
        bias: SSAValue | None,
        result_type: TensorType,
        *,
        strides: Sequence[int] = (1, 1),
        pads: Sequence[int] = (0, 0, 0, 0),
        dilations: Sequence[int] = (1, 1),
        groups: int = 1,
        act: tuple[int, int] | None = None,
    ):
        super().__init__(
            operands=[input, weight, bias],
            result_types=[result_type],
            properties=conv_props(strides, pads, dilations, groups) | activation_props(act),
        )

    def verify_(self) -> None:
        x = _check_tensor_qtype(self.input, "quant.conv2d input")
        w = _check_tensor_qtype(self.weight, "quant.conv2d weight")
        y = _check_tensor_qtype(self.result, "quant.conv2d result")
        _check_per_tensor(x, "quant.conv2d input")
        _check_per_tensor(y, "quant.conv2d result")
        _check_weight(w, "quant.conv2d")
        check_conv_shapes(self)
        assert isinstance(self.weight.type, TensorType)
        _check_bias(self.bias, x, w, self.weight.type.get_shape()[0], "quant.conv2d")
        self.verify_activation_range()


@irdl_op_definition
class FullyConnectedOp(IRDLOperation, _ActivationRange):
    """Quantized `y = x @ W^T + b` with W of shape [out, in] (ONNX Gemm transB=1)."""

    name = "quant.fully_connected"
    input = operand_def(QuantTensorType)
    weight = operand_def(QuantTensorType)
    bias = opt_operand_def(QuantTensorType)
    result = result_def(QuantTensorType)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input `,` $weight (`,` $bias^)? attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, weight: SSAValue, bias: SSAValue | None, result_type: TensorType,
                 *, act: tuple[int, int] | None = None):
        super().__init__(operands=[input, weight, bias], result_types=[result_type],
                         properties=activation_props(act))

    def verify_(self) -> None:
        x = _check_tensor_qtype(self.input, "quant.fully_connected input")
        w = _check_tensor_qtype(self.weight, "quant.fully_connected weight")
        y = _check_tensor_qtype(self.result, "quant.fully_connected result")
        _check_per_tensor(x, "quant.fully_connected input")
        _check_per_tensor(y, "quant.fully_connected result")
        _check_weight(w, "quant.fully_connected")
        xs, ws, ys = (v.type.get_shape() for v in (self.input, self.weight, self.result))  # type: ignore[attr-defined]
        if len(xs) != 2 or len(ws) != 2 or xs[1] != ws[1] or tuple(ys) != (xs[0], ws[0]):
            raise VerifyException(
                f"quant.fully_connected expects input [N, K], weight [M, K] and result [N, M], got "
                f"{list(xs)}, {list(ws)} and {list(ys)}"
            )
        _check_bias(self.bias, x, w, ws[0], "quant.fully_connected")
        self.verify_activation_range()


@irdl_op_definition
class AddOp(IRDLOperation, _ActivationRange):
    """`y = round((s_a (a - z_a) + s_b (b - z_b)) / s_y) + z_y`, same shapes."""

    name = "quant.add"
    lhs = operand_def(QuantTensorType)
    rhs = operand_def(QuantTensorType)
    result = result_def(QuantTensorType)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$lhs `,` $rhs attr-dict `:` functional-type(operands, results)"

    def __init__(self, lhs: SSAValue, rhs: SSAValue, result_type: TensorType, *, act: tuple[int, int] | None = None):
        super().__init__(operands=[lhs, rhs], result_types=[result_type], properties=activation_props(act))

    def verify_(self) -> None:
        for v, what in ((self.lhs, "lhs"), (self.rhs, "rhs"), (self.result, "result")):
            _check_per_tensor(_check_tensor_qtype(v, f"quant.add {what}"), f"quant.add {what}")
        _check_same_shape(self, self.lhs, self.result)
        _check_same_shape(self, self.rhs, self.result)
        self.verify_activation_range()


@irdl_op_definition
class GlobalAvgPoolOp(IRDLOperation, _ActivationRange):
    """`y = round(sum_hw(x - z_x) * s_x / (H W s_y)) + z_y`, NCHW -> Nx C x1x1."""

    name = "quant.global_avg_pool"
    input = operand_def(QuantTensorType)
    result = result_def(QuantTensorType)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, result_type: TensorType, *, act: tuple[int, int] | None = None):
        super().__init__(operands=[input], result_types=[result_type], properties=activation_props(act))

    def verify_(self) -> None:
        _check_per_tensor(_check_tensor_qtype(self.input, "quant.global_avg_pool input"), "quant.global_avg_pool input")
        _check_per_tensor(_check_tensor_qtype(self.result, "quant.global_avg_pool result"), "quant.global_avg_pool result")
        xs, ys = self.input.type.get_shape(), self.result.type.get_shape()  # type: ignore[attr-defined]
        if len(xs) != 4 or tuple(ys) != (xs[0], xs[1], 1, 1):
            raise VerifyException(
                f"quant.global_avg_pool expects an NCHW input and an Nx C x1x1 result, got {list(xs)} -> {list(ys)}"
            )
        self.verify_activation_range()


Quant = Dialect(
    "quant",
    [ConstantOp, QuantizeOp, DequantizeOp, RequantizeOp, Conv2dOp, FullyConnectedOp, AddOp, GlobalAvgPoolOp],
    [UniformQuantizedType],
)
