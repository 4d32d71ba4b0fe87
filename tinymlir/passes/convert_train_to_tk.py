"""`convert-train-to-tk`: lower the int8 backward pass and optimizer to tinymlir's own
training kernels (the `tk` dialect), NHWC, ready for `convert-layout` and
`convert-quant-to-cmsisnn`.

Run it on the training level of an int8 model, after `reorder-update` (every update
fused: `train.*_grad_sgd`), and before the forward lowering:

    ...,reorder-update,convert-train-to-tk,convert-layout,convert-quant-to-cmsisnn

What it does:
1. Convolution weight params move to CMSIS-NN's layout (OHWI, depthwise [1, KH, KW, C])
   with their per-channel axis; each `train.load` of one reads the new layout and hands
   the old one on through an `nn.transpose`, which `convert-layout` absorbs.
2. Each train op becomes its tk op on NHWC data, reading NCHW values through
   `nn.transpose` adaptors (cancelled pairwise here and by the later passes):
   clamp_mask -> output_mask (the act range of the producer), mask_grad, softmax CE,
   global average pool, conv / depthwise / fully connected input gradients, and the
   fused weight and bias updates (the param's channel factors `s^e` of `scales`
   multiplied into one float32 `factor` per channel; `x_offset`, `x_scale` of the
   saved input). A float `nn.add` of gradients becomes `tk.add`.

Meaning. The interpreter runs the tk ops with the C kernels' float32 arithmetic
(`tinymlir/interpreter/tk_math.py`) instead of the train ops' float64; and a gradient
mask is read from the op's int8 output (`act_min < y < act_max`) instead of recomputed
from its pre-clamp value, so an output whose real value rounds exactly onto a bound of
the range passes no gradient (PyTorch's convention for ReLU and ReLU6: a ReLU output equal
to its zero point, which the training level lets through, is frequent). So this is a
different, equally valid straight-through estimator, not the same numbers: after one
MCUNet-5fps step (99kb scheme, after the whole lowering, whose fixed-point forward also
moves activations by up to 1 LSB) 34,028 of the 470,834 param elements differ from the
training level's. The C agrees with the interpreter at this level bit for bit
(tests/test_train_c.py).

Optimizers: the fused ops' momentum SGD (`momentum`, `velocity`) and Adam (`beta1`,
`beta2`, `eps`, `m`, `v`, `step`) go onto the tk ops (the kernels' `*_opt` variants,
float32 arithmetic of tk.h). Their float32 state params take the layout of the C
kernels' update index: the rows of the updated channels only (a state param of the
whole weight's shape is cut to them: memory for what trains), a conv weight's in OHWI
like the weight, a depthwise weight's [1, KH, KW, n_sel]. `train.increment` (Adam's step
counter) stays and becomes one C statement.

Not supported (the pass fails naming the op): float models, grouped (non-depthwise)
convolutions, unfused `train.sgd` / `train.adam`, weights with non-zero zero points,
gradients of ops without a tk kernel (max/avg pool, pad, concat, ...), batch > 1 losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import Float32Type, ModuleOp, TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.transforms.dead_code_elimination import dce
from xdsl.utils.exceptions import PassFailedException

from tinymlir.dialects import nn, quant, tk, train
from tinymlir.dialects.nn import ints, shape_of
from tinymlir.dialects.quant import UniformQuantizedType
from tinymlir.interpreter.nn_impls import dense_to_numpy
from tinymlir.passes.convert_layout import (
    OIHW_TO_1HWC,
    TO_NCHW,
    TO_NHWC,
    inverse,
    moves_no_data,
    nhwc_input,
    permuted_weight,
    transposed_type,
)
from tinymlir.passes.convert_quant_to_cmsisnn import FoldTransposePair


def _fail(op: Operation, why: str) -> PassFailedException:
    hint = f" (%{op.results[0].name_hint})" if op.results and op.results[0].name_hint else ""
    return PassFailedException(f"convert-train-to-tk: cannot lower '{op.name}'{hint}: {why}")


def _qtype(value: SSAValue, op: Operation, what: str) -> UniformQuantizedType:
    t = value.type
    et = t.element_type if isinstance(t, TensorType) else None
    if not isinstance(et, UniformQuantizedType) or et.storage.width.data != 8:
        raise _fail(op, f"the {what} must be an int8 quantized tensor, got {t} (the C backend trains int8 models)")
    return et


def _is_f32(value: SSAValue) -> bool:
    return isinstance(value.type, TensorType) and isinstance(value.type.element_type, Float32Type)


def _channel_scales(qt: UniformQuantizedType, channels: int) -> np.ndarray:
    return np.broadcast_to(qt.scale_array(), (channels,))


def _weight_scales(w: SSAValue, op: Operation, channels: int) -> np.ndarray:
    qt = _qtype(w, op, "weight")
    if np.any(qt.zp_array() != 0):
        raise _fail(op, "the weight has a non-zero zero point")
    return _channel_scales(qt, channels)


# -- NHWC views ---------------------------------------------------------------------------
def nhwc(value: SSAValue, user: Operation) -> tuple[list[Operation], SSAValue]:
    """`value` NHWC: a 4-D NCHW value through an adaptor; other ranks as they are."""
    if len(shape_of(value)) != 4:
        return [], value
    return nhwc_input(value, user)


def back_to_nchw(new: Operation, old_value: SSAValue) -> tuple[list[Operation], SSAValue]:
    """The NHWC result of `new` as the NCHW value `old_value` was (for its users)."""
    res = new.results[0]
    if len(shape_of(old_value)) != 4:
        return [new], res
    t = nn.TransposeOp(res, old_value.type, TO_NCHW)
    t.result.name_hint = old_value.name_hint
    return [new, t], t.result


def _nhwc_type(value: SSAValue):
    return transposed_type(value.type, TO_NHWC) if len(shape_of(value)) == 4 else value.type


def _geometry(op: Operation) -> dict[str, Sequence[int]]:
    strides, pads, dilations, _ = op.conv_params()  # type: ignore[attr-defined]
    return {"stride": strides, "padding": (pads[0], pads[1]), "dilation": dilations}


def _is_depthwise(op: Operation, weight_shape: Sequence[int]) -> bool:
    groups = op.groups.value.data  # type: ignore[attr-defined]
    if groups == 1:
        return False
    if weight_shape[1] == 1 and groups == weight_shape[0]:
        return True
    raise _fail(op, f"grouped convolutions ({groups} groups of {weight_shape[1]} channels) have no tk kernel")


# -- parameters in CMSIS-NN's layout ------------------------------------------------------
def _conv_param_layouts(module: ModuleOp) -> dict[str, tuple[int, ...]]:
    """The permutation to CMSIS-NN's layout of every 4-D param that convolutions read
    (or update), by param name."""
    perms: dict[str, tuple[int, ...]] = {}

    def note(name: str, perm: tuple[int, ...]) -> None:
        if perms.setdefault(name, perm) != perm:
            raise PassFailedException(f"convert-train-to-tk: @{name} is used both as a depthwise and a regular "
                                      "convolution weight")

    for op in module.walk():
        if isinstance(op, quant.Conv2dOp) and isinstance(op.weight.owner, train.LoadOp):
            ws = shape_of(op.weight)
            depthwise = op.groups.value.data > 1 and ws[1] == 1
            note(op.weight.owner.param.root_reference.data, OIHW_TO_1HWC if depthwise else TO_NHWC)
        elif isinstance(op, train.Conv2dWeightGradSGDOp):
            p = train.lookup_param(op, op.param)
            if p is not None:
                ws = shape_of(p.type)
                perm = OIHW_TO_1HWC if _is_depthwise(op, ws) else TO_NHWC
                note(op.param.root_reference.data, perm)
                for ref in _state_refs(op):  # optimizer state: the layout of the weight's rows
                    note(ref.root_reference.data, perm)
    return perms


def _state_refs(op: Operation) -> list:
    return [r for r in (getattr(op, k, None) for k in ("velocity", "m", "v")) if r is not None]


def shrink_state_params(module: ModuleOp) -> None:
    """Optimizer state of a param updated on some output channels keeps only their rows
    (row j: channel channels[j]), the layout of the C kernels' update index; state that
    already has that shape stays."""
    params = {op.sym_name.data: op for op in module.body.block.ops if isinstance(op, train.ParamOp)}
    users: dict[str, int] = {}
    for op in module.walk():
        for ref in _state_refs(op):
            users[ref.root_reference.data] = users.get(ref.root_reference.data, 0) + 1
    for op in module.walk():
        channels = getattr(op, "channels", None)
        if not isinstance(op, train._GradSGDOp) or channels is None:
            continue
        p = train.lookup_param(op, op.param)
        assert p is not None
        rows = list(ints(channels))
        for ref in _state_refs(op):
            name = ref.root_reference.data
            s = params[name]
            if shape_of(s.type) != shape_of(p.type) or len(rows) == shape_of(p.type)[0]:
                continue
            if users[name] != 1:
                raise _fail(op, f"optimizer state {ref} is shared with another update")
            data = np.asarray(dense_to_numpy(s.value)).reshape(shape_of(s.type))[rows]
            new_type = TensorType(s.type.element_type, (len(rows),) + tuple(shape_of(s.type)[1:]))
            s.type = new_type
            s.value = train.param_value_attr(np.ascontiguousarray(data), new_type)


def relayout_conv_params(module: ModuleOp) -> None:
    """Store conv weight params OHWI / [1, KH, KW, C]; loads transpose back to OIHW."""
    perms = _conv_param_layouts(module)
    params = {op.sym_name.data: op for op in module.body.block.ops if isinstance(op, train.ParamOp)}
    for name, perm in perms.items():
        p = params[name]
        if len(shape_of(p.type)) != 4:
            continue
        old_type = p.type
        data = np.transpose(dense_to_numpy(p.value), perm)
        new_type = transposed_type(old_type, perm)
        p.type = new_type
        p.value = train.param_value_attr(np.ascontiguousarray(data), new_type)
        for op in list(module.walk()):
            if isinstance(op, train.LoadOp) and op.param.root_reference.data == name and op.result.type == old_type:
                load = train.LoadOp(name, new_type)
                load.result.name_hint = op.result.name_hint
                view = nn.TransposeOp(load.result, old_type, inverse(perm))
                view.result.name_hint = op.result.name_hint
                block = op.parent_block()
                assert block is not None
                block.insert_ops_before([load, view], op)
                op.result.replace_all_uses_with(view.result)
                block.erase_op(op)


def _factor(op: Operation, channels: int) -> np.ndarray:
    """One float32 factor per channel of the param: the product of its `scales` powers."""
    p = train.lookup_param(op, op.param)  # type: ignore[attr-defined]
    assert p is not None
    qt = p.quantized_type
    if qt is None:
        raise _fail(op, f"{op.param} is a float param (the C backend trains int8 models)")  # type: ignore[attr-defined]
    factor = np.ones(channels, dtype=np.float64)
    if op.scales is not None:  # type: ignore[attr-defined]
        s = _channel_scales(qt, channels)
        for e in ints(op.scales):  # type: ignore[attr-defined]
            factor = factor * s**e
    return factor.astype(np.float32)


def _optimizer(op: Operation) -> dict:
    """The tk op's optimizer properties of a fused train op (momentum SGD or Adam)."""
    o: Any = op
    if o.momentum is not None:
        return tk.optimizer_props(momentum=o.momentum.value.data, velocity=o.velocity.root_reference.data)
    if o.m is not None:
        return tk.optimizer_props(beta1=o.beta1.value.data, beta2=o.beta2.value.data, eps=o.eps.value.data,
                                  m=o.m.root_reference.data, v=o.v.root_reference.data,
                                  step=o.step.root_reference.data)
    return {}


def _sgd_kwargs(op: Operation, channels: int) -> dict:
    return {
        "optimizer": _optimizer(op),
        "factor": _factor(op, channels).tolist(),
        "channels": None if op.channels is None else ints(op.channels),  # type: ignore[attr-defined]
        "rounding": op.rounding_mode,  # type: ignore[attr-defined]
        "rng": None if op.rng is None else op.rng.root_reference.data,  # type: ignore[attr-defined]
    }


def _saved_input(x: SSAValue, op: Operation) -> dict:
    qt = _qtype(x, op, "saved input")
    if qt.is_per_channel:
        raise _fail(op, "the saved input is quantized per channel")
    return {"x_offset": -qt.zero_point, "x_scale": qt.scale}


# -- patterns ---------------------------------------------------------------------------
class ClampMaskToOutputMask(RewritePattern):
    """train.clamp_mask -> tk.output_mask of the producer's int8 output and act range."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: train.ClampMaskOp, rewriter: PatternRewriter) -> None:
        producer = op.output.owner
        qt = _qtype(op.output, op, "masked value")
        act = producer.activation_range() if hasattr(producer, "activation_range") else (qt.storage_min, qt.storage_max)
        ops, y = nhwc(op.output, op)
        new = tk.OutputMaskOp(y, act)
        out_ops, res = back_to_nchw(new, op.result)
        rewriter.replace(op, [*ops, *out_ops], [res])


class MaskGradToTk(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: train.MaskGradOp, rewriter: PatternRewriter) -> None:
        g_ops, g = nhwc(op.operands[0], op)
        m_ops, m = nhwc(op.operands[1], op)
        out_ops, res = back_to_nchw(tk.MaskGradOp(g, m), op.results[0])
        rewriter.replace(op, [*g_ops, *m_ops, *out_ops], [res])


class GradAddToTk(RewritePattern):
    """A float nn.add (of two gradients) -> tk.add."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.AddOp, rewriter: PatternRewriter) -> None:
        if not (_is_f32(op.lhs) and op.lhs.type == op.rhs.type == op.result.type):
            return
        a_ops, a = nhwc(op.lhs, op)
        b_ops, b = nhwc(op.rhs, op)
        out_ops, res = back_to_nchw(tk.AddOp(a, b), op.result)
        rewriter.replace(op, [*a_ops, *b_ops, *out_ops], [res])


class SoftmaxCrossEntropyToTk(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: train.SoftmaxCrossEntropyOp, rewriter: PatternRewriter) -> None:
        if shape_of(op.operands[0])[0] != 1:
            raise _fail(op, "the C loss kernel takes batch 1")
        new = tk.SoftmaxXentOp(op.operands[0], op.operands[1])
        rewriter.replace(op, [new], list(new.results))


class GlobalAvgPoolGradToTk(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: train.GlobalAvgPoolGradOp, rewriter: PatternRewriter) -> None:
        ops, dy = nhwc(op.operands[0], op)
        new = tk.GlobalAvgPoolGradOp(dy, _nhwc_type(op.results[0]))
        out_ops, res = back_to_nchw(new, op.results[0])
        rewriter.replace(op, [*ops, *out_ops], [res])


class ConvInputGradToTk(RewritePattern):
    """train.conv2d_input_grad -> tk.conv_input_grad / tk.depthwise_conv_input_grad."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: train.Conv2dInputGradOp, rewriter: PatternRewriter) -> None:
        ws = shape_of(op.weight)
        depthwise = _is_depthwise(op, ws)
        scales = _weight_scales(op.weight, op, ws[0])
        w_ops, w = permuted_weight(op.weight, OIHW_TO_1HWC if depthwise else TO_NHWC)
        dy_ops, dy = nhwc(op.operands[0], op)
        kind = tk.DepthwiseConvInputGradOp if depthwise else tk.ConvInputGradOp
        new = kind(dy, w, _nhwc_type(op.results[0]), **_geometry(op), w_scale=scales.tolist())
        out_ops, res = back_to_nchw(new, op.results[0])
        rewriter.replace(op, [*w_ops, *dy_ops, *out_ops], [res])


class FullyConnectedInputGradToTk(RewritePattern):
    """train.fully_connected_input_grad -> tk.conv_input_grad of rank 2."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: train.FullyConnectedInputGradOp, rewriter: PatternRewriter) -> None:
        ws = shape_of(op.weight)
        scales = _weight_scales(op.weight, op, ws[0])
        new = tk.ConvInputGradOp(op.operands[0], op.weight, op.results[0].type, stride=(1, 1), padding=(0, 0),
                                 dilation=(1, 1), w_scale=scales.tolist())
        rewriter.replace(op, [new], [new.result])


class ConvWeightGradSGDToTk(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: train.Conv2dWeightGradSGDOp, rewriter: PatternRewriter) -> None:
        p = train.lookup_param(op, op.param)
        assert p is not None
        ws = shape_of(p.type)  # already CMSIS-NN's layout (relayout_conv_params)
        depthwise = op.groups.value.data > 1
        channels = ws[3] if depthwise else ws[0]
        dy_ops, dy = nhwc(op.dy, op)
        x_ops, x = nhwc(op.input, op)
        kind = tk.DepthwiseConvWeightGradSGDOp if depthwise else tk.ConvWeightGradSGDOp
        new = kind(op.param.root_reference.data, dy, x, op.lr, **_geometry(op), **_saved_input(op.input, op),
                   **_sgd_kwargs(op, channels))
        rewriter.replace(op, [*dy_ops, *x_ops, new], [])


class FullyConnectedWeightGradSGDToTk(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: train.FullyConnectedWeightGradSGDOp, rewriter: PatternRewriter) -> None:
        p = train.lookup_param(op, op.param)
        assert p is not None
        new = tk.ConvWeightGradSGDOp(op.param.root_reference.data, op.dy, op.input, op.lr, stride=(1, 1),
                                     padding=(0, 0), dilation=(1, 1), **_saved_input(op.input, op),
                                     **_sgd_kwargs(op, shape_of(p.type)[0]))
        rewriter.replace(op, [new], [])


class BiasGradSGDToTk(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: train.BiasGradSGDOp, rewriter: PatternRewriter) -> None:
        p = train.lookup_param(op, op.param)
        assert p is not None
        dy_ops, dy = nhwc(op.dy, op)
        new = tk.BiasGradSGDOp(op.param.root_reference.data, dy, op.lr, **_sgd_kwargs(op, shape_of(p.type)[0]))
        rewriter.replace(op, [*dy_ops, new], [])


class TransposeMovingNoDataToReshape(RewritePattern):
    """A transpose of a float or mask tensor that only moves size-1 dims is a reshape
    (a view in C)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.TransposeOp, rewriter: PatternRewriter) -> None:
        t = op.input.type
        if isinstance(t, TensorType) and isinstance(t.element_type, UniformQuantizedType):
            return
        if moves_no_data(shape_of(op.input), ints(op.perm)):
            new = nn.ReshapeOp(op.input, op.result.type)
            new.result.name_hint = op.result.name_hint
            rewriter.replace(op, [new], [new.result])


# Ops whose lowering happens here; anything else of the train dialect inside a
# function is an error (train.param / train.load / train.increment stay).
_KEPT = (train.LoadOp, train.IncrementOp)


@dataclass(frozen=True)
class ConvertTrainToTkPass(ModulePass):
    """Lower the int8 training step's backward ops and fused SGD updates to `tk` ops
    (NHWC, the C training kernels), moving convolution weight params to OHWI /
    [1, KH, KW, C]. See the module docstring for what changes numerically."""

    name = "convert-train-to-tk"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        shrink_state_params(op)
        relayout_conv_params(op)
        patterns = GreedyRewritePatternApplier([
            ClampMaskToOutputMask(), MaskGradToTk(), GradAddToTk(), SoftmaxCrossEntropyToTk(),
            GlobalAvgPoolGradToTk(), ConvInputGradToTk(), FullyConnectedInputGradToTk(),
            ConvWeightGradSGDToTk(), FullyConnectedWeightGradSGDToTk(), BiasGradSGDToTk(),
            FoldTransposePair(), TransposeMovingNoDataToReshape(),
        ])
        PatternRewriteWalker(patterns).rewrite_module(op)
        dce(op)
        for f in op.walk():
            if isinstance(f, func.FuncOp):
                for inner in f.walk():
                    if inner.dialect_name() == "train" and not isinstance(inner, _KEPT):
                        raise _fail(inner, "no tk kernel for it (only fused int8 updates and the gradients of "
                                           "conv, depthwise conv, fully connected, global average pool, "
                                           "clamps and softmax cross-entropy lower to C)")
