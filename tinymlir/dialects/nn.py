"""The `nn` dialect: the float tensor ops of MobileNet-style CNNs (level 0).

Tensors are NCHW as in ONNX; conv weights are OIHW (grouped: O x I/groups x KH x KW).
Float constants are `arith.constant`. Data-movement ops (flatten, reshape, transpose,
concat, pad, max_pool) accept any element type, so they also carry quantized tensors.
Each op's meaning is the ONNX operator of the same name; the numpy reference is in
`tinymlir/interpreter/nn_impls.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.dialects.builtin import (
    AnyFloat,
    BoolAttr,
    DenseArrayBase,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    TensorType,
    f32,
    i64,
)
from xdsl.ir import Attribute, Dialect, SSAValue
from xdsl.irdl import (
    ParsePropInAttrDict,
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

FloatTensor = TensorType[AnyFloat]


# -- helpers shared with the quant dialect --------------------------------------------
def int_array(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


def ints(attr: DenseArrayBase) -> tuple[int, ...]:
    return tuple(int(v) for v in attr.get_values())


def conv_props(strides: Sequence[int], pads: Sequence[int], dilations: Sequence[int], groups: int) -> dict[str, Attribute]:
    return {
        "strides": int_array(strides),
        "pads": int_array(pads),
        "dilations": int_array(dilations),
        "groups": IntegerAttr(groups, i64),
    }


def shape_of(value: SSAValue | Attribute) -> tuple[int, ...]:
    """The static shape of a tensor value or tensor type."""
    t = value.type if isinstance(value, SSAValue) else value
    assert isinstance(t, TensorType)
    return tuple(t.get_shape())


def pooled_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int = 1) -> int:
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


def check_int_values(op: IRDLOperation, name: str, values: Sequence[int], n: int, positive: bool) -> None:
    if len(values) != n or any(v < (1 if positive else 0) for v in values):
        kind = "positive" if positive else "non-negative"
        raise VerifyException(f"{op.name}: '{name}' must hold {n} {kind} integers, got {list(values)}")


def _check_len(op: IRDLOperation, name: str, values: Sequence[int], n: int, positive: bool) -> None:
    attr = getattr(op, name)
    if attr.elt_type != i64:
        raise VerifyException(f"{op.name}: '{name}' must be an array<i64: ...>, got element type {attr.elt_type}")
    check_int_values(op, name, values, n, positive)


def conv_output_shape(
    op: IRDLOperation, xs: Sequence[int], ws: Sequence[int], strides: Sequence[int], pads: Sequence[int],
    dilations: Sequence[int], groups: int,
) -> tuple[int, ...]:
    """The NCHW result shape of conv(x, w), or a VerifyException naming `op`.

    Shared by every op with convolution geometry (nn, quant and the train gradients)."""
    check_int_values(op, "strides", strides, 2, True)
    check_int_values(op, "pads", pads, 4, False)
    check_int_values(op, "dilations", dilations, 2, True)
    if len(xs) != 4 or len(ws) != 4:
        raise VerifyException(f"{op.name}: expects a 4-D NCHW input and OIHW weight, got {list(xs)} and {list(ws)}")
    if groups < 1 or xs[1] % groups or ws[0] % groups or ws[1] * groups != xs[1]:
        raise VerifyException(
            f"{op.name}: {xs[1]} input channels, weight {list(ws)} and groups={groups} do not match"
        )
    oh = pooled_size(xs[2], ws[2], strides[0], pads[0], pads[2], dilations[0])
    ow = pooled_size(xs[3], ws[3], strides[1], pads[1], pads[3], dilations[1])
    if oh < 1 or ow < 1:
        raise VerifyException(f"{op.name}: the convolution of {list(xs)} by {list(ws)} has an empty output")
    return (xs[0], ws[0], oh, ow)


def check_conv_shapes(op: IRDLOperation) -> None:
    """Shape rules of a 2-D NCHW convolution; shared by nn.conv2d and quant.conv2d."""
    strides, pads, dilations = ints(op.strides), ints(op.pads), ints(op.dilations)  # type: ignore[attr-defined]
    _check_len(op, "strides", strides, 2, True)
    _check_len(op, "pads", pads, 4, False)
    _check_len(op, "dilations", dilations, 2, True)
    xs, ws, ys = shape_of(op.input), shape_of(op.weight), shape_of(op.result)  # type: ignore[attr-defined]
    want = conv_output_shape(op, xs, ws, strides, pads, dilations, op.groups.value.data)  # type: ignore[attr-defined]
    if ys != want:
        raise VerifyException(f"{op.name}: result shape must be {list(want)}, got {list(ys)}")
    bias = op.bias  # type: ignore[attr-defined]
    if bias is not None and shape_of(bias) != (ws[0],):
        raise VerifyException(f"{op.name}: bias must have shape [{ws[0]}], got {list(shape_of(bias))}")


def broadcast_shape(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...] | None:
    """Numpy/ONNX multidirectional broadcasting; None when incompatible."""
    out = []
    for x, y in zip(reversed((1,) * (len(b) - len(a)) + tuple(a)), reversed((1,) * (len(a) - len(b)) + tuple(b))):
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y))
    return tuple(reversed(out))


def matmul_shape(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...] | None:
    """Result shape of numpy's matmul (1-D operands promoted, batch dims broadcast)."""
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    batch = broadcast_shape(a2[:-2], b2[:-2])
    if batch is None:
        return None
    out = batch + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def _transposed_element_type(a: Attribute, perm: Sequence[int]) -> Attribute:
    """The element type after a transpose: a per-channel quantized axis moves along `perm`."""
    from tinymlir.dialects.quant import UniformQuantizedType

    if not (isinstance(a, UniformQuantizedType) and a.is_per_channel):
        return a
    return UniformQuantizedType(a.storage, [s.data for s in a.scales], [z.data for z in a.zero_points],
                                axis=list(perm).index(a.axis.data))


def _same_element_type(op: IRDLOperation, a: SSAValue, b: SSAValue) -> None:
    assert isinstance(a.type, TensorType) and isinstance(b.type, TensorType)
    if a.type.element_type != b.type.element_type:
        raise VerifyException(f"{op.name}: element types differ: {a.type.element_type} and {b.type.element_type}")


# -- compute ops ----------------------------------------------------------------------
@irdl_op_definition
class Conv2dOp(IRDLOperation):
    """2-D convolution with optional bias, strides, pads [top, left, bottom, right],
    dilations and groups (groups == channels is depthwise)."""

    name = "nn.conv2d"
    input = operand_def(FloatTensor)
    weight = operand_def(FloatTensor)
    bias = opt_operand_def(FloatTensor)
    result = result_def(FloatTensor)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    groups = prop_def(IntegerAttr[IntegerType])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input `,` $weight (`,` $bias^)? attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, weight: SSAValue, bias: SSAValue | None, result_type: Attribute, *,
                 strides: Sequence[int] = (1, 1), pads: Sequence[int] = (0, 0, 0, 0),
                 dilations: Sequence[int] = (1, 1), groups: int = 1):
        super().__init__(operands=[input, weight, bias], result_types=[result_type],
                         properties=conv_props(strides, pads, dilations, groups))

    def verify_(self) -> None:
        check_conv_shapes(self)


@irdl_op_definition
class GemmOp(IRDLOperation):
    """`alpha * op(A) @ op(B) + beta * C` on 2-D tensors, op = optional transpose (ONNX Gemm)."""

    name = "nn.gemm"
    a = operand_def(FloatTensor)
    b = operand_def(FloatTensor)
    c = opt_operand_def(FloatTensor)
    result = result_def(FloatTensor)
    alpha = prop_def(FloatAttr)
    beta = prop_def(FloatAttr)
    trans_a = prop_def(BoolAttr)
    trans_b = prop_def(BoolAttr)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$a `,` $b (`,` $c^)? attr-dict `:` functional-type(operands, results)"

    def __init__(self, a: SSAValue, b: SSAValue, c: SSAValue | None, result_type: Attribute, *,
                 alpha: float = 1.0, beta: float = 1.0, trans_a: bool = False, trans_b: bool = False):
        super().__init__(operands=[a, b, c], result_types=[result_type], properties={
            "alpha": FloatAttr(alpha, f32), "beta": FloatAttr(beta, f32),
            "trans_a": BoolAttr.from_bool(trans_a), "trans_b": BoolAttr.from_bool(trans_b)})

    def verify_(self) -> None:
        a, b, y = shape_of(self.a), shape_of(self.b), shape_of(self.result)
        if len(a) != 2 or len(b) != 2:
            raise VerifyException(f"nn.gemm: operands must be 2-D, got {list(a)} and {list(b)}")
        m, k = a[::-1] if self.trans_a.value.data else a
        k2, n = b[::-1] if self.trans_b.value.data else b
        if k != k2 or y != (m, n):
            raise VerifyException(f"nn.gemm: shapes {list(a)} x {list(b)} -> {list(y)} do not match")
        if self.c is not None and broadcast_shape(shape_of(self.c), y) != y:
            raise VerifyException(f"nn.gemm: C of shape {list(shape_of(self.c))} does not broadcast to {list(y)}")


@irdl_op_definition
class MatMulOp(IRDLOperation):
    """Numpy matmul semantics (ONNX MatMul)."""

    name = "nn.matmul"
    lhs = operand_def(FloatTensor)
    rhs = operand_def(FloatTensor)
    result = result_def(FloatTensor)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$lhs `,` $rhs attr-dict `:` functional-type(operands, results)"

    def __init__(self, lhs: SSAValue, rhs: SSAValue, result_type: Attribute):
        super().__init__(operands=[lhs, rhs], result_types=[result_type])

    def verify_(self) -> None:
        a, b = shape_of(self.lhs), shape_of(self.rhs)
        if not a or not b or (a[-1] != (b[-2] if len(b) > 1 else b[0])):
            raise VerifyException(f"nn.matmul: inner dimensions of {list(a)} and {list(b)} differ")
        _same_element_type(self, self.lhs, self.rhs)
        _same_element_type(self, self.lhs, self.result)
        want = matmul_shape(a, b)
        if want != shape_of(self.result):
            raise VerifyException(f"nn.matmul: result shape must be {list(want)}, got {list(shape_of(self.result))}")


class _BinaryOp(IRDLOperation):
    """Element-wise op with ONNX (numpy) broadcasting."""

    lhs = operand_def(FloatTensor)
    rhs = operand_def(FloatTensor)
    result = result_def(FloatTensor)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$lhs `,` $rhs attr-dict `:` functional-type(operands, results)"

    def __init__(self, lhs: SSAValue, rhs: SSAValue, result_type: Attribute):
        super().__init__(operands=[lhs, rhs], result_types=[result_type])

    def verify_(self) -> None:
        _same_element_type(self, self.lhs, self.rhs)
        _same_element_type(self, self.lhs, self.result)
        want = broadcast_shape(shape_of(self.lhs), shape_of(self.rhs))
        if want != shape_of(self.result):
            raise VerifyException(
                f"{self.name}: shapes {list(shape_of(self.lhs))} and {list(shape_of(self.rhs))} "
                f"do not broadcast to {list(shape_of(self.result))}"
            )


@irdl_op_definition
class AddOp(_BinaryOp):
    name = "nn.add"


@irdl_op_definition
class SubOp(_BinaryOp):
    name = "nn.sub"


@irdl_op_definition
class MulOp(_BinaryOp):
    name = "nn.mul"


@irdl_op_definition
class DivOp(_BinaryOp):
    name = "nn.div"


class _UnaryOp(IRDLOperation):
    input = operand_def(FloatTensor)
    result = result_def(FloatTensor)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, result_type: Attribute | None = None, properties: dict | None = None):
        super().__init__(operands=[input], result_types=[result_type or input.type], properties=properties or {})

    def verify_(self) -> None:
        if self.input.type != self.result.type:
            raise VerifyException(f"{self.name}: result type must equal the operand type {self.input.type}")


@irdl_op_definition
class ReluOp(_UnaryOp):
    """`max(x, 0)` element-wise (ONNX Relu)."""

    name = "nn.relu"


@irdl_op_definition
class ClipOp(_UnaryOp):
    """`min(max(x, min), max)`; ReLU6 is `clip {min = 0, max = 6}`."""

    name = "nn.clip"
    min = prop_def(FloatAttr)
    max = prop_def(FloatAttr)

    def __init__(self, input: SSAValue, min: float, max: float):
        super().__init__(input, properties={"min": FloatAttr(min, f32), "max": FloatAttr(max, f32)})

    def verify_(self) -> None:
        super().verify_()
        if not self.min.value.data <= self.max.value.data:
            raise VerifyException(f"nn.clip: min {self.min.value.data} is above max {self.max.value.data}")


@irdl_op_definition
class SoftmaxOp(_UnaryOp):
    """`exp(x) / sum(exp(x))` along `axis` (ONNX Softmax, opset 13 semantics)."""

    name = "nn.softmax"
    axis = prop_def(IntegerAttr[IntegerType])

    def __init__(self, input: SSAValue, axis: int = -1):
        super().__init__(input, properties={"axis": IntegerAttr(axis, i64)})

    def verify_(self) -> None:
        super().verify_()
        rank = len(shape_of(self.input))
        if not -rank <= self.axis.value.data < rank:
            raise VerifyException(f"nn.softmax: axis {self.axis.value.data} is out of range for rank {rank}")


@irdl_op_definition
class BatchNormOp(IRDLOperation):
    """Inference batch-norm: `scale * (x - mean) / sqrt(var + epsilon) + bias` per channel (axis 1)."""

    name = "nn.batch_norm"
    input = operand_def(FloatTensor)
    scale = operand_def(FloatTensor)
    bias = operand_def(FloatTensor)
    mean = operand_def(FloatTensor)
    var = operand_def(FloatTensor)
    result = result_def(FloatTensor)
    epsilon = prop_def(FloatAttr)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input `,` $scale `,` $bias `,` $mean `,` $var attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, scale: SSAValue, bias: SSAValue, mean: SSAValue, var: SSAValue,
                 epsilon: float = 1e-5):
        super().__init__(operands=[input, scale, bias, mean, var], result_types=[input.type],
                         properties={"epsilon": FloatAttr(epsilon, f32)})

    def verify_(self) -> None:
        xs = shape_of(self.input)
        if len(xs) < 2 or shape_of(self.result) != xs:
            raise VerifyException("nn.batch_norm: expects an input of rank >= 2 and the same result shape")
        for v, what in ((self.scale, "scale"), (self.bias, "bias"), (self.mean, "mean"), (self.var, "var")):
            if shape_of(v) != (xs[1],):
                raise VerifyException(f"nn.batch_norm: {what} must have shape [{xs[1]}], got {list(shape_of(v))}")


# -- pooling -------------------------------------------------------------------------
@irdl_op_definition
class GlobalAvgPoolOp(IRDLOperation):
    """The mean over every spatial dimension: [N, C, H, W] -> [N, C, 1, 1]."""

    name = "nn.global_avg_pool"
    input = operand_def(FloatTensor)
    result = result_def(FloatTensor)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, result_type: Attribute):
        super().__init__(operands=[input], result_types=[result_type])

    def verify_(self) -> None:
        xs, ys = shape_of(self.input), shape_of(self.result)
        if len(xs) < 3 or ys != xs[:2] + (1,) * (len(xs) - 2):
            raise VerifyException(f"nn.global_avg_pool: {list(xs)} -> {list(ys)}: result must be N x C x 1 x 1")


class _PoolOp(IRDLOperation):
    input = operand_def(TensorType)
    result = result_def(TensorType)
    kernel = prop_def(DenseArrayBase)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, result_type: Attribute, kernel: Sequence[int], strides: Sequence[int],
                 pads: Sequence[int], **extra: Attribute):
        super().__init__(operands=[input], result_types=[result_type], properties={
            "kernel": int_array(kernel), "strides": int_array(strides), "pads": int_array(pads), **extra})

    def verify_(self) -> None:
        k, s, p = ints(self.kernel), ints(self.strides), ints(self.pads)
        _check_len(self, "kernel", k, 2, True)
        _check_len(self, "strides", s, 2, True)
        _check_len(self, "pads", p, 4, False)
        _same_element_type(self, self.input, self.result)
        xs, ys = shape_of(self.input), shape_of(self.result)
        if len(xs) != 4:
            raise VerifyException(f"{self.name}: expects a 4-D NCHW input, got {list(xs)}")
        if xs[2] + p[0] + p[2] < k[0] or xs[3] + p[1] + p[3] < k[1]:
            raise VerifyException(f"{self.name}: kernel {list(k)} is larger than the padded input {list(xs[2:])}")
        oh = pooled_size(xs[2], k[0], s[0], p[0], p[2])
        ow = pooled_size(xs[3], k[1], s[1], p[1], p[3])
        if ys != (xs[0], xs[1], oh, ow):
            raise VerifyException(f"{self.name}: result shape must be {[xs[0], xs[1], oh, ow]}, got {list(ys)}")


@irdl_op_definition
class AvgPoolOp(_PoolOp):
    """Average pool; padding counted in the divisor only with `count_include_pad`."""

    name = "nn.avg_pool"
    input = operand_def(FloatTensor)
    result = result_def(FloatTensor)
    count_include_pad = prop_def(BoolAttr)

    def __init__(self, input: SSAValue, result_type: Attribute, kernel: Sequence[int], strides: Sequence[int],
                 pads: Sequence[int], count_include_pad: bool = False):
        super().__init__(input, result_type, kernel, strides, pads,
                         count_include_pad=BoolAttr.from_bool(count_include_pad))


@irdl_op_definition
class MaxPoolOp(_PoolOp):
    """Max pool over `kernel` windows; padding never wins. Any element type (the max of
    quantized integers is the max of their real values)."""

    name = "nn.max_pool"


# -- data movement (any element type) ------------------------------------------------
@irdl_op_definition
class FlattenOp(IRDLOperation):
    """ONNX Flatten: dims before `axis` -> one, the rest -> the other."""

    name = "nn.flatten"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    axis = prop_def(IntegerAttr[IntegerType])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, result_type: Attribute, axis: int = 1):
        super().__init__(operands=[input], result_types=[result_type], properties={"axis": IntegerAttr(axis, i64)})

    def verify_(self) -> None:
        _same_element_type(self, self.input, self.result)
        xs, axis = shape_of(self.input), self.axis.value.data
        if not -len(xs) <= axis <= len(xs):
            raise VerifyException(f"nn.flatten: axis {axis} is out of range for rank {len(xs)}")
        if axis < 0:
            axis += len(xs)
        lead, rest = math.prod(xs[:axis]), math.prod(xs[axis:])
        if shape_of(self.result) != (lead, rest):
            raise VerifyException(f"nn.flatten: result shape must be {[lead, rest]}, got {list(shape_of(self.result))}")


@irdl_op_definition
class ReshapeOp(IRDLOperation):
    """Reshape to the static result type (same number of elements)."""

    name = "nn.reshape"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, result_type: Attribute):
        super().__init__(operands=[input], result_types=[result_type])

    def verify_(self) -> None:
        _same_element_type(self, self.input, self.result)
        a, b = self.input.type.element_count(), self.result.type.element_count()  # type: ignore[attr-defined]
        if a != b:
            raise VerifyException(f"nn.reshape: {a} elements cannot be reshaped into {b}")


@irdl_op_definition
class TransposeOp(IRDLOperation):
    """Permute the dimensions: result dimension i is input dimension `perm[i]`. Any element type."""

    name = "nn.transpose"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    perm = prop_def(DenseArrayBase)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, result_type: Attribute, perm: Sequence[int]):
        super().__init__(operands=[input], result_types=[result_type], properties={"perm": int_array(perm)})

    def verify_(self) -> None:
        xs, perm = shape_of(self.input), ints(self.perm)
        if sorted(perm) != list(range(len(xs))):
            raise VerifyException(f"nn.transpose: perm {list(perm)} is not a permutation of rank {len(xs)}")
        a, b = self.input.type.element_type, self.result.type.element_type  # type: ignore[attr-defined]
        want = _transposed_element_type(a, perm)
        if b != want:
            raise VerifyException(f"nn.transpose: result element type must be {want}, got {b}")
        if shape_of(self.result) != tuple(xs[p] for p in perm):
            raise VerifyException(f"nn.transpose: result shape must be {[xs[p] for p in perm]}")


@irdl_op_definition
class ConcatOp(IRDLOperation):
    """Concatenate the inputs along `axis`; all of one element type. Any element type."""

    name = "nn.concat"
    inputs = var_operand_def(TensorType)
    result = result_def(TensorType)
    axis = prop_def(IntegerAttr[IntegerType])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$inputs attr-dict `:` functional-type(operands, results)"

    def __init__(self, inputs: Sequence[SSAValue], result_type: Attribute, axis: int):
        super().__init__(operands=[inputs], result_types=[result_type], properties={"axis": IntegerAttr(axis, i64)})

    def verify_(self) -> None:
        if not self.inputs:
            raise VerifyException("nn.concat: needs at least one operand")
        ys = shape_of(self.result)
        axis = self.axis.value.data
        if not -len(ys) <= axis < len(ys):
            raise VerifyException(f"nn.concat: axis {axis} is out of range for rank {len(ys)}")
        axis %= len(ys)
        total = 0
        for v in self.inputs:
            _same_element_type(self, v, self.result)
            s = shape_of(v)
            if len(s) != len(ys) or any(s[i] != ys[i] for i in range(len(ys)) if i != axis):
                raise VerifyException(f"nn.concat: operand shape {list(s)} does not fit result {list(ys)}")
            total += s[axis]
        if total != ys[axis]:
            raise VerifyException(f"nn.concat: operands add up to {total} along axis {axis}, result has {ys[axis]}")


@irdl_op_definition
class PadOp(IRDLOperation):
    """Constant padding; `pads` = [begin_0, ..., begin_n, end_0, ..., end_n] as ONNX Pad."""

    name = "nn.pad"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    pads = prop_def(DenseArrayBase)
    value = prop_def(FloatAttr)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, result_type: Attribute, pads: Sequence[int], value: float = 0.0):
        super().__init__(operands=[input], result_types=[result_type],
                         properties={"pads": int_array(pads), "value": FloatAttr(value, f32)})

    def verify_(self) -> None:
        _same_element_type(self, self.input, self.result)
        xs, p = shape_of(self.input), ints(self.pads)
        _check_len(self, "pads", p, 2 * len(xs), False)
        want = tuple(d + p[i] + p[i + len(xs)] for i, d in enumerate(xs))
        if shape_of(self.result) != want:
            raise VerifyException(f"nn.pad: result shape must be {list(want)}, got {list(shape_of(self.result))}")


NN = Dialect(
    "nn",
    [
        Conv2dOp, GemmOp, MatMulOp, AddOp, SubOp, MulOp, DivOp, ReluOp, ClipOp, SoftmaxOp, BatchNormOp,
        GlobalAvgPoolOp, AvgPoolOp, MaxPoolOp, FlattenOp, ReshapeOp, TransposeOp, ConcatOp, PadOp,
    ],
    [],
)
