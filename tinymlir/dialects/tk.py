"""The `tk` dialect: one op per tinymlir training kernel (level 5, beside `cmsisnn`).

`cmsisnn` covers the int8 forward pass; the backward pass and the optimizer run on the
project's own C kernels, `tinymlir/runtime/tk/` (declared and specified in `tk.h`). Each
op here is one call of one of them, with every number the kernel needs as a property:

    %m  = tk.output_mask %y activation(-128, 127) : (tensor<1x8x8x40xi8>) -> tensor<1x8x8x40xi1>
    %dx = tk.conv_input_grad %dy, %w stride [1, 1] padding [0, 0] dilation [1, 1]
            w_scale [0.0081, ...] : (tensor<1x8x8x160xf32>, tensor<160x1x1x40xi8>) -> tensor<1x8x8x40xf32>
    tk.conv_weight_grad_sgd @layer21.weight, %dy, %x, %lr stride [1, 1] padding [0, 0]
            dilation [1, 1] x_offset -3 x_scale 0.037 factor [...] rounding "nearest"
            : tensor<1x8x8x160xf32>, tensor<1x8x8x40xi8>

Conventions (those of the C kernels):
- Activations and gradients are NHWC; gradients `f32`, saved activations `i8` (their
  storage integers; a quantized tensor type is accepted too and read as its storage).
- Weights are OHWI `[C_OUT, KH, KW, C_IN]`, depthwise `[1, KH, KW, C]`; a fully connected
  weight `[C_OUT, K]` is the 1x1 case of OHWI.
- Gradients are float32, each product and sum rounded in the order `tk.h` states, so
  the interpreter (`tinymlir/interpreter/tk_math.py`) and C agree bit for bit.
- `*_sgd` ops update a `train.param` in place: `t = lr * (g * factor[c])`, then
  `q -= round(t)` saturating (int8 to [-127, 127], int32 to +-(2^31 - 1)); `rounding`
  is "nearest" (half to even) or "stochastic" (with the uint32 counter param `rng`).
  `channels` (increasing) limits the update to those output channels (sparse update).
  With `momentum` + `velocity` (momentum SGD) or `beta1`, `beta2`, `eps`, `m`, `v`,
  `step` (Adam), in the attribute dictionary, t comes from the optimizer instead, its
  float32 state params holding one element per updated element (`state_shape()`: the
  selected channels only), and the op calls the kernel's `*_opt` variant; the exact
  float32 arithmetic is tk.h's "Optimizers":

    tk.bias_grad_sgd @layer3.bias, %dy, %lr rounding "nearest" {beta1 = 9.000000e-01 : f32,
        beta2 = 9.990000e-01 : f32, eps = 9.99999993e-09 : f32, m = @layer3.bias.m,
        v = @layer3.bias.v, step = @adam.step} : tensor<1x4x4x16xf32>
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import (
    I32,
    I64,
    ArrayAttr,
    DenseArrayBase,
    FloatAttr,
    Float32Type,
    IntegerAttr,
    IntegerType,
    StringAttr,
    SymbolRefAttr,
    TensorType,
    f32,
    i64,
)
from xdsl.ir import Attribute, Dialect, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from tinymlir.dialects.cmsisnn import activation_props, i32_attr, ints, pair
from tinymlir.dialects.quant import UniformQuantizedType
from tinymlir.dialects.train import lookup_param

ROUNDINGS = ("nearest", "stochastic")
_TAIL = "attr-dict `:` functional-type(operands, results)"
_GEOMETRY = "`stride` $stride `padding` $padding `dilation` $dilation"


# -- property builders and helpers ------------------------------------------------------
def f32_array(values: Sequence[float]) -> ArrayAttr:
    """Float32 values as `[v : f32, ...]` (xDSL 0.74 prints large values of an
    `array<f32: ...>` in hex, which it cannot parse back; this form round-trips)."""
    return ArrayAttr([FloatAttr(float(np.float32(v)), f32) for v in values])


def floats(attr: ArrayAttr) -> np.ndarray:
    return np.asarray([a.value.data for a in attr.data], dtype=np.float32)


def _shape(op: IRDLOperation, value: SSAValue, what: str) -> tuple[int, ...]:
    t = value.type
    if not isinstance(t, TensorType):
        raise VerifyException(f"{op.name}: {what} must be a tensor, got {t}")
    return tuple(t.get_shape())


def _f32(op: IRDLOperation, value: SSAValue, what: str, rank: int | None = None) -> tuple[int, ...]:
    shape = _shape(op, value, what)
    if not isinstance(value.type.element_type, Float32Type):  # type: ignore[attr-defined]
        raise VerifyException(f"{op.name}: {what} must be a tensor of f32, got {value.type}")
    if rank is not None and len(shape) != rank:
        raise VerifyException(f"{op.name}: {what} must have rank {rank}, got shape {list(shape)}")
    return shape


def storage_width(t: Attribute) -> int | None:
    """The integer width of a tensor's elements (a quantized type's storage width)."""
    et = t.element_type if isinstance(t, TensorType) else None
    if isinstance(et, UniformQuantizedType):
        et = et.storage
    return et.width.data if isinstance(et, IntegerType) else None


def _ints(op: IRDLOperation, value: SSAValue, width: int, what: str, rank: int | None = None) -> tuple[int, ...]:
    shape = _shape(op, value, what)
    if storage_width(value.type) != width:
        raise VerifyException(f"{op.name}: {what} must be a tensor of i{width} (or quantized i{width}), "
                              f"got {value.type}")
    if rank is not None and len(shape) != rank:
        raise VerifyException(f"{op.name}: {what} must have rank {rank}, got shape {list(shape)}")
    return shape


def _count(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def as_ohwi(shape: Sequence[int]) -> tuple[int, int, int, int]:
    """A weight shape as OHWI: `[C_OUT, K]` (fully connected) is `[C_OUT, 1, 1, K]`."""
    return (shape[0], 1, 1, shape[1]) if len(shape) == 2 else tuple(shape)  # type: ignore[return-value]


def as_nhwc(shape: Sequence[int]) -> tuple[int, int, int, int]:
    """An activation shape as NHWC: `[N, K]` is `[N, 1, 1, K]`."""
    return (shape[0], 1, 1, shape[1]) if len(shape) == 2 else tuple(shape)  # type: ignore[return-value]


def _rank_2_or_4(op: IRDLOperation, shape: Sequence[int], what: str) -> None:
    if len(shape) not in (2, 4):
        raise VerifyException(f"{op.name}: {what} must be NHWC (rank 4) or [N, K] (rank 2), got {list(shape)}")


class _Geometry:
    """stride / padding (top, left) / dilation, all `[h, w]`."""

    def geometry(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        s, p, d = ints(self.stride), ints(self.padding), ints(self.dilation)  # type: ignore[attr-defined]
        return (s[0], s[1]), (p[0], p[1]), (d[0], d[1])

    def check_geometry(self, x: Sequence[int], y: Sequence[int], kh: int, kw: int) -> None:
        name = self.name  # type: ignore[attr-defined]
        for attr, minimum in (("stride", 1), ("padding", 0), ("dilation", 1)):
            values = ints(getattr(self, attr))
            if len(values) != 2 or any(v < minimum for v in values):
                raise VerifyException(f"{name}: {attr} must be two integers >= {minimum}, got {list(values)}")
        (sh, sw), (ph, pw), (dh, dw) = self.geometry()
        if x[0] != y[0]:
            raise VerifyException(f"{name}: batch {x[0]} of the input differs from batch {y[0]} of the gradient")
        for dim, size, k, s, p, d, out in (("height", x[1], kh, sh, ph, dh, y[1]), ("width", x[2], kw, sw, pw, dw, y[2])):
            if out < 1 or (out - 1) * s - p > size - 1 or p >= d * (k - 1) + 1:
                raise VerifyException(f"{name}: output {dim} {out} does not fit input {dim} {size} with kernel {k}, "
                                      f"stride {s}, padding {p} and dilation {d}")


def _geometry_props(stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int]) -> dict[str, Attribute]:
    return {"stride": pair(stride), "padding": pair(padding), "dilation": pair(dilation)}


def _check_scales(op: IRDLOperation, attr: ArrayAttr, count: int, what: str) -> None:
    values = floats(attr)
    if len(values) != count:
        raise VerifyException(f"{op.name}: {what} needs {count} values (one per channel), got {len(values)}")
    if not np.all(np.isfinite(values)):
        raise VerifyException(f"{op.name}: {what} must be finite")


# -- elementwise --------------------------------------------------------------------------
@irdl_op_definition
class OutputMaskOp(IRDLOperation):
    """`tk_output_mask_s8`: bit i = `act_min < y[i] < act_max`, the gradient mask of a
    saturating int8 op read from its output (PyTorch's ReLU / ReLU6 / hardtanh
    convention: an output on a bound passes no gradient). 1 bit per element in C."""

    name = "tk.output_mask"
    irdl_options = (ParsePropInAttrDict(),)
    input = operand_def(TensorType)
    result = result_def(TensorType)
    act_min = prop_def(IntegerAttr[I32])
    act_max = prop_def(IntegerAttr[I32])
    traits = traits_def(Pure())
    assembly_format = "$input `activation` `(` $act_min `,` $act_max `)` " + _TAIL

    def __init__(self, input: SSAValue, act: tuple[int, int]):
        shape = input.type.get_shape()  # type: ignore[attr-defined]
        super().__init__(operands=[input], result_types=[TensorType(IntegerType(1), shape)],
                         properties=activation_props(act))

    def verify_(self) -> None:
        xs = _ints(self, self.input, 8, "input")
        if _ints(self, self.result, 1, "result") != xs:
            raise VerifyException(f"{self.name}: the mask must have the input's shape {list(xs)}")
        lo, hi = self.act_min.value.data, self.act_max.value.data
        if not -128 <= lo <= hi <= 127:
            raise VerifyException(f"{self.name}: activation range [{lo}, {hi}] must lie inside [-128, 127]")


@irdl_op_definition
class MaskGradOp(IRDLOperation):
    """`tk_mask_grad_f32`: `out = mask ? grad : 0`; may run in place on `grad`."""

    name = "tk.mask_grad"
    irdl_options = (ParsePropInAttrDict(),)
    grad = operand_def(TensorType)
    mask = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$grad `,` $mask " + _TAIL

    def __init__(self, grad: SSAValue, mask: SSAValue):
        super().__init__(operands=[grad, mask], result_types=[grad.type])

    def verify_(self) -> None:
        gs = _f32(self, self.grad, "gradient")
        if _ints(self, self.mask, 1, "mask") != gs or self.result.type != self.grad.type:
            raise VerifyException(f"{self.name}: mask and result must have the gradient's shape {list(gs)}")

    def in_place_operand(self) -> int | None:
        return 0


@irdl_op_definition
class AddOp(IRDLOperation):
    """`tk_add_f32`: the sum of two gradients (a residual branch's); may run in place."""

    name = "tk.add"
    irdl_options = (ParsePropInAttrDict(),)
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$lhs `,` $rhs " + _TAIL

    def __init__(self, lhs: SSAValue, rhs: SSAValue):
        super().__init__(operands=[lhs, rhs], result_types=[lhs.type])

    def verify_(self) -> None:
        shape = _f32(self, self.lhs, "lhs")
        if self.rhs.type != self.lhs.type or self.result.type != self.lhs.type:
            raise VerifyException(f"{self.name}: operands and result must all be {self.lhs.type}")
        del shape

    def in_place_operand(self) -> int | None:
        return 0


# -- loss -----------------------------------------------------------------------------------
@irdl_op_definition
class SoftmaxXentOp(IRDLOperation):
    """`tk_softmax_xent_f32`: softmax cross-entropy of one row of logits [1, K] with an
    i32 label; returns the loss and d loss / d logits (computed in double, see tk.h)."""

    name = "tk.softmax_xent"
    irdl_options = (ParsePropInAttrDict(),)
    logits = operand_def(TensorType)
    label = operand_def(IntegerType)
    loss = result_def(Float32Type)
    grad = result_def(TensorType)
    assembly_format = "$logits `,` $label " + _TAIL

    def __init__(self, logits: SSAValue, label: SSAValue):
        super().__init__(operands=[logits, label], result_types=[f32, logits.type])

    def verify_(self) -> None:
        shape = _f32(self, self.logits, "logits", 2)
        if shape[0] != 1:
            raise VerifyException(f"{self.name}: the C kernel takes one row of logits (batch 1), got {list(shape)}")
        if self.grad.type != self.logits.type:
            raise VerifyException(f"{self.name}: the gradient must have the logits' type {self.logits.type}")


# -- gradients ------------------------------------------------------------------------------
@irdl_op_definition
class GlobalAvgPoolGradOp(IRDLOperation):
    """`tk_global_avgpool_grad_f32`: `dx[n, h, w, c] = dy[n, c] / (H W)`; dy is [N, 1, 1, C]
    or [N, C]."""

    name = "tk.global_avgpool_grad"
    irdl_options = (ParsePropInAttrDict(),)
    dy = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$dy " + _TAIL

    def __init__(self, dy: SSAValue, result_type: Attribute):
        super().__init__(operands=[dy], result_types=[result_type])

    def verify_(self) -> None:
        ys = _f32(self, self.dy, "dy")
        _rank_2_or_4(self, ys, "dy")
        n, h, w, c = as_nhwc(ys)
        xs = _f32(self, self.result, "result", 4)
        if h != 1 or w != 1 or (xs[0], xs[3]) != (n, c):
            raise VerifyException(f"{self.name}: dy {list(ys)} is not the pooled shape of {list(xs)}")


class _ConvGradOp(IRDLOperation, _Geometry):
    """Shared by the input gradient ops: dy, the int8 weight and its per-channel scales."""

    stride = prop_def(DenseArrayBase[I64])
    padding = prop_def(DenseArrayBase[I64])
    dilation = prop_def(DenseArrayBase[I64])
    dy = operand_def(TensorType)
    weight = operand_def(TensorType)
    result = result_def(TensorType)
    w_scale = prop_def(ArrayAttr)
    traits = traits_def(Pure())
    assembly_format = "$dy `,` $weight " + _GEOMETRY + " " + _TAIL

    def __init__(self, dy: SSAValue, weight: SSAValue, result_type: Attribute, *, stride: Sequence[int],
                 padding: Sequence[int], dilation: Sequence[int], w_scale: Sequence[float]):
        super().__init__(operands=[dy, weight], result_types=[result_type],
                         properties=_geometry_props(stride, padding, dilation) | {"w_scale": f32_array(w_scale)})


@irdl_op_definition
class ConvInputGradOp(_ConvGradOp):
    """`tk_conv_input_grad_f32` (groups = 1): `dx = conv_transpose(dy * w_scale, w)`, the
    input gradient of a convolution (or, all sizes 1, a fully connected layer) with the
    int8 weight `w` (zero point 0) of per-output-channel scales `w_scale`."""

    name = "tk.conv_input_grad"
    irdl_options = (ParsePropInAttrDict(),)

    def verify_(self) -> None:
        ys, xs = _f32(self, self.dy, "dy"), _f32(self, self.result, "result")
        ws = _ints(self, self.weight, 8, "weight")
        for shape, what in ((ys, "dy"), (xs, "result")):
            _rank_2_or_4(self, shape, what)
        if len(ws) not in (2, 4) or len(ws) != len(xs) or len(ys) != len(xs):
            raise VerifyException(f"{self.name}: weight {list(ws)}, dy {list(ys)} and result {list(xs)} must all "
                                  "be rank 4 (NHWC, OHWI) or all rank 2 (fully connected)")
        co, kh, kw, ci = as_ohwi(ws)
        y, x = as_nhwc(ys), as_nhwc(xs)
        if y[3] != co or x[3] != ci:
            raise VerifyException(f"{self.name}: weight [C_OUT, KH, KW, C_IN] = {list(ws)} does not match dy "
                                  f"{list(ys)} and result {list(xs)}")
        self.check_geometry(x, y, kh, kw)
        _check_scales(self, self.w_scale, co, "w_scale")


@irdl_op_definition
class DepthwiseConvInputGradOp(_ConvGradOp):
    """`tk_depthwise_conv_input_grad_f32`: the input gradient of a depthwise convolution
    (channel multiplier 1) with the int8 weight [1, KH, KW, C] of per-channel scales."""

    name = "tk.depthwise_conv_input_grad"
    irdl_options = (ParsePropInAttrDict(),)

    def verify_(self) -> None:
        ys, xs = _f32(self, self.dy, "dy", 4), _f32(self, self.result, "result", 4)
        ws = _ints(self, self.weight, 8, "weight", 4)
        if ws[0] != 1 or ys[3] != ws[3] or xs[3] != ws[3]:
            raise VerifyException(f"{self.name}: weight [1, KH, KW, C] = {list(ws)} does not match dy {list(ys)} "
                                  f"and result {list(xs)} (channel multiplier 1)")
        self.check_geometry(xs, ys, ws[1], ws[2])
        _check_scales(self, self.w_scale, ws[3], "w_scale")


OPTIMIZER_PROPS = ("momentum", "velocity", "beta1", "beta2", "eps", "m", "v", "step")
"""The optimizer properties of the fused update ops (momentum SGD: momentum, velocity;
Adam: beta1, beta2, eps, m, v, step)."""


class _SGDOp(IRDLOperation):
    """Shared by the fused gradient + update ops: the param, its channel factors, rounding,
    and the optional optimizer: `momentum` + `velocity` (momentum SGD) or `beta1`,
    `beta2`, `eps`, `m`, `v`, `step` (Adam), whose state params are float32 arrays of one
    element per updated element (`state_shape`), in the update-index order of tk.h (the
    op then calls the kernel's `*_opt` variant)."""

    param = prop_def(SymbolRefAttr)
    factor = prop_def(ArrayAttr)
    channels = opt_prop_def(DenseArrayBase[I64])
    rounding = prop_def(StringAttr)
    rng = opt_prop_def(SymbolRefAttr)
    momentum = opt_prop_def(FloatAttr)
    velocity = opt_prop_def(SymbolRefAttr)
    beta1 = opt_prop_def(FloatAttr)
    beta2 = opt_prop_def(FloatAttr)
    eps = opt_prop_def(FloatAttr)
    m = opt_prop_def(SymbolRefAttr)
    v = opt_prop_def(SymbolRefAttr)
    step = opt_prop_def(SymbolRefAttr)

    @property
    def rounding_mode(self) -> str:
        return self.rounding.data

    @property
    def channel_list(self) -> tuple[int, ...] | None:
        return None if self.channels is None else ints(self.channels)

    @property
    def optimizer(self) -> str:
        """"sgd", "sgdm" or "adam"."""
        if self.momentum is not None:
            return "sgdm"
        return "adam" if self.m is not None else "sgd"

    def state_refs(self) -> dict[str, SymbolRefAttr]:
        """The optimizer state params, by role (velocity; m, v)."""
        return {k: r for k in ("velocity", "m", "v") if (r := getattr(self, k)) is not None}

    def param_shape(self) -> tuple[int, ...] | None:
        p = lookup_param(self, self.param)
        return None if p is None else tuple(p.type.get_shape())

    def state_shape(self) -> tuple[int, ...] | None:
        """The shape of each optimizer state param: the updated elements, in update-index order."""
        raise NotImplementedError

    def verify_update(self, channels: int, width: int) -> None:
        if self.rounding_mode not in ROUNDINGS:
            raise VerifyException(f"{self.name}: rounding must be one of {', '.join(ROUNDINGS)}, "
                                  f"got '{self.rounding_mode}'")
        if (self.rounding_mode == "stochastic") != (self.rng is not None):
            raise VerifyException(f"{self.name}: stochastic rounding and its 'rng' state go together")
        ch = self.channel_list
        if ch is not None and (not ch or list(ch) != sorted(set(ch)) or ch[0] < 0 or ch[-1] >= channels):
            raise VerifyException(f"{self.name}: channels {list(ch)} must be increasing indices below {channels}")
        _check_scales(self, self.factor, channels, "factor")
        p = lookup_param(self, self.param)
        if p is not None and storage_width(p.type) != width:
            raise VerifyException(f"{self.name}: {self.param} must hold i{width} integers, got {p.type}")
        self.verify_optimizer()

    def verify_optimizer(self) -> None:
        if (self.momentum is None) != (self.velocity is None):
            raise VerifyException(f"{self.name}: 'momentum' and 'velocity' go together")
        adam = [self.beta1, self.beta2, self.eps, self.m, self.v, self.step]
        if any(a is not None for a in adam) and any(a is None for a in adam):
            raise VerifyException(f"{self.name}: Adam's 'beta1', 'beta2', 'eps', 'm', 'v' and 'step' go together")
        if self.momentum is not None and self.m is not None:
            raise VerifyException(f"{self.name}: momentum and Adam exclude each other")
        for name in ("momentum", "beta1", "beta2"):
            attr = getattr(self, name)
            if attr is not None and not 0.0 <= np.float32(attr.value.data) < 1.0:
                raise VerifyException(f"{self.name}: {name} must lie in [0, 1) (in float32), got {attr.value.data}")
        if self.eps is not None:
            e = np.float32(self.eps.value.data)
            if not (np.isfinite(e) and e > 0):
                raise VerifyException(f"{self.name}: eps must be positive and finite (in float32), "
                                      f"got {self.eps.value.data}")
        want = self.state_shape()
        for role, ref in self.state_refs().items():
            s = lookup_param(self, ref)
            if s is None or want is None:
                continue
            if not (isinstance(s.type.element_type, Float32Type) and tuple(s.type.get_shape()) == want):
                raise VerifyException(f"{self.name}: {role} {ref} must be a tensor of f32 of shape {list(want)} "
                                      f"(one element per updated element), got {s.type}")
            if s.is_trainable:
                raise VerifyException(f"{self.name}: {role} {ref} is optimizer state and must not be trainable")
        if self.step is not None:
            s = lookup_param(self, self.step)
            if s is not None and not (isinstance(s.type.element_type, IntegerType)
                                      and s.type.element_type.width.data == 32 and _count(s.type.get_shape()) == 1):
                raise VerifyException(f"{self.name}: step counter {self.step} must be a one-element i32 param, "
                                      f"got {s.type}")


def _sgd_props(param: str, factor: Sequence[float], channels: Sequence[int] | None, rounding: str,
               rng: str | None, optimizer: dict[str, Attribute] | None = None) -> dict[str, Attribute]:
    props: dict[str, Attribute] = {"param": SymbolRefAttr(param), "factor": f32_array(factor),
                                   "rounding": StringAttr(rounding)}
    if channels is not None:
        props["channels"] = DenseArrayBase.from_list(i64, list(channels))
    if rng is not None:
        props["rng"] = SymbolRefAttr(rng)
    for k, v in (optimizer or {}).items():
        if k not in OPTIMIZER_PROPS:
            raise ValueError(f"unknown optimizer property {k!r}")
        props[k] = v
    return props


def optimizer_props(*, momentum: float | None = None, velocity: str | None = None, beta1: float | None = None,
                    beta2: float | None = None, eps: float | None = None, m: str | None = None,
                    v: str | None = None, step: str | None = None) -> dict[str, Attribute]:
    """The `optimizer=` of the fused update ops' constructors (floats rounded to float32)."""
    out: dict[str, Attribute] = {}
    for k, x in (("momentum", momentum), ("beta1", beta1), ("beta2", beta2), ("eps", eps)):
        if x is not None:
            out[k] = FloatAttr(float(np.float32(x)), f32)
    for k, r in (("velocity", velocity), ("m", m), ("v", v), ("step", step)):
        if r is not None:
            out[k] = SymbolRefAttr(r)
    return out


_SGD_FORMAT = ("(`channels` $channels^)? `rounding` $rounding (`rng` $rng^)? "
               "attr-dict `:` type($dy) `,` type($input)")


class _WeightGradSGDOp(_SGDOp, _Geometry):
    """Shared by the fused weight gradient + SGD ops: dy, the saved int8 input and its
    quantization, the learning rate, the geometry."""

    dy = operand_def(TensorType)
    input = operand_def(TensorType)
    lr = operand_def(Float32Type)
    stride = prop_def(DenseArrayBase[I64])
    padding = prop_def(DenseArrayBase[I64])
    dilation = prop_def(DenseArrayBase[I64])
    x_offset = prop_def(IntegerAttr[I32])
    x_scale = prop_def(ArrayAttr)
    assembly_format = ("$param `,` $dy `,` $input `,` $lr " + _GEOMETRY + " `x_offset` $x_offset "
                       + _SGD_FORMAT)

    def __init__(self, param: str, dy: SSAValue, input: SSAValue, lr: SSAValue, *, stride: Sequence[int],
                 padding: Sequence[int], dilation: Sequence[int], x_offset: int, x_scale: float,
                 factor: Sequence[float], channels: Sequence[int] | None = None, rounding: str = "nearest",
                 rng: str | None = None, optimizer: dict[str, Attribute] | None = None):
        super().__init__(operands=[dy, input, lr], properties=_geometry_props(stride, padding, dilation)
                         | {"x_offset": i32_attr(x_offset), "x_scale": f32_array([x_scale])}
                         | _sgd_props(param, factor, channels, rounding, rng, optimizer))


@irdl_op_definition
class ConvWeightGradSGDOp(_WeightGradSGDOp):
    """`tk_conv_weight_grad_sgd_s8`: the weight gradient of a convolution (groups = 1; or
    a fully connected layer) from dy and its saved int8 input (`x_offset = -z_x`,
    `x_scale`), applied at once, channel by channel, to the OHWI int8 `param`. With an
    optimizer, `tk_conv_weight_grad_opt_s8`; its state is [n_sel, KH, KW, C_IN] (or
    [n_sel, K]): the selected output channels' rows."""

    name = "tk.conv_weight_grad_sgd"
    irdl_options = (ParsePropInAttrDict(),)

    def verify_(self) -> None:
        ys, xs = _f32(self, self.dy, "dy"), _ints(self, self.input, 8, "input")
        _rank_2_or_4(self, ys, "dy")
        if len(xs) != len(ys):
            raise VerifyException(f"{self.name}: dy {list(ys)} and input {list(xs)} must have the same rank")
        _check_scales(self, self.x_scale, 1, "x_scale")
        ws = self.param_shape()
        if ws is None:
            return
        if len(ws) != len(xs):
            raise VerifyException(f"{self.name}: {self.param} {list(ws)} must be OHWI (or [C_OUT, K] for rank 2)")
        co, kh, kw, ci = as_ohwi(ws)
        y, x = as_nhwc(ys), as_nhwc(xs)
        if y[3] != co or x[3] != ci:
            raise VerifyException(f"{self.name}: {self.param} [C_OUT, KH, KW, C_IN] = {list(ws)} does not match "
                                  f"dy {list(ys)} and input {list(xs)}")
        self.check_geometry(x, y, kh, kw)
        self.verify_update(co, 8)

    def scratch_bytes(self) -> int:
        ws = self.param_shape()
        if ws is None:
            return 0
        _, kh, kw, ci = as_ohwi(ws)
        return 4 * kh * kw * ci

    def state_shape(self) -> tuple[int, ...] | None:
        ws = self.param_shape()
        if ws is None:
            return None
        ch = self.channel_list
        return (ws[0] if ch is None else len(ch),) + ws[1:]


@irdl_op_definition
class DepthwiseConvWeightGradSGDOp(_WeightGradSGDOp):
    """`tk_depthwise_conv_weight_grad_sgd_s8`: as tk.conv_weight_grad_sgd for a depthwise
    weight [1, KH, KW, C]; `channels` select along C. With an optimizer,
    `tk_depthwise_conv_weight_grad_opt_s8`; its state is [1, KH, KW, n_sel]."""

    name = "tk.depthwise_conv_weight_grad_sgd"
    irdl_options = (ParsePropInAttrDict(),)

    def verify_(self) -> None:
        ys, xs = _f32(self, self.dy, "dy", 4), _ints(self, self.input, 8, "input", 4)
        _check_scales(self, self.x_scale, 1, "x_scale")
        ws = self.param_shape()
        if ws is None:
            return
        if len(ws) != 4 or ws[0] != 1 or ys[3] != ws[3] or xs[3] != ws[3]:
            raise VerifyException(f"{self.name}: {self.param} [1, KH, KW, C] = {list(ws)} does not match dy "
                                  f"{list(ys)} and input {list(xs)}")
        self.check_geometry(xs, ys, ws[1], ws[2])
        self.verify_update(ws[3], 8)

    def scratch_bytes(self) -> int:
        ws = self.param_shape()
        return 0 if ws is None else 4 * ws[1] * ws[2]

    def state_shape(self) -> tuple[int, ...] | None:
        ws = self.param_shape()
        if ws is None or len(ws) != 4:
            return None
        ch = self.channel_list
        return ws[:3] + (ws[3] if ch is None else len(ch),)


@irdl_op_definition
class BiasGradSGDOp(_SGDOp):
    """`tk_bias_grad_sgd_s32`: the bias gradient (dy summed over N, H, W) applied at once
    to the int32 `param` [C]. With an optimizer, `tk_bias_grad_opt_s32`; its state is
    [n_sel]."""

    name = "tk.bias_grad_sgd"
    irdl_options = (ParsePropInAttrDict(),)
    dy = operand_def(TensorType)
    lr = operand_def(Float32Type)
    assembly_format = ("$param `,` $dy `,` $lr (`channels` $channels^)? `rounding` $rounding "
                       "(`rng` $rng^)? attr-dict `:` type($dy)")

    def __init__(self, param: str, dy: SSAValue, lr: SSAValue, *, factor: Sequence[float],
                 channels: Sequence[int] | None = None, rounding: str = "nearest", rng: str | None = None,
                 optimizer: dict[str, Attribute] | None = None):
        super().__init__(operands=[dy, lr], properties=_sgd_props(param, factor, channels, rounding, rng, optimizer))

    def verify_(self) -> None:
        ys = _f32(self, self.dy, "dy")
        _rank_2_or_4(self, ys, "dy")
        ws = self.param_shape()
        if ws is None:
            return
        if ws != (ys[-1],):
            raise VerifyException(f"{self.name}: dy {list(ys)} (channels last) sums to [{ys[-1]}], but "
                                  f"{self.param} has shape {list(ws)}")
        self.verify_update(ws[0], 32)

    def state_shape(self) -> tuple[int, ...] | None:
        ws = self.param_shape()
        if ws is None:
            return None
        ch = self.channel_list
        return (ws[0] if ch is None else len(ch),)


# -- channel data movement (splitting a sparsely updated layer) -------------------------
def _check_channel_list(op: IRDLOperation, channels: Sequence[int], count: int) -> None:
    if not channels or list(channels) != sorted(set(channels)) or channels[0] < 0 or channels[-1] >= count:
        raise VerifyException(f"{op.name}: channels {list(channels)} must be increasing indices below {count}")


@irdl_op_definition
class GatherChannelsOp(IRDLOperation):
    """`tk_gather_channels`: `out[..., j] = x[..., channels[j]]` (channels last; elements
    of 1, 2, 4 or 8 bytes)."""

    name = "tk.gather_channels"
    irdl_options = (ParsePropInAttrDict(),)
    input = operand_def(TensorType)
    result = result_def(TensorType)
    channels = prop_def(DenseArrayBase[I64])
    traits = traits_def(Pure())
    assembly_format = "$input `channels` $channels " + _TAIL

    def __init__(self, input: SSAValue, channels: Sequence[int]):
        t = input.type
        assert isinstance(t, TensorType)
        shape = list(t.get_shape())
        super().__init__(operands=[input], result_types=[TensorType(t.element_type, shape[:-1] + [len(channels)])],
                         properties={"channels": DenseArrayBase.from_list(i64, list(channels))})

    def verify_(self) -> None:
        xs, ys = _shape(self, self.input, "input"), _shape(self, self.result, "result")
        ch = ints(self.channels)
        _check_channel_list(self, ch, xs[-1])
        if ys != xs[:-1] + (len(ch),) or self.result.type.element_type != self.input.type.element_type:  # type: ignore[attr-defined]
            raise VerifyException(f"{self.name}: the result must be the input {list(xs)} with {len(ch)} channels")


@irdl_op_definition
class MergeChannelsOp(IRDLOperation):
    """`tk_merge_channels`: the inverse of two gathers: `out[..., channels[j]] = a[..., j]`,
    the other channels of `out` are `b`'s, in order (channels last)."""

    name = "tk.merge_channels"
    irdl_options = (ParsePropInAttrDict(),)
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)
    channels = prop_def(DenseArrayBase[I64])
    traits = traits_def(Pure())
    assembly_format = "$lhs `,` $rhs `channels` $channels " + _TAIL

    def __init__(self, lhs: SSAValue, rhs: SSAValue, channels: Sequence[int]):
        t = lhs.type
        assert isinstance(t, TensorType)
        shape = list(t.get_shape())
        total = shape[-1] + rhs.type.get_shape()[-1]  # type: ignore[attr-defined]
        super().__init__(operands=[lhs, rhs], result_types=[TensorType(t.element_type, shape[:-1] + [total])],
                         properties={"channels": DenseArrayBase.from_list(i64, list(channels))})

    def verify_(self) -> None:
        a, b = _shape(self, self.lhs, "lhs"), _shape(self, self.rhs, "rhs")
        ys = _shape(self, self.result, "result")
        ch = ints(self.channels)
        _check_channel_list(self, ch, ys[-1] if ys else 0)
        if a[:-1] != ys[:-1] or b[:-1] != ys[:-1] or a[-1] != len(ch) or a[-1] + b[-1] != ys[-1]:
            raise VerifyException(f"{self.name}: lhs {list(a)} ({len(ch)} channels) and rhs {list(b)} do not merge "
                                  f"into {list(ys)}")
        et = self.result.type.element_type  # type: ignore[attr-defined]
        if self.lhs.type.element_type != et or self.rhs.type.element_type != et:  # type: ignore[attr-defined]
            raise VerifyException(f"{self.name}: operands and result must have one element type")


#: The ops that update a param in place.
SGD_OPS = (ConvWeightGradSGDOp, DepthwiseConvWeightGradSGDOp, BiasGradSGDOp)

TK = Dialect(
    "tk",
    [
        OutputMaskOp, MaskGradOp, AddOp, SoftmaxXentOp, GlobalAvgPoolGradOp,
        ConvInputGradOp, DepthwiseConvInputGradOp, ConvWeightGradSGDOp, DepthwiseConvWeightGradSGDOp,
        BiasGradSGDOp, GatherChannelsOp, MergeChannelsOp,
    ],
    [],
)
