"""The `train` dialect: explicit training state, losses, gradients and optimizer updates (level 2).

Training state is IR. Every parameter is a module-level symbol holding its current value,

    train.param @layer0.weight trainable : tensor<8x3x3x3xf32> = dense<...> : tensor<8x3x3x3xf32>
    train.param @layer0.weight.momentum : tensor<8x3x3x3xf32> = dense<0.000000e+00> : tensor<8x3x3x3xf32>

read by `%w = train.load @layer0.weight : tensor<8x3x3x3xf32>` (a snapshot: value semantics)
and updated in place by the optimizer ops `train.sgd` / `train.adam`. Optimizer state
(momentum, Adam's m and v, the step counter) are params too, so a memory planner sees every
byte. A quantized parameter stores its integers, like `quant.constant`:
`train.param @w : tensor<8x3x3x3x!quant.uniform<i8:f32:0, {...}>> = dense<...> : tensor<8x3x3x3xi8>`.

Gradient ops compute the vector-Jacobian product of one forward-op family. Operands that
are *saved forward values* (a conv's input or weight, a clip's output...) may be float or
quantized tensors: a quantized one is dequantized to its real value first, so the int8
path (QAS) can reuse these ops. Incoming and outgoing gradients are float tensors.
Numpy semantics: `tinymlir/interpreter/train_impls.py`.

The int8 path adds: `train.clamp_mask` (the forward saves, 1 bit per element, where a
quant op's pre-saturation value lay inside its clamp range) and `train.mask_grad` (applies
it to the output's gradient); `train.fully_connected_input_grad` / `_weight_grad`;
`train.scale_grad` (multiplies a gradient by a quantized param's scales to a power: 1 is
the chain rule to the stored integers, -2 is QAS); and `train.sgd` (with or without
momentum) and `train.adam` on quantized params, in the integer domain with nearest or
stochastic rounding, saturating, their optimizer state float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

import numpy as np

from xdsl.dialects.builtin import (
    AnyFloat,
    BoolAttr,
    BytesAttr,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    Float32Type,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    StringAttr,
    SymbolNameConstraint,
    SymbolRefAttr,
    TensorType,
    UnitAttr,
    f32,
    i1,
)
from xdsl.ir import Attribute, Dialect, Operation, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import (
    EffectInstance,
    MemoryEffect,
    MemoryEffectKind,
    Pure,
    SymbolOpInterface,
    SymbolTable,
)
from xdsl.utils.exceptions import VerifyException

from tinymlir.dialects.nn import (
    broadcast_shape,
    check_int_values,
    conv_output_shape,
    conv_props,
    int_array,
    ints,
    pooled_size,
    shape_of,
)
from tinymlir.dialects.quant import UniformQuantizedType

FloatTensor = TensorType[AnyFloat]
ROUNDINGS = ("nearest", "stochastic")


# -- helpers --------------------------------------------------------------------------
def _is_float_tensor(t: Attribute) -> bool:
    return isinstance(t, TensorType) and isinstance(t.element_type, AnyFloat)


def _check_saved(op: IRDLOperation, value: SSAValue, what: str) -> None:
    """A saved forward value: a float tensor or a quantized one (dequantized by the op)."""
    t = value.type
    if not (isinstance(t, TensorType) and isinstance(t.element_type, AnyFloat | UniformQuantizedType)):
        raise VerifyException(f"{op.name}: {what} must be a float or quantized tensor, got {t}")


def _check_rank(op: IRDLOperation, shape: Sequence[int], rank: int, what: str) -> None:
    if len(shape) != rank:
        raise VerifyException(f"{op.name}: {what} must be {rank}-D, got shape {list(shape)}")


def lookup_param(op: Operation, ref: SymbolRefAttr) -> ParamOp | None:
    """The `train.param` that `ref` names, seen from `op`; None when `op` is not (yet) inside a
    module. Raises VerifyException when the symbol is missing or is not a `train.param`."""
    anchor = op.parent_op()
    while anchor is not None and not anchor.has_trait(SymbolTable):
        anchor = anchor.parent_op()
    if anchor is None:
        return None
    found = SymbolTable.lookup_symbol(anchor, ref)
    if found is None:
        raise VerifyException(f"{op.name}: no symbol {ref} in the enclosing module")
    if not isinstance(found, ParamOp):
        raise VerifyException(f"{op.name}: {ref} is a '{found.name}', expected a 'train.param'")
    return found


def param_value_attr(data: np.ndarray, type: TensorType) -> DenseIntOrFPElementsAttr:
    """The `value` of a `train.param` of `type` holding `data`: float32 values for a float
    type, the stored integers (as signless integers of the storage width) for a quantized
    or integer type."""
    et = type.element_type
    if isinstance(et, UniformQuantizedType):
        width = et.storage.width.data
        raw = np.ascontiguousarray(np.asarray(data).astype(et.storage_dtype)).view(f"<i{width // 8}")
        return DenseIntOrFPElementsAttr(TensorType(IntegerType(width), type.get_shape()), BytesAttr(raw.tobytes()))
    if isinstance(et, AnyFloat):
        dtype = np.dtype(f"<f{et.bitwidth // 8}")
    else:
        assert isinstance(et, IntegerType)
        dtype = np.dtype(f"<i{max(et.width.data, 8) // 8}")
    raw = np.ascontiguousarray(np.asarray(data).astype(dtype))
    return DenseIntOrFPElementsAttr(type, BytesAttr(raw.tobytes()))


class ParamEffects(MemoryEffect):
    """Reads and writes of `train.param` symbols, per symbol, so passes that move updates
    (reorder-update) can tell which loads an update conflicts with."""

    @classmethod
    def get_effects(cls, op: Operation) -> AbstractSet[EffectInstance]:
        return op.param_effects()  # type: ignore[attr-defined]


# -- state ----------------------------------------------------------------------------
@irdl_op_definition
class ParamOp(IRDLOperation):
    """A module-level parameter or optimizer-state tensor with its initial value.

    For a float type `value` has the same type; for a quantized type it holds the stored
    integers (signless, of the storage width), as `quant.constant` does. `trainable`
    marks the parameters that `train_step` updates.
    """

    name = "train.param"
    sym_name = prop_def(SymbolNameConstraint())
    type = prop_def(TensorType)
    value = prop_def(DenseIntOrFPElementsAttr)
    trainable = opt_prop_def(UnitAttr)
    traits = traits_def(SymbolOpInterface())
    assembly_format = "$sym_name (`trainable` $trainable^)? `:` $type `=` $value attr-dict"

    def __init__(self, sym_name: str, type: TensorType, value: DenseIntOrFPElementsAttr | np.ndarray,
                 trainable: bool = False):
        if isinstance(value, np.ndarray):
            value = param_value_attr(value, type)
        super().__init__(properties={
            "sym_name": StringAttr(sym_name), "type": type, "value": value,
            "trainable": UnitAttr() if trainable else None,
        })

    @property
    def is_trainable(self) -> bool:
        return self.trainable is not None

    @property
    def quantized_type(self) -> UniformQuantizedType | None:
        et = self.type.element_type
        return et if isinstance(et, UniformQuantizedType) else None

    def verify_(self) -> None:
        vt = self.value.get_type()
        if tuple(vt.get_shape()) != shape_of(self.type):
            raise VerifyException(
                f"train.param @{self.sym_name.data}: value shape {list(vt.get_shape())} differs from "
                f"the type's shape {list(shape_of(self.type))}"
            )
        qt = self.quantized_type
        et = vt.get_element_type()
        if qt is not None:
            if not isinstance(et, IntegerType) or et.width.data != qt.storage.width.data:
                raise VerifyException(
                    f"train.param @{self.sym_name.data}: a quantized parameter stores "
                    f"{qt.storage.width.data}-bit integers, got {et}"
                )
        elif et != self.type.element_type:
            raise VerifyException(
                f"train.param @{self.sym_name.data}: value element type {et} differs from {self.type.element_type}"
            )


@irdl_op_definition
class LoadOp(IRDLOperation):
    """The current value of a `train.param` (a snapshot: later updates do not change it)."""

    name = "train.load"
    param = prop_def(SymbolRefAttr)
    result = result_def(TensorType)
    traits = traits_def(ParamEffects())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$param attr-dict `:` type($result)"

    def __init__(self, param: str | SymbolRefAttr, result_type: TensorType):
        super().__init__(properties={"param": SymbolRefAttr(param) if isinstance(param, str) else param},
                         result_types=[result_type])

    def param_effects(self) -> AbstractSet[EffectInstance]:
        return frozenset((EffectInstance(MemoryEffectKind.READ, self.param),))

    def verify_(self) -> None:
        p = lookup_param(self, self.param)
        if p is not None and p.type != self.result.type:
            raise VerifyException(f"train.load: {self.param} has type {p.type}, not {self.result.type}")


def _check_update_target(op: IRDLOperation, ref: SymbolRefAttr, grad: SSAValue, channels: DenseArrayBase | None,
                         what: str = "updated parameter") -> ParamOp | None:
    p = lookup_param(op, ref)
    if p is None:
        return None
    if p.quantized_type is None and not _is_float_tensor(p.type):
        raise VerifyException(f"{op.name}: the {what} {ref} must be a float tensor, got {p.type}")
    want = shape_of(p.type)
    if channels is not None:
        ch = ints(channels)
        if not want or any(not 0 <= c < want[0] for c in ch) or list(ch) != sorted(set(ch)):
            raise VerifyException(
                f"{op.name}: channels {list(ch)} must be increasing indices below {want[0] if want else 0}"
            )
        want = (len(ch),) + want[1:]
    if shape_of(grad) != want:
        raise VerifyException(f"{op.name}: gradient shape {list(shape_of(grad))} does not match {ref} ({list(want)})")
    return p


def state_shapes(param: ParamOp, channels: DenseArrayBase | None) -> list[tuple[int, ...]]:
    """The shapes an optimizer state param of `param` may have: the param's own (rows
    `channels` of it are used), or, with `channels`, the trained rows' (row j belongs to
    channel channels[j]; what `convert-train-to-tk` makes, so the state costs memory only
    for what trains)."""
    full = shape_of(param.type)
    shapes = [full]
    if channels is not None and full:
        rows = (len(ints(channels)),) + full[1:]
        if rows != full:
            shapes.append(rows)
    return shapes


def _check_state(op: IRDLOperation, ref: SymbolRefAttr, param: ParamOp | None, what: str,
                 channels: DenseArrayBase | None = None) -> None:
    """Optimizer state (velocity, m, v) of `param`: not trainable; for a float param its
    type (or, with `channels`, its element type and the trained rows' shape); for a
    quantized param float32 of one of those shapes."""
    s = lookup_param(op, ref)
    if s is None or param is None:
        return
    shapes = state_shapes(param, channels)
    if param.quantized_type is None:
        ok = s.type == param.type or (s.type.element_type == param.type.element_type
                                      and shape_of(s.type) in shapes)
        if not ok:
            raise VerifyException(f"{op.name}: {what} {ref} must have the type of @{param.sym_name.data}, "
                                  f"{param.type}")
    elif not (isinstance(s.type.element_type, Float32Type) and shape_of(s.type) in shapes):
        alt = f" (or its trained rows' {list(shapes[1])})" if len(shapes) > 1 else ""
        raise VerifyException(f"{op.name}: {what} {ref} of the quantized @{param.sym_name.data} must be a tensor of "
                              f"f32 of its shape {list(shapes[0])}{alt}, got {s.type}")
    if s.is_trainable:
        raise VerifyException(f"{op.name}: {what} {ref} is optimizer state and must not be trainable")


def check_momentum(op: IRDLOperation, momentum: FloatAttr | None, velocity: SymbolRefAttr | None) -> None:
    if (momentum is None) != (velocity is None):
        raise VerifyException(f"{op.name}: 'momentum' and 'velocity' go together")
    if momentum is not None and not 0.0 <= momentum.value.data < 1.0:
        raise VerifyException(f"{op.name}: momentum must lie in [0, 1), got {momentum.value.data}")


def check_adam(op: IRDLOperation, beta1: FloatAttr, beta2: FloatAttr, eps: FloatAttr) -> None:
    for name, b in (("beta1", beta1), ("beta2", beta2)):
        if not 0.0 <= b.value.data < 1.0:
            raise VerifyException(f"{op.name}: {name} must lie in [0, 1), got {b.value.data}")
    e = eps.value.data
    if not (e > 0 and math.isfinite(e) and np.float32(e) > 0):
        raise VerifyException(f"{op.name}: eps must be positive and finite (in float32), got {e}")


def _check_rounding(op: IRDLOperation, rounding: str, rng: SymbolRefAttr | None) -> None:
    if rounding not in ROUNDINGS:
        raise VerifyException(f"{op.name}: rounding must be one of {', '.join(ROUNDINGS)}, got '{rounding}'")
    if (rounding == "stochastic") != (rng is not None):
        raise VerifyException(f"{op.name}: stochastic rounding and its 'rng' state go together")


@irdl_op_definition
class SGDOp(IRDLOperation):
    """In-place SGD, as torch.optim.SGD (dampening 0, no Nesterov):

        v = momentum * v + g;  p -= lr * v      (with `momentum` and `velocity`)
        p -= lr * g                             (without)

    With `channels`, `grad` holds the rows of those output channels (axis 0) only and
    just those rows of the parameter (and velocity) change: the sparse update. The
    velocity param has the parameter's shape (its rows `channels` are used) or, with
    `channels`, the trained rows' shape (row j is channel channels[j]'s).

    A quantized parameter (int8 weights, int32 biases) is updated in its storage domain:
    `grad` is the gradient w.r.t. the stored integers q (autodiff makes it with
    `train.scale_grad`), and

        q' = clamp(R(q - lr * g), -(2^(b-1) - 1), 2^(b-1) - 1)        (b = storage bits)

    i.e. the real value s (q - z) moves by -lr * s * g and stays on its grid. The range is
    symmetric: int8 [-127, 127] as PTQ's weights, int32 [-(2^31 - 1), 2^31 - 1]; it
    saturates, never wraps. `rounding` R: "nearest" (half to even, the default) or
    "stochastic": floor(v + u) with u uniform in [0, 1) drawn from the counter-based
    generator whose 32-bit state is the one-element i32 param `rng`: element i (row-major
    over the updated rows) uses u = (fmix32(state + i) >> 8) * 2^-24, fmix32 being
    MurmurHash3's finalizer, and the update then advances state by the element count
    (mod 2^32). C reproduces it bit for bit with one uint32 add, the mixer and a shift.

    Momentum on a quantized parameter keeps a float32 velocity (one element per updated
    element, see above), real-valued in the units of g:

        v' = f32(momentum * v + g);  q' = clamp(R(q - lr * v'))

    (here computed in float64 from the float32 values, then v' rounded to float32; the
    C kernels' float32 order is in tk.h). An element whose step lr * v' is not finite
    keeps q and v.
    """

    name = "train.sgd"
    param = prop_def(SymbolRefAttr)
    grad = operand_def(FloatTensor)
    lr = operand_def(Float32Type)
    momentum = opt_prop_def(FloatAttr)
    velocity = opt_prop_def(SymbolRefAttr)
    channels = opt_prop_def(DenseArrayBase)
    rounding = opt_prop_def(StringAttr)
    rng = opt_prop_def(SymbolRefAttr)
    traits = traits_def(ParamEffects())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$param `,` $grad `,` $lr attr-dict `:` type($grad)"

    def __init__(self, param: str | SymbolRefAttr, grad: SSAValue, lr: SSAValue, *,
                 momentum: float | None = None, velocity: str | SymbolRefAttr | None = None,
                 channels: Sequence[int] | None = None, rounding: str | None = None,
                 rng: str | SymbolRefAttr | None = None):
        props: dict[str, Attribute | None] = {"param": SymbolRefAttr(param) if isinstance(param, str) else param}
        if momentum is not None:
            assert velocity is not None
            props["momentum"] = FloatAttr(momentum, f32)
            props["velocity"] = SymbolRefAttr(velocity) if isinstance(velocity, str) else velocity
        if channels is not None:
            props["channels"] = int_array(channels)
        if rounding is not None:
            props["rounding"] = StringAttr(rounding)
        if rng is not None:
            props["rng"] = SymbolRefAttr(rng) if isinstance(rng, str) else rng
        super().__init__(operands=[grad, lr], properties=props)

    def param_effects(self) -> AbstractSet[EffectInstance]:
        refs = [self.param] + [r for r in (self.velocity, self.rng) if r is not None]
        return frozenset(EffectInstance(k, r) for r in refs for k in (MemoryEffectKind.READ, MemoryEffectKind.WRITE))

    @property
    def rounding_mode(self) -> str:
        return "nearest" if self.rounding is None else self.rounding.data

    def verify_(self) -> None:
        check_momentum(self, self.momentum, self.velocity)
        _check_rounding(self, self.rounding_mode, self.rng)
        p = _check_update_target(self, self.param, self.grad, self.channels)
        if self.velocity is not None:
            _check_state(self, self.velocity, p, "velocity", self.channels)
        if p is not None and p.quantized_type is None and (self.rounding is not None or self.rng is not None):
            raise VerifyException(f"train.sgd: rounding applies to quantized parameters only, {self.param} is float")
        if self.rng is not None:
            _check_counter(self, self.rng, "random state")


@irdl_op_definition
class AdamOp(IRDLOperation):
    """In-place Adam, as torch.optim.Adam (no weight decay, no amsgrad). With t the value
    of the `step` param (incremented by `train.increment` before the first update):

        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    `channels` as train.sgd's: only those rows of the param (and of m and v) change; m
    and v have the param's shape, or the trained rows' shape.

    A quantized parameter (int8 weights, int32 biases) keeps float32 m and v (one element
    per updated element) and steps its stored integers q with the gradient g w.r.t. them
    (the one plain quantized SGD applies, QAS included):

        m' = f32(b1 m + (1 - b1) g);  v' = f32(b2 v + (1 - b2) g^2)
        step = lr * (m' / (1 - b1^t)) / (sqrt(v' / (1 - b2^t)) + eps)
        q' = clamp(R(q - step), -(2^(b-1) - 1), 2^(b-1) - 1)

    with train.sgd's rounding R (`rounding`, `rng`) and saturation; computed in float64
    from the float32 values here (the C kernels' exact float32 order is in tk.h). An
    element whose step is not finite keeps q, m and v.
    """

    name = "train.adam"
    param = prop_def(SymbolRefAttr)
    grad = operand_def(FloatTensor)
    lr = operand_def(Float32Type)
    beta1 = prop_def(FloatAttr)
    beta2 = prop_def(FloatAttr)
    eps = prop_def(FloatAttr)
    m = prop_def(SymbolRefAttr)
    v = prop_def(SymbolRefAttr)
    step = prop_def(SymbolRefAttr)
    channels = opt_prop_def(DenseArrayBase)
    rounding = opt_prop_def(StringAttr)
    rng = opt_prop_def(SymbolRefAttr)
    traits = traits_def(ParamEffects())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$param `,` $grad `,` $lr attr-dict `:` type($grad)"

    def __init__(self, param: str, grad: SSAValue, lr: SSAValue, *, m: str, v: str, step: str,
                 beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 channels: Sequence[int] | None = None, rounding: str | None = None,
                 rng: str | SymbolRefAttr | None = None):
        props: dict[str, Attribute] = {
            "param": SymbolRefAttr(param), "m": SymbolRefAttr(m), "v": SymbolRefAttr(v),
            "step": SymbolRefAttr(step), "beta1": FloatAttr(beta1, f32), "beta2": FloatAttr(beta2, f32),
            "eps": FloatAttr(eps, f32),
        }
        if channels is not None:
            props["channels"] = int_array(channels)
        if rounding is not None:
            props["rounding"] = StringAttr(rounding)
        if rng is not None:
            props["rng"] = SymbolRefAttr(rng) if isinstance(rng, str) else rng
        super().__init__(operands=[grad, lr], properties=props)

    def param_effects(self) -> AbstractSet[EffectInstance]:
        rw = [EffectInstance(k, r) for r in (self.param, self.m, self.v, *([self.rng] if self.rng else []))
              for k in (MemoryEffectKind.READ, MemoryEffectKind.WRITE)]
        return frozenset(rw + [EffectInstance(MemoryEffectKind.READ, self.step)])

    @property
    def rounding_mode(self) -> str:
        return "nearest" if self.rounding is None else self.rounding.data

    def verify_(self) -> None:
        check_adam(self, self.beta1, self.beta2, self.eps)
        _check_rounding(self, self.rounding_mode, self.rng)
        p = _check_update_target(self, self.param, self.grad, self.channels)
        _check_state(self, self.m, p, "m", self.channels)
        _check_state(self, self.v, p, "v", self.channels)
        _check_step(self, self.step)
        if p is not None and p.quantized_type is None and (self.rounding is not None or self.rng is not None):
            raise VerifyException(f"train.adam: rounding applies to quantized parameters only, {self.param} is float")
        if self.rng is not None:
            _check_counter(self, self.rng, "random state")


def _check_step(op: IRDLOperation, ref: SymbolRefAttr) -> None:
    _check_counter(op, ref, "step counter")


def _check_counter(op: IRDLOperation, ref: SymbolRefAttr, what: str) -> None:
    s = lookup_param(op, ref)
    if s is None:
        return
    if not (isinstance(s.type.element_type, IntegerType) and s.type.element_count() == 1):
        raise VerifyException(f"{op.name}: {what} {ref} must be a one-element integer tensor, got {s.type}")
    if what == "random state" and (s.type.element_type.width.data != 32 or s.is_trainable):
        raise VerifyException(f"{op.name}: {what} {ref} must be a non-trainable 32-bit integer param, got {s.type}")


@irdl_op_definition
class IncrementOp(IRDLOperation):
    """Add one to an integer counter param (Adam's step count `t`)."""

    name = "train.increment"
    param = prop_def(SymbolRefAttr)
    traits = traits_def(ParamEffects())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$param attr-dict"

    def __init__(self, param: str | SymbolRefAttr):
        super().__init__(properties={"param": SymbolRefAttr(param) if isinstance(param, str) else param})

    def param_effects(self) -> AbstractSet[EffectInstance]:
        return frozenset(EffectInstance(k, self.param) for k in (MemoryEffectKind.READ, MemoryEffectKind.WRITE))

    def verify_(self) -> None:
        _check_step(self, self.param)


# -- losses ---------------------------------------------------------------------------
@irdl_op_definition
class SoftmaxCrossEntropyOp(IRDLOperation):
    """`loss = mean_n(-log softmax(logits[n])[label[n]])` and `dlogits = (softmax - onehot) / N`.

    logits: [N, K] float; label: `i32` (N = 1) or `tensor<Nxi32>`, each in [0, K).
    """

    name = "train.softmax_cross_entropy"
    logits = operand_def(FloatTensor)
    label = operand_def(IntegerType | TensorType[IntegerType])
    loss = result_def(Float32Type)
    dlogits = result_def(FloatTensor)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$logits `,` $label attr-dict `:` functional-type(operands, results)"

    def __init__(self, logits: SSAValue, label: SSAValue):
        super().__init__(operands=[logits, label], result_types=[f32, logits.type])

    def verify_(self) -> None:
        ls = shape_of(self.logits)
        if len(ls) != 2:
            raise VerifyException(f"train.softmax_cross_entropy: logits must be [N, K], got {list(ls)}")
        lt = self.label.type
        if isinstance(lt, TensorType):
            if shape_of(lt) != (ls[0],):
                raise VerifyException(
                    f"train.softmax_cross_entropy: label must have shape [{ls[0]}], got {list(shape_of(lt))}"
                )
        elif ls[0] != 1:
            raise VerifyException("train.softmax_cross_entropy: a scalar label needs logits of batch 1")
        if self.dlogits.type != self.logits.type:
            raise VerifyException("train.softmax_cross_entropy: dlogits must have the type of the logits")


@irdl_op_definition
class MSEOp(IRDLOperation):
    """`loss = mean((pred - target)^2)` and `dpred = 2 (pred - target) / numel`."""

    name = "train.mse"
    pred = operand_def(FloatTensor)
    target = operand_def(FloatTensor)
    loss = result_def(Float32Type)
    dpred = result_def(FloatTensor)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$pred `,` $target attr-dict `:` functional-type(operands, results)"

    def __init__(self, pred: SSAValue, target: SSAValue):
        super().__init__(operands=[pred, target], result_types=[f32, pred.type])

    def verify_(self) -> None:
        if self.pred.type != self.target.type or self.dpred.type != self.pred.type:
            raise VerifyException(
                f"train.mse: prediction, target and gradient must have one type, got {self.pred.type}, "
                f"{self.target.type} and {self.dpred.type}"
            )


# -- gradients ------------------------------------------------------------------------
class _ConvGradOp(IRDLOperation):
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    groups = prop_def(IntegerAttr[IntegerType])
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)

    def conv_params(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int]:
        return ints(self.strides), ints(self.pads), ints(self.dilations), self.groups.value.data


@irdl_op_definition
class Conv2dInputGradOp(_ConvGradOp):
    """`dx` of `y = conv2d(x, w)`: the transposed convolution of `dy` by `w`, cropped to the
    input's shape (the result type; rows/columns a stride skips get zero gradient)."""

    name = "train.conv2d_input_grad"
    dy = operand_def(FloatTensor)
    weight = operand_def(TensorType)
    result = result_def(FloatTensor)
    assembly_format = "$dy `,` $weight attr-dict `:` functional-type(operands, results)"

    def __init__(self, dy: SSAValue, weight: SSAValue, result_type: Attribute, *, strides: Sequence[int] = (1, 1),
                 pads: Sequence[int] = (0, 0, 0, 0), dilations: Sequence[int] = (1, 1), groups: int = 1):
        super().__init__(operands=[dy, weight], result_types=[result_type],
                         properties=conv_props(strides, pads, dilations, groups))

    def verify_(self) -> None:
        _check_saved(self, self.weight, "weight")
        want = conv_output_shape(self, shape_of(self.result), shape_of(self.weight), *self.conv_params())
        if shape_of(self.dy) != want:
            raise VerifyException(
                f"train.conv2d_input_grad: a convolution of {list(shape_of(self.result))} by "
                f"{list(shape_of(self.weight))} gives {list(want)}, but dy has shape {list(shape_of(self.dy))}"
            )


@irdl_op_definition
class Conv2dWeightGradOp(_ConvGradOp):
    """`dw` of `y = conv2d(x, w)`: `dw[o, c, i, j] = sum_{n,h,w} dy[n, o, h, w] * x_pad[n, g(o) C/G + c, ...]`.

    With `channels` (increasing indices of output channels), only those output channels'
    gradients are computed: the result has len(channels) rows. The kernel size comes from
    the result type.
    """

    name = "train.conv2d_weight_grad"
    dy = operand_def(FloatTensor)
    input = operand_def(TensorType)
    result = result_def(FloatTensor)
    channels = opt_prop_def(DenseArrayBase)
    assembly_format = "$dy `,` $input attr-dict `:` functional-type(operands, results)"

    def __init__(self, dy: SSAValue, input: SSAValue, result_type: Attribute, *, strides: Sequence[int] = (1, 1),
                 pads: Sequence[int] = (0, 0, 0, 0), dilations: Sequence[int] = (1, 1), groups: int = 1,
                 channels: Sequence[int] | None = None):
        props = conv_props(strides, pads, dilations, groups)
        if channels is not None:
            props["channels"] = int_array(channels)
        super().__init__(operands=[dy, input], result_types=[result_type], properties=props)

    def verify_(self) -> None:
        _check_saved(self, self.input, "input")
        ys, ws = shape_of(self.dy), shape_of(self.result)
        _check_rank(self, ys, 4, "dy")
        _check_rank(self, ws, 4, "the weight gradient")
        full = (ys[1],) + ws[1:]
        if self.channels is not None:
            ch = ints(self.channels)
            if not ch or any(not 0 <= c < ys[1] for c in ch) or list(ch) != sorted(set(ch)):
                raise VerifyException(
                    f"train.conv2d_weight_grad: channels {list(ch)} must be increasing output-channel "
                    f"indices below {ys[1]}"
                )
            if ws[0] != len(ch):
                raise VerifyException(
                    f"train.conv2d_weight_grad: {len(ch)} selected channels, but the result has {ws[0]} rows"
                )
        elif ws[0] != ys[1]:
            raise VerifyException(
                f"train.conv2d_weight_grad: dy has {ys[1]} channels, the weight gradient {ws[0]} output channels"
            )
        want = conv_output_shape(self, shape_of(self.input), full, *self.conv_params())
        if ys != want:
            raise VerifyException(
                f"train.conv2d_weight_grad: a convolution of {list(shape_of(self.input))} by {list(full)} gives "
                f"{list(want)}, but dy has shape {list(ys)}"
            )


@irdl_op_definition
class BiasGradOp(IRDLOperation):
    """`db[c] = sum of dy over every axis but 1` (conv NCHW and gemm [N, C] alike)."""

    name = "train.bias_grad"
    dy = operand_def(FloatTensor)
    result = result_def(FloatTensor)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$dy attr-dict `:` functional-type(operands, results)"

    def __init__(self, dy: SSAValue, result_type: Attribute):
        super().__init__(operands=[dy], result_types=[result_type])

    def verify_(self) -> None:
        ys = shape_of(self.dy)
        if len(ys) < 2 or shape_of(self.result) != (ys[1],):
            raise VerifyException(
                f"train.bias_grad: dy of shape {list(ys)} (rank >= 2) sums to [{ys[1] if len(ys) > 1 else '?'}], "
                f"got {list(shape_of(self.result))}"
            )


class _MaskGradOp(IRDLOperation):
    dy = operand_def(FloatTensor)
    saved = operand_def(TensorType)
    result = result_def(FloatTensor)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$dy `,` $saved attr-dict `:` functional-type(operands, results)"

    def verify_(self) -> None:
        _check_saved(self, self.saved, "the saved forward value")
        if not (shape_of(self.dy) == shape_of(self.saved) and self.result.type == self.dy.type):
            raise VerifyException(
                f"{self.name}: dy, the saved value and the result must have one shape, got "
                f"{list(shape_of(self.dy))}, {list(shape_of(self.saved))} and {list(shape_of(self.result))}"
            )


@irdl_op_definition
class ReluGradOp(_MaskGradOp):
    """`dx = dy where y > 0 else 0`, with `y` the ReLU's output (or input: same mask), as
    torch's threshold_backward."""

    name = "train.relu_grad"

    def __init__(self, dy: SSAValue, y: SSAValue):
        super().__init__(operands=[dy, y], result_types=[dy.type])


@irdl_op_definition
class ClipGradOp(_MaskGradOp):
    """`dx = dy where min < v < max else 0`, boundaries excluded, as torch's
    hardtanh/relu6 backward (torch.clamp's own backward includes them; they differ only
    where v hits a bound exactly). `v` is the clip's input or its output: clamping maps the
    open interval onto itself and everything else onto a bound, so the mask is the same,
    and autodiff saves the output, which the next layer keeps anyway."""

    name = "train.clip_grad"
    min = prop_def(FloatAttr)
    max = prop_def(FloatAttr)

    def __init__(self, dy: SSAValue, v: SSAValue, min: float, max: float):
        super().__init__(operands=[dy, v], result_types=[dy.type],
                         properties={"min": FloatAttr(min, f32), "max": FloatAttr(max, f32)})

    def verify_(self) -> None:
        super().verify_()
        if not self.min.value.data <= self.max.value.data:
            raise VerifyException(f"train.clip_grad: min {self.min.value.data} is above max {self.max.value.data}")


@irdl_op_definition
class GlobalAvgPoolGradOp(IRDLOperation):
    """`dx[n, c, h, w] = dy[n, c, 0, 0] / (H W)`; the input shape is the result type."""

    name = "train.global_avg_pool_grad"
    dy = operand_def(FloatTensor)
    result = result_def(FloatTensor)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$dy attr-dict `:` functional-type(operands, results)"

    def __init__(self, dy: SSAValue, result_type: Attribute):
        super().__init__(operands=[dy], result_types=[result_type])

    def verify_(self) -> None:
        ys, xs = shape_of(self.dy), shape_of(self.result)
        if len(xs) < 3 or ys != xs[:2] + (1,) * (len(xs) - 2):
            raise VerifyException(
                f"train.global_avg_pool_grad: dy {list(ys)} must be the N x C x 1 x 1 pooling of the result {list(xs)}"
            )


class _PoolGradOp(IRDLOperation):
    kernel = prop_def(DenseArrayBase)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)

    def pool_params(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return ints(self.kernel), ints(self.strides), ints(self.pads)

    def check_pool(self, xs: Sequence[int]) -> None:
        k, s, p = self.pool_params()
        check_int_values(self, "kernel", k, 2, True)
        check_int_values(self, "strides", s, 2, True)
        check_int_values(self, "pads", p, 4, False)
        _check_rank(self, xs, 4, "the pooled input")
        want = (xs[0], xs[1], pooled_size(xs[2], k[0], s[0], p[0], p[2]), pooled_size(xs[3], k[1], s[1], p[1], p[3]))
        ys = shape_of(self.dy)  # type: ignore[attr-defined]
        if ys != want:
            raise VerifyException(f"{self.name}: pooling {list(xs)} gives {list(want)}, but dy has shape {list(ys)}")


def _pool_props(kernel: Sequence[int], strides: Sequence[int], pads: Sequence[int]) -> dict[str, Attribute]:
    return {"kernel": int_array(kernel), "strides": int_array(strides), "pads": int_array(pads)}


@irdl_op_definition
class AvgPoolGradOp(_PoolGradOp):
    """`dx` of `nn.avg_pool`: each window spreads dy / count over its elements (count as in
    the forward op: padding counted only with `count_include_pad`)."""

    name = "train.avg_pool_grad"
    dy = operand_def(FloatTensor)
    result = result_def(FloatTensor)
    count_include_pad = prop_def(BoolAttr)
    assembly_format = "$dy attr-dict `:` functional-type(operands, results)"

    def __init__(self, dy: SSAValue, result_type: Attribute, kernel: Sequence[int], strides: Sequence[int],
                 pads: Sequence[int], count_include_pad: bool = False):
        super().__init__(operands=[dy], result_types=[result_type], properties=_pool_props(kernel, strides, pads)
                         | {"count_include_pad": BoolAttr.from_bool(count_include_pad)})

    def verify_(self) -> None:
        self.check_pool(shape_of(self.result))


@irdl_op_definition
class MaxPoolGradOp(_PoolGradOp):
    """`dx` of `nn.max_pool`: each window routes dy to its maximum of `x` (the first in
    row-major window order on ties, as torch's CPU kernel); padding never wins."""

    name = "train.max_pool_grad"
    dy = operand_def(FloatTensor)
    input = operand_def(TensorType)
    result = result_def(FloatTensor)
    assembly_format = "$dy `,` $input attr-dict `:` functional-type(operands, results)"

    def __init__(self, dy: SSAValue, input: SSAValue, result_type: Attribute, kernel: Sequence[int],
                 strides: Sequence[int], pads: Sequence[int]):
        super().__init__(operands=[dy, input], result_types=[result_type],
                         properties=_pool_props(kernel, strides, pads))

    def verify_(self) -> None:
        _check_saved(self, self.input, "input")
        if shape_of(self.result) != shape_of(self.input):
            raise VerifyException(
                f"train.max_pool_grad: the result must have the input's shape {list(shape_of(self.input))}"
            )
        self.check_pool(shape_of(self.input))


@irdl_op_definition
class ReduceToShapeOp(IRDLOperation):
    """Sum a gradient over the axes that numpy broadcasting expanded: the result shape
    broadcasts to the operand's (the backward of a broadcasting nn.add / nn.mul ...)."""

    name = "train.reduce_to_shape"
    input = operand_def(FloatTensor)
    result = result_def(FloatTensor)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"

    def __init__(self, input: SSAValue, result_type: Attribute):
        super().__init__(operands=[input], result_types=[result_type])

    def verify_(self) -> None:
        gs, rs = shape_of(self.input), shape_of(self.result)
        if len(rs) > len(gs) or broadcast_shape(rs, gs) != gs:
            raise VerifyException(f"train.reduce_to_shape: {list(rs)} does not broadcast to {list(gs)}")


# -- the int8 path ------------------------------------------------------------------------
CLAMPING_OPS = ("quant.conv2d", "quant.fully_connected", "quant.add", "quant.global_avg_pool",
                "quant.quantize", "quant.requantize")


@irdl_op_definition
class ClampMaskOp(IRDLOperation):
    """The saturation mask of a quantized op: 1 where the op's pre-saturation value
    `round(real / s_y) + z_y` lay inside its clamp range [act_min, act_max] (closed), 0
    where the clamp (the saturation, or the ReLU / ReLU6 folded into the range) cut it.

        %y = quant.conv2d %x, %w, %b {...} : (...) -> tensor<1x16x8x8x!quant.uniform<...>>
        %m = train.clamp_mask %y from %x, %w, %b : (...) -> tensor<1x16x8x8xi1>

    The operands are the op's result and then all of its operands, so that the data
    dependence is explicit; `train.mask_grad` applies the mask to the output's gradient (the
    straight-through gradient of the clamp). It is the forward's only extra saved value on
    the int8 path: one bit per output element, where recomputing the clamp in the backward
    would keep the op's int8 input alive instead (8 bits per input element). The C lowering
    fuses it into the op's kernel (one compare per element); the interpreter recomputes the
    accumulator from the operands.
    """

    name = "train.clamp_mask"
    output = operand_def(TensorType)
    inputs = var_operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$output `from` $inputs attr-dict `:` functional-type(operands, results)"

    def __init__(self, output: SSAValue):
        producer = output.owner
        assert isinstance(producer, Operation)
        super().__init__(operands=[output, list(producer.operands)],
                         result_types=[TensorType(i1, shape_of(output))])

    def verify_(self) -> None:
        producer = self.output.owner
        if not isinstance(producer, Operation) or producer.name not in CLAMPING_OPS:
            raise VerifyException(
                f"train.clamp_mask: the masked value must be the result of one of {', '.join(CLAMPING_OPS)}"
            )
        if list(self.inputs) != list(producer.operands):
            raise VerifyException(f"train.clamp_mask: the operands after the masked value must be the "
                                  f"operands of its '{producer.name}'")
        rt = self.result.type
        if not (isinstance(rt, TensorType) and rt.element_type == i1 and shape_of(rt) == shape_of(self.output)):
            raise VerifyException(f"train.clamp_mask: the mask must be a tensor of i1 of shape "
                                  f"{list(shape_of(self.output))}, got {rt}")


@irdl_op_definition
class MaskGradOp(IRDLOperation):
    """`dx = dy where mask else 0`: the gradient through a clamp whose mask the forward saved."""

    name = "train.mask_grad"
    dy = operand_def(FloatTensor)
    mask = operand_def(TensorType)
    result = result_def(FloatTensor)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$dy `,` $mask attr-dict `:` functional-type(operands, results)"

    def __init__(self, dy: SSAValue, mask: SSAValue):
        super().__init__(operands=[dy, mask], result_types=[dy.type])

    def verify_(self) -> None:
        mt = self.mask.type
        if not (isinstance(mt, TensorType) and mt.element_type == i1 and shape_of(mt) == shape_of(self.dy)):
            raise VerifyException(f"train.mask_grad: the mask must be a tensor of i1 of dy's shape "
                                  f"{list(shape_of(self.dy))}, got {mt}")
        if self.result.type != self.dy.type:
            raise VerifyException("train.mask_grad: the result must have dy's type")


def _check_matrix(op: IRDLOperation, value: SSAValue | Attribute, what: str) -> tuple[int, ...]:
    shape = shape_of(value)
    _check_rank(op, shape, 2, what)
    return shape


@irdl_op_definition
class FullyConnectedInputGradOp(IRDLOperation):
    """`dx = dy @ W` of `y = x @ W^T + b` (W: [M, K]): dy [N, M] -> dx [N, K]."""

    name = "train.fully_connected_input_grad"
    dy = operand_def(FloatTensor)
    weight = operand_def(TensorType)
    result = result_def(FloatTensor)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$dy `,` $weight attr-dict `:` functional-type(operands, results)"

    def __init__(self, dy: SSAValue, weight: SSAValue, result_type: Attribute):
        super().__init__(operands=[dy, weight], result_types=[result_type])

    def verify_(self) -> None:
        _check_saved(self, self.weight, "weight")
        (n, m), (wm, k), rs = (_check_matrix(self, v, w) for v, w in
                               ((self.dy, "dy"), (self.weight, "the weight"), (self.result, "the result")))
        if m != wm or rs != (n, k):
            raise VerifyException(f"train.fully_connected_input_grad: dy [{n}, {m}] by a weight [{wm}, {k}] "
                                  f"gives [{n}, {k}], got {list(rs)}")


@irdl_op_definition
class FullyConnectedWeightGradOp(IRDLOperation):
    """`dW = dy^T @ x` of `y = x @ W^T + b`: dy [N, M], x [N, K] -> dW [M, K] (with
    `channels`, only those rows: [len(channels), K])."""

    name = "train.fully_connected_weight_grad"
    dy = operand_def(FloatTensor)
    input = operand_def(TensorType)
    result = result_def(FloatTensor)
    channels = opt_prop_def(DenseArrayBase)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$dy `,` $input attr-dict `:` functional-type(operands, results)"

    def __init__(self, dy: SSAValue, input: SSAValue, result_type: Attribute, channels: Sequence[int] | None = None):
        props = {} if channels is None else {"channels": int_array(channels)}
        super().__init__(operands=[dy, input], result_types=[result_type], properties=props)

    def verify_(self) -> None:
        _check_saved(self, self.input, "input")
        (n, m), (xn, k), rs = (_check_matrix(self, v, w) for v, w in
                               ((self.dy, "dy"), (self.input, "the input"), (self.result, "the result")))
        rows = m
        if self.channels is not None:
            ch = ints(self.channels)
            if not ch or any(not 0 <= c < m for c in ch) or list(ch) != sorted(set(ch)):
                raise VerifyException(f"train.fully_connected_weight_grad: channels {list(ch)} must be increasing "
                                      f"output indices below {m}")
            rows = len(ch)
        if n != xn or rs != (rows, k):
            raise VerifyException(f"train.fully_connected_weight_grad: dy [{n}, {m}] and an input [{xn}, {k}] "
                                  f"give [{rows}, {k}], got {list(rs)}")


@irdl_op_definition
class ScaleGradOp(IRDLOperation):
    """`g'[c, ...] = g[c, ...] * s[c]^exponent`, with s the quantization scales of the
    quantized param `param` (per channel along axis 0, or its one per-tensor scale).

    autodiff emits `exponent = 1`, the chain rule from a gradient w.r.t. the real value
    W = s q to the gradient w.r.t. the stored integers q that `train.sgd` applies; `qas`
    adds `exponent = -2`, Quantization-Aware Scaling. With `channels`, `grad` holds those
    rows of the param only.
    """

    name = "train.scale_grad"
    grad = operand_def(FloatTensor)
    result = result_def(FloatTensor)
    param = prop_def(SymbolRefAttr)
    exponent = prop_def(IntegerAttr[IntegerType])
    channels = opt_prop_def(DenseArrayBase)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$param `,` $grad attr-dict `:` functional-type(operands, results)"

    def __init__(self, grad: SSAValue, param: str | SymbolRefAttr, exponent: int,
                 channels: Sequence[int] | None = None):
        props: dict[str, Attribute] = {"param": SymbolRefAttr(param) if isinstance(param, str) else param,
                                       "exponent": IntegerAttr(exponent, 64)}
        if channels is not None:
            props["channels"] = int_array(channels)
        super().__init__(operands=[grad], result_types=[grad.type], properties=props)

    def verify_(self) -> None:
        if self.result.type != self.grad.type:
            raise VerifyException("train.scale_grad: the result must have the gradient's type")
        p = lookup_param(self, self.param)
        if p is None:
            return
        if p.quantized_type is None:
            raise VerifyException(f"train.scale_grad: {self.param} must be a quantized param, got {p.type}")
        _check_update_target(self, self.param, self.grad, self.channels, "scaled parameter")


# -- fused gradient + update (reorder-update) ----------------------------------------------
class _GradSGDOp(IRDLOperation):
    """A gradient op fused with the update of the parameter it differentiates: the
    gradient of `param` is computed, multiplied in turn by s^e for each exponent e of
    `scales` (s: the quantized param's scales, as `train.scale_grad` does; the int8 path),
    and applied in place at once, so no gradient tensor outlives the op (the paper's
    operator reordering + in-place update). The update is `train.sgd`'s, or, with `m`,
    `v`, `step`, `beta1`, `beta2`, `eps`, `train.adam`'s (made for quantized params only;
    "sgd" in the name is historical); the properties mean what they mean there:
    `channels` (only those output channels' rows are computed and updated), `momentum` +
    `velocity`, the Adam state, `rounding` + `rng` for a quantized param. Made by
    `reorder-update`; the unfused ops give bit-identical results."""

    param = prop_def(SymbolRefAttr)
    channels = opt_prop_def(DenseArrayBase)
    momentum = opt_prop_def(FloatAttr)
    velocity = opt_prop_def(SymbolRefAttr)
    beta1 = opt_prop_def(FloatAttr)
    beta2 = opt_prop_def(FloatAttr)
    eps = opt_prop_def(FloatAttr)
    m = opt_prop_def(SymbolRefAttr)
    v = opt_prop_def(SymbolRefAttr)
    step = opt_prop_def(SymbolRefAttr)
    rounding = opt_prop_def(StringAttr)
    rng = opt_prop_def(SymbolRefAttr)
    scales = opt_prop_def(DenseArrayBase)
    traits = traits_def(ParamEffects())
    irdl_options = (ParsePropInAttrDict(),)

    def param_effects(self) -> AbstractSet[EffectInstance]:
        refs = [self.param] + [r for r in (self.velocity, self.m, self.v, self.rng) if r is not None]
        out = [EffectInstance(k, r) for r in refs for k in (MemoryEffectKind.READ, MemoryEffectKind.WRITE)]
        if self.step is not None:
            out.append(EffectInstance(MemoryEffectKind.READ, self.step))
        return frozenset(out)

    @property
    def rounding_mode(self) -> str:
        return "nearest" if self.rounding is None else self.rounding.data

    @property
    def is_adam(self) -> bool:
        return self.m is not None

    def verify_update(self, rows_shape: tuple[int, ...]) -> None:
        """train.sgd's (or train.adam's) checks, for a gradient of shape `rows_shape` (channels' rows)."""
        check_momentum(self, self.momentum, self.velocity)
        adam = [self.beta1, self.beta2, self.eps, self.m, self.v, self.step]
        if any(a is not None for a in adam):
            if any(a is None for a in adam):
                raise VerifyException(f"{self.name}: Adam's 'beta1', 'beta2', 'eps', 'm', 'v' and 'step' go together")
            if self.momentum is not None:
                raise VerifyException(f"{self.name}: momentum and Adam exclude each other")
            check_adam(self, self.beta1, self.beta2, self.eps)  # type: ignore[arg-type]
        _check_rounding(self, self.rounding_mode, self.rng)
        p = _check_update_target(self, self.param, TensorType(f32, rows_shape), self.channels)
        for ref, what in ((self.velocity, "velocity"), (self.m, "m"), (self.v, "v")):
            if ref is not None:
                _check_state(self, ref, p, what, self.channels)
        if self.step is not None:
            _check_step(self, self.step)
        if p is not None and p.quantized_type is None:
            if self.rounding is not None or self.rng is not None or self.scales is not None:
                raise VerifyException(f"{self.name}: rounding and scales apply to quantized parameters only, "
                                      f"{self.param} is float")
            if self.m is not None:
                raise VerifyException(f"{self.name}: a fused Adam update needs a quantized parameter, "
                                      f"{self.param} is float (use train.adam)")
        if self.rng is not None:
            _check_counter(self, self.rng, "random state")

    def param_shape(self) -> tuple[int, ...] | None:
        p = lookup_param(self, self.param)
        return None if p is None else shape_of(p.type)

    def rows(self, full: int) -> int:
        return full if self.channels is None else len(ints(self.channels))


UPDATE_PROPS = ("channels", "momentum", "velocity", "beta1", "beta2", "eps", "m", "v", "step", "rounding", "rng")
"""The properties an update (train.sgd / train.adam) hands on to its fused op."""


def grad_sgd_props(param: str | SymbolRefAttr, sgd: SGDOp | AdamOp | None = None,
                   channels: Sequence[int] | None = None, scales: Sequence[int] | None = None) -> dict[str, Attribute]:
    """The properties of a fused gradient + update op: those of `sgd` (a train.sgd or
    train.adam: channels, momentum, velocity, Adam's, rounding, rng), or just `channels`;
    plus `scales`."""
    props: dict[str, Attribute] = {"param": SymbolRefAttr(param) if isinstance(param, str) else param}
    if sgd is not None:
        for name in UPDATE_PROPS:
            if (value := sgd.properties.get(name)) is not None:
                props[name] = value
    elif channels is not None:
        props["channels"] = int_array(channels)
    if scales:
        props["scales"] = int_array(scales)
    return props


@irdl_op_definition
class Conv2dWeightGradSGDOp(_GradSGDOp):
    """`train.conv2d_weight_grad` + `train.sgd` of the weight `param` [O, C/G, KH, KW]:

        train.conv2d_weight_grad_sgd @layer3.weight, %dy, %x, %lr {strides = ..., pads = ...,
            dilations = ..., groups = 1 : i64, channels = array<i64: 0, 5>} : tensor<1x8x4x4xf32>, tensor<1x4x4x4xf32>
    """

    name = "train.conv2d_weight_grad_sgd"
    dy = operand_def(FloatTensor)
    input = operand_def(TensorType)
    lr = operand_def(Float32Type)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    groups = prop_def(IntegerAttr[IntegerType])
    assembly_format = "$param `,` $dy `,` $input `,` $lr attr-dict `:` type($dy) `,` type($input)"

    def __init__(self, param: str | SymbolRefAttr, dy: SSAValue, input: SSAValue, lr: SSAValue, *,
                 strides: Sequence[int] = (1, 1), pads: Sequence[int] = (0, 0, 0, 0),
                 dilations: Sequence[int] = (1, 1), groups: int = 1, sgd: SGDOp | AdamOp | None = None,
                 channels: Sequence[int] | None = None, scales: Sequence[int] | None = None):
        super().__init__(operands=[dy, input, lr], properties=conv_props(strides, pads, dilations, groups)
                         | grad_sgd_props(param, sgd, channels, scales))

    def conv_params(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int]:
        return ints(self.strides), ints(self.pads), ints(self.dilations), self.groups.value.data

    def verify_(self) -> None:
        _check_saved(self, self.input, "input")
        ws = self.param_shape()
        if ws is None:
            return
        _check_rank(self, ws, 4, f"the weight {self.param}")
        ys = shape_of(self.dy)
        want = conv_output_shape(self, shape_of(self.input), ws, *self.conv_params())
        if ys != want:
            raise VerifyException(f"{self.name}: a convolution of {list(shape_of(self.input))} by {self.param} "
                                  f"{list(ws)} gives {list(want)}, but dy has shape {list(ys)}")
        self.verify_update((self.rows(ws[0]),) + ws[1:])


@irdl_op_definition
class FullyConnectedWeightGradSGDOp(_GradSGDOp):
    """`train.fully_connected_weight_grad` + `train.sgd` of the weight `param` [M, K] of
    `y = x @ W^T + b`: dy [N, M], x [N, K]."""

    name = "train.fully_connected_weight_grad_sgd"
    dy = operand_def(FloatTensor)
    input = operand_def(TensorType)
    lr = operand_def(Float32Type)
    assembly_format = "$param `,` $dy `,` $input `,` $lr attr-dict `:` type($dy) `,` type($input)"

    def __init__(self, param: str | SymbolRefAttr, dy: SSAValue, input: SSAValue, lr: SSAValue, *,
                 sgd: SGDOp | AdamOp | None = None, channels: Sequence[int] | None = None,
                 scales: Sequence[int] | None = None):
        super().__init__(operands=[dy, input, lr], properties=grad_sgd_props(param, sgd, channels, scales))

    def verify_(self) -> None:
        _check_saved(self, self.input, "input")
        (n, m), (xn, k) = _check_matrix(self, self.dy, "dy"), _check_matrix(self, self.input, "the input")
        ws = self.param_shape()
        if ws is None:
            return
        if ws != (m, k) or n != xn:
            raise VerifyException(f"{self.name}: dy [{n}, {m}] and an input [{xn}, {k}] do not match "
                                  f"{self.param} {list(ws)}")
        self.verify_update((self.rows(m), k))


@irdl_op_definition
class BiasGradSGDOp(_GradSGDOp):
    """`train.bias_grad` (the sum of dy over every axis but 1) + `train.sgd` of the bias
    `param` [C]."""

    name = "train.bias_grad_sgd"
    dy = operand_def(FloatTensor)
    lr = operand_def(Float32Type)
    assembly_format = "$param `,` $dy `,` $lr attr-dict `:` type($dy)"

    def __init__(self, param: str | SymbolRefAttr, dy: SSAValue, lr: SSAValue, *, sgd: SGDOp | AdamOp | None = None,
                 channels: Sequence[int] | None = None, scales: Sequence[int] | None = None):
        super().__init__(operands=[dy, lr], properties=grad_sgd_props(param, sgd, channels, scales))

    def verify_(self) -> None:
        ys = shape_of(self.dy)
        ws = self.param_shape()
        if ws is None:
            return
        if len(ys) < 2 or ws != (ys[1],):
            raise VerifyException(f"{self.name}: dy of shape {list(ys)} (rank >= 2) sums to "
                                  f"[{ys[1] if len(ys) > 1 else '?'}], but {self.param} has shape {list(ws)}")
        self.verify_update((self.rows(ws[0]),))


Train = Dialect(
    "train",
    [
        ParamOp, LoadOp, SGDOp, AdamOp, IncrementOp,
        SoftmaxCrossEntropyOp, MSEOp,
        Conv2dInputGradOp, Conv2dWeightGradOp, BiasGradOp, ReluGradOp, ClipGradOp,
        GlobalAvgPoolGradOp, AvgPoolGradOp, MaxPoolGradOp, ReduceToShapeOp,
        ClampMaskOp, MaskGradOp, FullyConnectedInputGradOp, FullyConnectedWeightGradOp, ScaleGradOp,
        Conv2dWeightGradSGDOp, FullyConnectedWeightGradSGDOp, BiasGradSGDOp,
    ],
    [],
)
