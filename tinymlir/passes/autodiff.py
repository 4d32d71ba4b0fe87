"""`autodiff`: build `@train_step` from `@forward` by reverse-mode automatic differentiation.

Input: a module with `func.func @forward(inputs...) -> tensor<NxKxf32>` (one result, the
logits): level 0, the float `nn` dialect with conv/gemm weights and biases as
`arith.constant`; or level 1, int8 `quant` ops (after `fuse-qdq` or `quantize-ptq`) with
`quant.constant` weights and biases and dequantized logits; or already `train.load`s of
`train.param`s.

Output (level 2):
- every conv/gemm/matmul weight and bias constant becomes a module-level
  `train.param @layer<i>.weight` / `@layer<i>.bias`, `i` counting those layers in forward
  order (the numbering of the sparse-update schemes in shared/models/README.md), marked
  `trainable` per `trainable=`; `@forward` now loads them (`train.load`), so inference sees
  the trained values;
- `func.func @train_step(inputs..., %label, %lr: f32) -> f32`: the forward ops, the loss
  (`train.softmax_cross_entropy` with an `i32` label — `tensor<Nxi32>` when N > 1 — or
  `train.mse` with a target of the logits' type), the backward ops, then one optimizer
  update per trainable parameter that reaches the loss, in the order backward finishes
  their gradients; it returns the loss. Forward values the backward needs are simply SSA
  values used later (a ReLU/clip's *output* is what its gradient and the next layer's weight
  gradient use). Only values that depend on a trainable parameter get gradients, so
  backward stops at the first trainable layer.
- optimizer state as `train.param`s of zeros: `@<p>.momentum` (sgdm), `@<p>.m`, `@<p>.v` and
  the step counter `@adam.step` (adam, incremented by `train.increment` at the start of
  `@train_step`); of the param's type for a float param, float32 of its shape for a
  quantized one.

Options: `loss=cross-entropy|mse`; `optimizer=sgd|sgdm|adam` with `momentum` (0.9) and
`beta1`, `beta2`, `eps` (torch's defaults); `trainable=all|none|last:N`: mark the new params
of all, none, or the weights and biases of the last N conv/gemm/fc layers trainable
(existing `train.param`s keep their flag; quote it on the command line:
`autodiff{trainable="last:3"}`); `num-classes=N` replaces the classifier by one with N
outputs, always trainable (the paper trains the new classifier in every scheme):
- float: the last `nn.gemm`, which must produce `@forward`'s result; weight uniform in
  [-1/sqrt(K), 1/sqrt(K)] (torch's nn.Linear bound, K the input features) drawn float32
  from `numpy.random.default_rng(seed)`, bias zeros;
- int8: the `quant.fully_connected` whose `quant.dequantize` @forward returns; the same
  float weight, quantized per output channel, symmetric, with scale
  s_w[c] = CLASSIFIER_HEADROOM (8) * max|w_c| / 127 (|q| <= 16 at first: fp32 fine-tuning
  grows a head's max|w_c| 4-10x on the digits task, and the int8 weight cannot leave
  [-127, 127] s_w[c]); int32 zero bias with scale float32(s_x s_w[c]); output int8
  per-tensor, zero-point 0, scale = the larger magnitude of the old head's real output
  range / 127 (the backbone's calibrated logit range, made symmetric).
`rounding=nearest|stochastic`: how `train.sgd` rounds quantized updates; stochastic adds
one generator state per quantized trainable param, `train.param @<param>.rng : tensor<i32>`,
the k-th (in update order) starting at `seed + k * 0x9E3779B9` (mod 2^32): independent
streams, so an update's draws do not depend on the order of the updates.

Gradient rules (`VJP_RULES`): nn.conv2d -> train.conv2d_input_grad / conv2d_weight_grad /
bias_grad; nn.gemm / nn.matmul (2-D) -> nn.gemm with transposition flags (+
train.reduce_to_shape and a beta scale for C); nn.add / sub / mul / div with broadcasting ->
nn ops + train.reduce_to_shape; nn.relu / nn.clip -> train.relu_grad / train.clip_grad on the
output; pools -> train.*_pool_grad; nn.flatten / reshape -> nn.reshape; nn.transpose -> the
inverse nn.transpose; nn.batch_norm (inference, constant statistics) -> nn.mul by
scale / sqrt(var + eps), its own parameters frozen. Any other op on the gradient path is an
error naming it.

The int8 path. Forward: the quant ops, unchanged (exact int8 semantics). Gradients are
float32 w.r.t. the REAL values s (q - z) of activations and params. A clamping op (quant
conv2d / fully_connected / add / global_avg_pool / quantize / requantize) on the gradient
path saves `train.clamp_mask` right after itself in the forward — 1 bit per output element:
its pre-saturation value round(real / s_y) + z_y lay in [act_min, act_max] — and its
backward starts with `train.mask_grad` (the straight-through gradient of round-and-clamp;
the ReLU / ReLU6 folded into the range included). Then: quant.conv2d -> the conv grad ops,
quant.fully_connected -> train.fully_connected_input_grad / _weight_grad / bias_grad, the
grad ops reading the saved int8 input and weight as real values x = s_x (q - z_x),
W = s_w q; quant.add -> dy to both inputs; quant.global_avg_pool -> dy / HW broadcast;
quant.dequantize -> identity; quant.quantize / requantize -> dy inside the range. Why a
saved bit mask rather than recomputing the clamp in the backward: the recomputation needs
the op's int8 input (and weights) alive until the backward, 8 bits per input element for
every layer on the gradient path, even bias-only ones; the mask costs 1 bit per output
element and the backward of add, pooling and bias-only layers then needs nothing else.
Updates of quantized params: `train.scale_grad {exponent = 1}` turns G_W into the gradient
w.r.t. the stored integers, G_q = s G_W, which `train.sgd {rounding}` applies to q
(q' = clamp(round(q - lr G_q)), int8 [-127, 127], int32 [-(2^31-1), 2^31-1]); `qas` then
scales G_q by s^-2. `optimizer=sgdm|adam` on a quantized param: `train.sgd {momentum,
velocity}` / `train.adam` with the same G_q, float32 state, and the same rounding and
saturation of q (semantics in the op docstrings).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects import arith, func
from xdsl.dialects.builtin import (
    AnyFloat,
    DenseIntOrFPElementsAttr,
    FunctionType,
    ModuleOp,
    StringAttr,
    TensorType,
    f32,
    i32,
)
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.traits import SymbolOpInterface
from xdsl.utils.exceptions import PassFailedException

from tinymlir.dialects import nn, quant, train
from tinymlir.dialects.nn import ints, shape_of
from tinymlir.dialects.quant import UniformQuantizedType, qtype
from tinymlir.interpreter.nn_impls import dense_to_numpy

LOSSES = ("cross-entropy", "mse")
OPTIMIZERS = ("sgd", "sgdm", "adam")
ROUNDINGS = train.ROUNDINGS
ADAM_STEP = "adam.step"
RNG_STREAM_STEP = 0x9E3779B9  # 2^32 / golden ratio: the start of parameter k's stream is seed + k * this
FLOAT_LAYER_OPS = (nn.Conv2dOp, nn.GemmOp, nn.MatMulOp)
QUANT_LAYER_OPS = (quant.Conv2dOp, quant.FullyConnectedOp)
LAYER_OPS = FLOAT_LAYER_OPS + QUANT_LAYER_OPS
CLASSIFIER_HEADROOM = 8.0
"""A new int8 classifier's weight scale is HEADROOM times max|w_c| / 127 of its initial
weights: they start at |q| <= 127 / HEADROOM and can grow HEADROOM-fold while training."""


def parse_trainable(value: str) -> int | None:
    """The number of trailing layers `trainable=` makes trainable: None for all, 0 for none."""
    if value == "all":
        return None
    if value == "none":
        return 0
    if value.startswith("last:") and value[5:].isdigit() and int(value[5:]) > 0:
        return int(value[5:])
    raise PassFailedException(f"trainable={value} is not one of all, none, last:N (N > 0)")


def grad_type(value: SSAValue) -> TensorType:
    """The type of the gradient of `value`: float32 real values for a quantized tensor."""
    t = value.type
    assert isinstance(t, TensorType)
    if isinstance(t.element_type, UniformQuantizedType):
        return TensorType(f32, t.get_shape())
    return t


def find_func(module: ModuleOp, name: str) -> func.FuncOp | None:
    for op in module.body.block.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == name:
            return op
    return None


def _float_tensor(value: SSAValue) -> bool:
    t = value.type
    return isinstance(t, TensorType) and isinstance(t.element_type, AnyFloat)


def _constant(data: np.ndarray, type: TensorType) -> arith.ConstantOp:
    return arith.ConstantOp(train.param_value_attr(data, type), type)


# -- parameters -----------------------------------------------------------------------
class Params:
    """The module's `train.param` symbols; new ones go before `@forward`, in creation order."""

    def __init__(self, module: ModuleOp, anchor: Operation):
        self.module = module
        self.anchor = anchor
        self.ops: dict[str, train.ParamOp] = {
            op.sym_name.data: op for op in module.body.block.ops if isinstance(op, train.ParamOp)
        }
        self.taken: set[str] = set()
        for op in module.body.block.ops:
            trait = op.get_trait(SymbolOpInterface)
            if trait is not None and (sym := trait.get_sym_attr_name(op)) is not None:
                self.taken.add(sym.data)
        self.adam_step: str | None = None
        self.rng_streams = 0  # stochastic rounding generators made so far
        self.last_state: dict[str, train.ParamOp] = {}

    def add(self, name: str, type: TensorType, value: np.ndarray | DenseIntOrFPElementsAttr,
            trainable: bool, after: str | None = None) -> str:
        """Add a param named `name` (made unique) before `@forward`, or right after param `after`."""
        unique, k = name, 1
        while unique in self.taken:
            unique, k = f"{name}_{k}", k + 1
        op = train.ParamOp(unique, type, value, trainable)
        if after is None:
            self.module.body.block.insert_op_before(op, self.anchor)
        else:
            self.module.body.block.insert_op_after(op, self.last_state.get(after, self.ops[after]))
            self.last_state[after] = op
        self.ops[unique] = op
        self.taken.add(unique)
        return unique

    def zeros_like(self, name: str, suffix: str) -> str:
        """Optimizer state for param `name`: zeros of its type, placed after it."""
        t = self.ops[name].type
        return self.add(f"{name}.{suffix}", t, np.zeros(tuple(t.get_shape()), dtype=np.float32), False, after=name)

    def float_state(self, name: str, suffix: str) -> str:
        """Optimizer state for the quantized param `name`: float32 zeros of its shape, after it."""
        shape = tuple(self.ops[name].type.get_shape())
        return self.add(f"{name}.{suffix}", TensorType(f32, shape), np.zeros(shape, dtype=np.float32), False,
                        after=name)


def _layer_operands(op: Operation) -> list[tuple[str, SSAValue]]:
    if isinstance(op, nn.Conv2dOp | quant.Conv2dOp | quant.FullyConnectedOp):
        return [("weight", op.weight)] + ([("bias", op.bias)] if op.bias is not None else [])
    if isinstance(op, nn.GemmOp):
        return [("weight", op.b)] + ([("bias", op.c)] if op.c is not None else [])
    assert isinstance(op, nn.MatMulOp)
    return [("weight", op.rhs)]


def _is_weight_constant(op: Operation) -> bool:
    """A float `arith.constant` tensor or a `quant.constant`: a layer parameter."""
    if isinstance(op, quant.ConstantOp):
        return True
    return (isinstance(op, arith.ConstantOp) and isinstance(op.value, DenseIntOrFPElementsAttr)
            and _float_tensor(op.result))


def make_params(forward: func.FuncOp, params: Params, trainable_last: int | None, always: set[Operation]) -> None:
    """Turn the weight/bias constants (float or quantized) of the layers of `forward` into
    params + loads, trainable for the last `trainable_last` layers (None: all); the
    constants in `always` (a new classifier's) become trainable whatever it says."""
    layers = [op for op in forward.walk() if isinstance(op, LAYER_OPS)]
    first = 0 if trainable_last is None else len(layers) - trainable_last
    for index, layer in enumerate(layers):
        for role, value in _layer_operands(layer):
            const = value.owner
            if not isinstance(const, Operation) or not _is_weight_constant(const):
                continue  # already a param, or a computed operand: not a parameter
            assert isinstance(const.results[0].type, TensorType)
            value_attr = const.value
            assert isinstance(value_attr, DenseIntOrFPElementsAttr)
            name = params.add(f"layer{index}.{role}", const.results[0].type, value_attr,
                              index >= first or const in always)
            load = train.LoadOp(name, const.results[0].type)
            block = const.parent_block()
            assert block is not None
            block.insert_op_before(load, const)
            const.results[0].replace_all_uses_with(load.result)
            const.detach()
            const.erase()


def replace_classifier(forward: func.FuncOp, num_classes: int, seed: int) -> set[Operation]:
    """Replace the classifier by one with `num_classes` outputs; returns its new weight and
    bias constants. The classifier is the quant.fully_connected whose dequantized result
    @forward returns, else the last nn.gemm, which must produce @forward's result."""
    ret = forward.get_return_op()
    if ret is not None and len(ret.arguments) == 1:
        deq = ret.arguments[0].owner
        if isinstance(deq, quant.DequantizeOp) and isinstance(deq.input.owner, quant.FullyConnectedOp):
            return replace_quant_classifier(forward, deq, deq.input.owner, num_classes, seed)
    gemms = [op for op in forward.walk() if isinstance(op, nn.GemmOp)]
    ret = forward.get_return_op()
    if not gemms or ret is None or gemms[-1].result not in ret.arguments:
        raise PassFailedException(
            "num-classes needs the classifier, the last nn.gemm, to produce @forward's result")
    old = gemms[-1]
    a_shape = shape_of(old.a)
    m, k = a_shape[::-1] if old.trans_a.value.data else a_shape
    trans_b = old.trans_b.value.data
    w_type = TensorType(f32, (num_classes, k) if trans_b else (k, num_classes))
    bound = 1.0 / np.sqrt(k)
    w = np.random.default_rng(seed).uniform(-bound, bound, size=tuple(w_type.get_shape())).astype(np.float32)
    c_shape = (num_classes,) if old.c is None or len(shape_of(old.c)) == 1 else (1, num_classes)
    c_type = TensorType(f32, c_shape)
    w_const, c_const = _constant(w, w_type), _constant(np.zeros(c_shape, dtype=np.float32), c_type)
    new = nn.GemmOp(old.a, w_const.result, c_const.result, TensorType(f32, (m, num_classes)),
                    alpha=old.alpha.value.data, beta=old.beta.value.data if old.c is not None else 1.0,
                    trans_a=old.trans_a.value.data, trans_b=trans_b)
    block = old.parent_block()
    assert block is not None
    block.insert_ops_before([w_const, c_const, new], old)
    old.result.replace_all_uses_with(new.result)
    dead = [v.owner for v in old.operands[1:]]
    old.detach()
    old.erase()
    for op in dead:  # the old classifier's constants, unless something else uses them
        if isinstance(op, arith.ConstantOp) and op.result.first_use is None:
            op.detach()
            op.erase()
    forward.update_function_type()
    return {w_const, c_const}


def classifier_init(num_classes: int, k: int, seed: int) -> np.ndarray:
    """A new classifier's float32 weight [num_classes, k]: uniform in [-1/sqrt(k), 1/sqrt(k)]
    (torch's nn.Linear bound) from numpy.random.default_rng(seed)."""
    bound = 1.0 / np.sqrt(k)
    return np.random.default_rng(seed).uniform(-bound, bound, size=(num_classes, k)).astype(np.float32)


def quantize_classifier(w: np.ndarray, input_scale: float) -> tuple[np.ndarray, UniformQuantizedType,
                                                                       UniformQuantizedType]:
    """Per-channel symmetric int8 weights with CLASSIFIER_HEADROOM, and the int32 bias type
    (scale float32(s_x * s_w[c]), zero-point 0)."""
    amax = np.abs(w.astype(np.float64)).max(axis=1)
    scale = (np.where(amax > 0, amax, 1.0) * CLASSIFIER_HEADROOM / 127).astype(np.float32).astype(np.float64)
    w_q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    n = len(scale)
    w_type = UniformQuantizedType("i8", scale.tolist(), [0] * n, axis=0)
    b_scale = (np.float64(input_scale) * scale).astype(np.float32).astype(np.float64)
    return w_q, w_type, UniformQuantizedType("i32", b_scale.tolist(), [0] * n, axis=0)


def classifier_output_type(old: UniformQuantizedType, lo: int, hi: int) -> UniformQuantizedType:
    """A new int8 classifier's logits: symmetric (zero-point 0), covering the larger
    magnitude of the old classifier's real output range s (q - z), q in [lo, hi] (the
    backbone's calibrated logit range): logits saturate at the same bound."""
    r = max(abs(old.scale * (lo - old.zero_point)), abs(old.scale * (hi - old.zero_point)))
    return UniformQuantizedType("i8", float(np.float32(r / 127)), 0)


def replace_quant_classifier(forward: func.FuncOp, deq: quant.DequantizeOp, old: quant.FullyConnectedOp,
                             num_classes: int, seed: int) -> set[Operation]:
    """The int8 classifier: weights from `classifier_init`, quantized by
    `quantize_classifier`, zero bias, output by `classifier_output_type`; then dequantized."""
    if old.result.get_user_of_unique_use() is not deq:
        raise PassFailedException("num-classes: the int8 classifier's result must only be dequantized")
    n, k = shape_of(old.input)
    w_q, w_qt, b_qt = quantize_classifier(classifier_init(num_classes, k, seed), qtype(old.input).scale)
    w_const = quant.ConstantOp(w_q, TensorType(w_qt, (num_classes, k)))
    b_const = quant.ConstantOp(np.zeros(num_classes, dtype=np.int32), TensorType(b_qt, (num_classes,)))
    y_type = TensorType(classifier_output_type(qtype(old.result), *old.activation_range()), (n, num_classes))
    new = quant.FullyConnectedOp(old.input, w_const.result, b_const.result, y_type)
    new_deq = quant.DequantizeOp(new.result)
    block = old.parent_block()
    assert block is not None
    block.insert_ops_before([w_const, b_const, new, new_deq], deq)
    deq.result.replace_all_uses_with(new_deq.result)
    dead = [v.owner for v in old.operands[1:]]
    for op in (deq, old):
        op.detach()
        op.erase()
    for op in dead:
        if isinstance(op, Operation) and op.results[0].first_use is None:
            op.detach()
            op.erase()
    forward.update_function_type()
    return {w_const, b_const}


# -- reverse mode ---------------------------------------------------------------------
class Backward:
    """Emits backward ops at the end of a block and accumulates gradients per value."""

    def __init__(self, block: Block, needs: set[SSAValue]):
        self.block = block
        self.needs = needs
        self.grads: dict[SSAValue, SSAValue] = {}

    def emit(self, op: Operation) -> SSAValue:
        self.block.add_op(op)
        return op.results[0]

    def add(self, value: SSAValue, grad: SSAValue) -> None:
        if value not in self.needs:
            return
        gt = grad_type(value)
        if grad.type != gt:
            grad = self.reduce(grad, gt)
        if value in self.grads:
            grad = self.emit(nn.AddOp(self.grads[value], grad, gt))
        self.grads[value] = grad

    def reduce(self, grad: SSAValue, type: TensorType) -> SSAValue:
        """Sum a broadcast gradient down to `type` (the backward of broadcasting)."""
        if shape_of(grad) == tuple(type.get_shape()):
            return grad
        return self.emit(train.ReduceToShapeOp(grad, type))

    def scale(self, grad: SSAValue, factor: float) -> SSAValue:
        c = self.emit(_constant(np.array(factor, dtype=np.float32), TensorType(f32, ())))
        return self.emit(nn.MulOp(grad, c, grad.type))

    def wants(self, value: SSAValue | None) -> bool:
        return value is not None and value in self.needs

    def masked(self, op: Operation, dy: SSAValue) -> SSAValue:
        """`dy` through the clamp of quant op `op`: the forward saves its `train.clamp_mask`
        right after `op`; the backward applies it."""
        mask = train.ClampMaskOp(op.results[0])
        block = op.parent_block()
        assert block is not None
        block.insert_op_after(mask, op)
        return self.emit(train.MaskGradOp(dy, mask.result))


def _vjp_conv2d(bw: Backward, op: nn.Conv2dOp, dy: SSAValue) -> None:
    kw = {"strides": ints(op.strides), "pads": ints(op.pads), "dilations": ints(op.dilations),
          "groups": op.groups.value.data}
    if bw.wants(op.input):
        bw.add(op.input, bw.emit(train.Conv2dInputGradOp(dy, op.weight, op.input.type, **kw)))
    if bw.wants(op.weight):
        bw.add(op.weight, bw.emit(train.Conv2dWeightGradOp(dy, op.input, op.weight.type, **kw)))
    if bw.wants(op.bias):
        assert op.bias is not None
        bw.add(op.bias, bw.emit(train.BiasGradOp(dy, op.bias.type)))


def _vjp_gemm(bw: Backward, op: nn.GemmOp, dy: SSAValue) -> None:
    ta, tb, alpha = op.trans_a.value.data, op.trans_b.value.data, op.alpha.value.data
    if bw.wants(op.a):
        g = (nn.GemmOp(op.b, dy, None, op.a.type, alpha=alpha, trans_a=tb, trans_b=True) if ta
             else nn.GemmOp(dy, op.b, None, op.a.type, alpha=alpha, trans_b=not tb))
        bw.add(op.a, bw.emit(g))
    if bw.wants(op.b):
        g = (nn.GemmOp(dy, op.a, None, op.b.type, alpha=alpha, trans_a=True, trans_b=ta) if tb
             else nn.GemmOp(op.a, dy, None, op.b.type, alpha=alpha, trans_a=not ta))
        bw.add(op.b, bw.emit(g))
    if bw.wants(op.c):
        assert op.c is not None and isinstance(op.c.type, TensorType)
        g = bw.reduce(dy, op.c.type)
        if op.beta.value.data != 1.0:
            g = bw.scale(g, op.beta.value.data)
        bw.add(op.c, g)


def _vjp_matmul(bw: Backward, op: nn.MatMulOp, dy: SSAValue) -> None:
    if len(shape_of(op.lhs)) != 2 or len(shape_of(op.rhs)) != 2:
        raise PassFailedException("nn.matmul: only 2-D operands are differentiated")
    if bw.wants(op.lhs):
        bw.add(op.lhs, bw.emit(nn.GemmOp(dy, op.rhs, None, op.lhs.type, trans_b=True)))
    if bw.wants(op.rhs):
        bw.add(op.rhs, bw.emit(nn.GemmOp(op.lhs, dy, None, op.rhs.type, trans_a=True)))


def _vjp_add(bw: Backward, op: nn.AddOp, dy: SSAValue) -> None:
    bw.add(op.lhs, dy)
    bw.add(op.rhs, dy)


def _vjp_sub(bw: Backward, op: nn.SubOp, dy: SSAValue) -> None:
    bw.add(op.lhs, dy)
    if bw.wants(op.rhs):
        assert isinstance(op.rhs.type, TensorType)
        bw.add(op.rhs, bw.scale(bw.reduce(dy, op.rhs.type), -1.0))


def _vjp_mul(bw: Backward, op: nn.MulOp, dy: SSAValue) -> None:
    if bw.wants(op.lhs):
        bw.add(op.lhs, bw.emit(nn.MulOp(dy, op.rhs, dy.type)))
    if bw.wants(op.rhs):
        bw.add(op.rhs, bw.emit(nn.MulOp(dy, op.lhs, dy.type)))


def _vjp_div(bw: Backward, op: nn.DivOp, dy: SSAValue) -> None:
    if bw.wants(op.lhs):
        bw.add(op.lhs, bw.emit(nn.DivOp(dy, op.rhs, dy.type)))
    if bw.wants(op.rhs):  # d(a/b)/db = -y/b
        t = bw.emit(nn.DivOp(bw.emit(nn.MulOp(dy, op.result, dy.type)), op.rhs, dy.type))
        assert isinstance(op.rhs.type, TensorType)
        bw.add(op.rhs, bw.scale(bw.reduce(t, op.rhs.type), -1.0))


def _vjp_relu(bw: Backward, op: nn.ReluOp, dy: SSAValue) -> None:
    bw.add(op.input, bw.emit(train.ReluGradOp(dy, op.result)))


def _vjp_clip(bw: Backward, op: nn.ClipOp, dy: SSAValue) -> None:
    bw.add(op.input, bw.emit(train.ClipGradOp(dy, op.result, op.min.value.data, op.max.value.data)))


def _vjp_global_avg_pool(bw: Backward, op: nn.GlobalAvgPoolOp, dy: SSAValue) -> None:
    bw.add(op.input, bw.emit(train.GlobalAvgPoolGradOp(dy, grad_type(op.input))))


def _vjp_avg_pool(bw: Backward, op: nn.AvgPoolOp, dy: SSAValue) -> None:
    bw.add(op.input, bw.emit(train.AvgPoolGradOp(dy, op.input.type, ints(op.kernel), ints(op.strides),
                                                 ints(op.pads), op.count_include_pad.value.data)))


def _vjp_max_pool(bw: Backward, op: nn.MaxPoolOp, dy: SSAValue) -> None:
    bw.add(op.input, bw.emit(train.MaxPoolGradOp(dy, op.input, grad_type(op.input), ints(op.kernel),
                                                 ints(op.strides), ints(op.pads))))


def _vjp_reshape(bw: Backward, op: nn.FlattenOp | nn.ReshapeOp, dy: SSAValue) -> None:
    bw.add(op.input, bw.emit(nn.ReshapeOp(dy, grad_type(op.input))))


def _vjp_transpose(bw: Backward, op: nn.TransposeOp, dy: SSAValue) -> None:
    perm = ints(op.perm)
    inverse = [perm.index(i) for i in range(len(perm))]
    bw.add(op.input, bw.emit(nn.TransposeOp(dy, grad_type(op.input), inverse)))


def _vjp_batch_norm(bw: Backward, op: nn.BatchNormOp, dy: SSAValue) -> None:
    if any(bw.wants(v) for v in (op.scale, op.bias, op.mean, op.var)):
        raise PassFailedException("nn.batch_norm: its own parameters cannot be trained (fold it, or freeze them)")
    consts = []
    for v in (op.scale, op.var):
        if not (isinstance(v.owner, arith.ConstantOp) and isinstance(v.owner.value, DenseIntOrFPElementsAttr)):
            raise PassFailedException("nn.batch_norm: the gradient needs constant scale and variance")
        consts.append(dense_to_numpy(v.owner.value).astype(np.float64))
    eps = float(np.float32(op.epsilon.value.data))
    rank = len(shape_of(op.input))
    factor = (consts[0] / np.sqrt(consts[1] + eps)).reshape((1, -1) + (1,) * (rank - 2))
    c = bw.emit(_constant(factor.astype(np.float32), TensorType(f32, factor.shape)))
    bw.add(op.input, bw.emit(nn.MulOp(dy, c, dy.type)))


# Quantized ops: gradients are float32 w.r.t. the real values s (q - z). A clamping op
# first masks dy with its saved train.clamp_mask (the straight-through gradient of
# round-and-clamp: 1 where the pre-saturation value lay in [act_min, act_max]); then the
# real-valued rules apply, the grad ops dequantizing the saved int8 operands themselves.
def _vjp_quant_conv2d(bw: Backward, op: quant.Conv2dOp, dy: SSAValue) -> None:
    dy = bw.masked(op, dy)
    kw = {"strides": ints(op.strides), "pads": ints(op.pads), "dilations": ints(op.dilations),
          "groups": op.groups.value.data}
    if bw.wants(op.input):
        bw.add(op.input, bw.emit(train.Conv2dInputGradOp(dy, op.weight, grad_type(op.input), **kw)))
    if bw.wants(op.weight):
        bw.add(op.weight, bw.emit(train.Conv2dWeightGradOp(dy, op.input, grad_type(op.weight), **kw)))
    if bw.wants(op.bias):
        assert op.bias is not None
        bw.add(op.bias, bw.emit(train.BiasGradOp(dy, grad_type(op.bias))))


def _vjp_quant_fully_connected(bw: Backward, op: quant.FullyConnectedOp, dy: SSAValue) -> None:
    dy = bw.masked(op, dy)
    if bw.wants(op.input):
        bw.add(op.input, bw.emit(train.FullyConnectedInputGradOp(dy, op.weight, grad_type(op.input))))
    if bw.wants(op.weight):
        bw.add(op.weight, bw.emit(train.FullyConnectedWeightGradOp(dy, op.input, grad_type(op.weight))))
    if bw.wants(op.bias):
        assert op.bias is not None
        bw.add(op.bias, bw.emit(train.BiasGradOp(dy, grad_type(op.bias))))


def _vjp_quant_add(bw: Backward, op: quant.AddOp, dy: SSAValue) -> None:
    dy = bw.masked(op, dy)
    bw.add(op.lhs, dy)
    bw.add(op.rhs, dy)


def _vjp_quant_global_avg_pool(bw: Backward, op: quant.GlobalAvgPoolOp, dy: SSAValue) -> None:
    bw.add(op.input, bw.emit(train.GlobalAvgPoolGradOp(bw.masked(op, dy), grad_type(op.input))))


def _vjp_quant_requantize(bw: Backward, op: quant.QuantizeOp | quant.RequantizeOp, dy: SSAValue) -> None:
    bw.add(op.input, bw.masked(op, dy))  # round-and-clamp: straight through inside the range


def _vjp_dequantize(bw: Backward, op: quant.DequantizeOp, dy: SSAValue) -> None:
    bw.add(op.input, dy)  # the identity on real values


VJP_RULES: dict[type[Operation], Callable[[Backward, Operation, SSAValue], None]] = {
    nn.Conv2dOp: _vjp_conv2d, nn.GemmOp: _vjp_gemm, nn.MatMulOp: _vjp_matmul,
    nn.AddOp: _vjp_add, nn.SubOp: _vjp_sub, nn.MulOp: _vjp_mul, nn.DivOp: _vjp_div,
    nn.ReluOp: _vjp_relu, nn.ClipOp: _vjp_clip,
    nn.GlobalAvgPoolOp: _vjp_global_avg_pool, nn.AvgPoolOp: _vjp_avg_pool, nn.MaxPoolOp: _vjp_max_pool,
    nn.FlattenOp: _vjp_reshape, nn.ReshapeOp: _vjp_reshape, nn.TransposeOp: _vjp_transpose,
    nn.BatchNormOp: _vjp_batch_norm,
    quant.Conv2dOp: _vjp_quant_conv2d, quant.FullyConnectedOp: _vjp_quant_fully_connected,
    quant.AddOp: _vjp_quant_add, quant.GlobalAvgPoolOp: _vjp_quant_global_avg_pool,
    quant.QuantizeOp: _vjp_quant_requantize, quant.RequantizeOp: _vjp_quant_requantize,
    quant.DequantizeOp: _vjp_dequantize,
}  # type: ignore[dict-item]


def backward(block: Block, forward_ops: list[Operation], seed: tuple[SSAValue, SSAValue],
             trainable: dict[SSAValue, str]) -> list[tuple[str, SSAValue]]:
    """Append the backward of `forward_ops` to `block`, starting from d loss / d `seed[0]` =
    `seed[1]`; returns (param name, gradient) in the order the gradients become final."""
    needs = set(trainable)
    for op in forward_ops:
        if any(v in needs for v in op.operands):
            needs.update(op.results)
    bw = Backward(block, needs)
    bw.grads[seed[0]] = seed[1]
    done: dict[str, SSAValue] = {}
    for op in reversed(forward_ops):
        if isinstance(op, train.LoadOp):
            if op.result in trainable and op.result in bw.grads:
                name = trainable[op.result]
                g = bw.grads[op.result]
                done[name] = bw.emit(nn.AddOp(done.pop(name), g, g.type)) if name in done else g
            continue
        grads = [r for r in op.results if r in bw.grads]
        if not grads:
            continue
        rule = VJP_RULES.get(type(op))
        if rule is None or len(op.results) != 1:
            raise PassFailedException(
                f"no gradient rule for '{op.name}', which lies between a trainable parameter and the loss")
        rule(bw, op, bw.grads[grads[0]])
    return list(done.items())


# -- the pass -------------------------------------------------------------------------
@dataclass(frozen=True)
class AutodiffPass(ModulePass):
    """Build `@train_step` (forward, loss, backward, optimizer updates) from `@forward`,
    with parameters and optimizer state as `train.param` symbols. See the module docstring."""

    name = "autodiff"

    loss: str = "cross-entropy"
    optimizer: str = "sgd"
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    trainable: str = "all"
    num_classes: int | None = None
    seed: int = 0
    rounding: str = "nearest"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for option, value, allowed in (("loss", self.loss, LOSSES), ("optimizer", self.optimizer, OPTIMIZERS),
                                       ("rounding", self.rounding, ROUNDINGS)):
            if value not in allowed:
                raise PassFailedException(f"{option}={value} is not one of {', '.join(allowed)}")
        trainable_last = parse_trainable(self.trainable)
        if self.num_classes is not None and self.num_classes < 1:
            raise PassFailedException(f"num-classes must be positive, got {self.num_classes}")
        forward = find_func(op, "forward")
        if forward is None:
            raise PassFailedException("the module has no func.func @forward")
        if find_func(op, "train_step") is not None:
            raise PassFailedException("the module already has a @train_step")
        if len(forward.function_type.outputs) != 1:
            raise PassFailedException("@forward must return exactly one value (the logits)")
        if trainable_last == 0 and self.num_classes is None and not any(
                isinstance(p, train.ParamOp) and p.is_trainable for p in op.body.block.ops):
            raise PassFailedException("nothing to train: trainable=none needs num-classes or trainable train.params")

        params = Params(op, forward)
        classifier = set() if self.num_classes is None else replace_classifier(forward, self.num_classes, self.seed)
        make_params(forward, params, trainable_last, classifier)
        step = self.build_train_step(forward, params)
        op.body.block.insert_op_after(step, forward)

    def build_train_step(self, forward: func.FuncOp, params: Params) -> func.FuncOp:
        step = forward.clone()
        step.sym_name = StringAttr("train_step")
        block = step.body.block
        ret = step.get_return_op()
        assert ret is not None
        logits = ret.arguments[0]
        if not (_float_tensor(logits) and len(shape_of(logits)) == 2):
            raise PassFailedException(f"@forward must return [N, K] float logits, got {logits.type}")
        n = shape_of(logits)[0]
        if self.loss == "cross-entropy":
            label_type = i32 if n == 1 else TensorType(i32, (n,))
        else:
            label_type = logits.type
        label = block.insert_arg(label_type, len(block.args))
        lr = block.insert_arg(f32, len(block.args))
        label.name_hint, lr.name_hint = "label" if self.loss == "cross-entropy" else "target", "lr"
        ret.detach()
        ret.erase()
        forward_ops = list(block.ops)

        loss_op = (train.SoftmaxCrossEntropyOp(logits, label) if self.loss == "cross-entropy"
                   else train.MSEOp(logits, label))
        block.add_op(loss_op)
        loss_op.results[0].name_hint = "loss"
        trainable = {o.result: o.param.root_reference.data for o in forward_ops
                     if isinstance(o, train.LoadOp) and params.ops[o.param.root_reference.data].is_trainable}
        grads = backward(block, forward_ops, (logits, loss_op.results[1]), trainable)
        if not grads:
            raise PassFailedException("nothing to train: no trainable parameter reaches the loss")
        for name, g in grads:
            block.add_op(self.update(name, g, lr, params, block))
        block.add_op(func.ReturnOp(loss_op.results[0]))
        step.function_type = FunctionType.from_lists([a.type for a in block.args], [f32])
        return step

    def _adam_step(self, params: Params, block: Block) -> str:
        if params.adam_step is None:
            params.adam_step = params.add(ADAM_STEP, TensorType(i32, ()), np.zeros((), dtype=np.int32), False)
            assert block.first_op is not None
            block.insert_op_before(train.IncrementOp(params.adam_step), block.first_op)
        return params.adam_step

    def update(self, name: str, grad: SSAValue, lr: SSAValue, params: Params, block: Block) -> Operation:
        if params.ops[name].quantized_type is not None:
            # The chain rule to the stored integers: d loss / d q = s * d loss / d W.
            scaled = train.ScaleGradOp(grad, name, 1)
            block.add_op(scaled)
            rng = None
            if self.rounding == "stochastic":
                # one generator per parameter, so updates stay independent (reorder-update
                # may move and fuse them); the k-th starts k golden-ratio steps from the seed
                start = (self.seed + params.rng_streams * RNG_STREAM_STEP) & 0xFFFFFFFF
                params.rng_streams += 1
                rng = params.add(f"{name}.rng", TensorType(i32, ()),
                                 np.array(start, dtype=np.uint32).view(np.int32), False, after=name)
            if self.optimizer == "sgdm":
                return train.SGDOp(name, scaled.result, lr, momentum=self.momentum,
                                   velocity=params.float_state(name, "momentum"), rounding=self.rounding, rng=rng)
            if self.optimizer == "adam":
                return train.AdamOp(name, scaled.result, lr, m=params.float_state(name, "m"),
                                    v=params.float_state(name, "v"), step=self._adam_step(params, block),
                                    beta1=self.beta1, beta2=self.beta2, eps=self.eps, rounding=self.rounding, rng=rng)
            return train.SGDOp(name, scaled.result, lr, rounding=self.rounding, rng=rng)
        if self.optimizer == "sgd":
            return train.SGDOp(name, grad, lr)
        if self.optimizer == "sgdm":
            return train.SGDOp(name, grad, lr, momentum=self.momentum, velocity=params.zeros_like(name, "momentum"))
        return train.AdamOp(name, grad, lr, m=params.zeros_like(name, "m"), v=params.zeros_like(name, "v"),
                            step=self._adam_step(params, block), beta1=self.beta1, beta2=self.beta2, eps=self.eps)
