"""`reorder-update`: apply each parameter's update as soon as its gradient exists, fused
into the op computing the gradient where possible (the paper's operator reordering and
in-place update).

Input: a level-2 `@train_step` (after autodiff, usually sparse-update and prune-backward),
whose updates come after the whole backward.

Output: each update moved right after the op computing its gradient — if that is legal:
the update changes its parameter in place, so every `train.load` of a parameter it
writes, and every use of such a load (through `nn.reshape` / `nn.flatten`, which may
alias), must come at or before the new position, and no op in between may read or write
a parameter the update writes or write one it reads. An update that cannot move stays
where it is. A moved `train.sgd` (or `train.adam` of a quantized parameter) whose
gradient comes straight from a weight or bias gradient op (through `train.scale_grad`s
of the same parameter on the int8 path), used by nothing else, is fused with it:

| gradient | fused op |
| --- | --- |
| `train.conv2d_weight_grad` | `train.conv2d_weight_grad_sgd @w, %dy, %x, %lr` |
| `train.fully_connected_weight_grad` | `train.fully_connected_weight_grad_sgd @w, %dy, %x, %lr` |
| `train.bias_grad`, or `train.reduce_to_shape` of [N, C] to [C] (a gemm's bias) | `train.bias_grad_sgd @b, %dy, %lr` |

with the update's properties (channels, momentum + velocity or Adam's state and
hyper-parameters, rounding...) and the `scale_grad` exponents as `scales`; the fused op
stands where the gradient op stood, so no gradient tensor outlives it. Other updates
(Adam of a float parameter, the float classifier's `nn.gemm` weight gradient) are moved,
not fused. The interpreter gives bit-identical parameters and loss.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, SymbolRefAttr, TensorType
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass

from tinymlir.dialects import train
from tinymlir.passes.training import (
    erase_op,
    find_updates,
    grad_of,
    param_table,
    params_read,
    params_written,
    require_train_step,
)

NAME = "reorder-update"
VIEW_OPS = ("nn.reshape", "nn.flatten")
"""Ops whose result may alias their input in C: a use of theirs reads the input's buffer."""


def _top(op: Operation, block: Block) -> Operation | None:
    """`op`, or its ancestor directly in `block`."""
    while op.parent_block() is not block:
        parent = op.parent_op()
        if parent is None:
            return None
        op = parent
    return op


def _readers(value: SSAValue, block: Block) -> list[Operation]:
    """The ops of `block` that read `value`'s buffer: its users, through aliasing views."""
    out: list[Operation] = []
    for use in value.uses:
        top = _top(use.operation, block)
        if top is None:
            continue
        out.append(top)
        if use.operation.name in VIEW_OPS:
            for r in use.operation.results:
                out.extend(_readers(r, block))
    return out


def can_move(update: Operation, target: Operation, block: Block) -> bool:
    """Whether `update` may run right after `target` (earlier in `block`) instead of where it is."""
    ops = list(block.ops)
    pos = {op: i for i, op in enumerate(ops)}
    t, u = pos[target], pos[update]
    writes, reads = params_written(update), params_read(update)
    for x in ops[t + 1 : u]:
        if (params_read(x) | params_written(x)) & writes or params_written(x) & reads:
            return False
    for x in ops[:t + 1]:
        if isinstance(x, train.LoadOp) and x.param.root_reference.data in writes:
            if any(pos[r] > t for r in _readers(x.result, block)):
                return False
    return True


def _single_use(value: SSAValue) -> bool:
    return value.first_use is not None and not value.has_more_than_one_use()


@dataclass
class _Chain:
    """A gradient traced back through the train.scale_grads of one parameter."""

    base: Operation  # the op computing the raw gradient
    scales: list[int]  # scale_grad exponents, in the order they apply
    between: list[Operation]  # the scale_grad ops


def _trace(grad: SSAValue, param: SymbolRefAttr) -> _Chain | None:
    scales: list[int] = []
    between: list[Operation] = []
    value = grad
    while True:
        op = value.owner
        if not isinstance(op, Operation) or not _single_use(value):
            return None
        if isinstance(op, train.ScaleGradOp) and op.param == param:
            scales.insert(0, op.exponent.value.data)
            between.insert(0, op)
            value = op.grad
            continue
        return _Chain(op, scales, between)


def _fusable(update: Operation) -> bool:
    """A train.sgd, or a train.adam of a quantized param (float Adam stays unfused)."""
    if isinstance(update, train.SGDOp):
        return True
    if isinstance(update, train.AdamOp):
        p = train.lookup_param(update, update.param)
        return p is not None and p.quantized_type is not None
    return False


def _fused(update: train.SGDOp | train.AdamOp, chain: _Chain) -> Operation | None:
    """The fused op replacing `chain` and `update`, or None if there is none."""
    base, param, lr = chain.base, update.param, update.lr
    channels = update.channels
    scales = chain.scales or None
    for op in chain.between:  # scale_grads must cover the update's rows
        if op.properties.get("channels") != channels:
            return None
    if isinstance(base, train.Conv2dWeightGradOp) and base.channels == channels:
        strides, pads, dilations, groups = base.conv_params()
        return train.Conv2dWeightGradSGDOp(param, base.dy, base.input, lr, strides=strides, pads=pads,
                                           dilations=dilations, groups=groups, sgd=update, scales=scales)
    if isinstance(base, train.FullyConnectedWeightGradOp) and base.channels == channels:
        return train.FullyConnectedWeightGradSGDOp(param, base.dy, base.input, lr, sgd=update, scales=scales)
    if channels is not None:
        return None
    if isinstance(base, train.BiasGradOp):
        return train.BiasGradSGDOp(param, base.dy, lr, sgd=update, scales=scales)
    if isinstance(base, train.ReduceToShapeOp):
        src, dst = base.input.type, base.result.type
        assert isinstance(src, TensorType) and isinstance(dst, TensorType)
        if len(src.get_shape()) == 2 and tuple(dst.get_shape()) == (src.get_shape()[1],):
            return train.BiasGradSGDOp(param, base.input, lr, sgd=update, scales=scales)
    return None


def reorder(step_block: Block, updates: list[Operation]) -> tuple[int, int, int]:
    """Move (and fuse) `updates`; returns how many were fused, moved unfused, left in place."""
    fused = moved = stayed = 0
    for u in updates:
        if u.parent_block() is not step_block:
            stayed += 1
            continue
        grad = grad_of(u)
        defs = [v.owner for v in u.operands if isinstance(v.owner, Operation)]
        if grad is None or not defs:
            stayed += 1
            continue
        ops = list(step_block.ops)
        producer = max((_top(d, step_block) for d in defs), key=lambda o: ops.index(o) if o is not None else -1)
        if producer is None:
            stayed += 1
            continue
        if _fusable(u) and (chain := _trace(grad, u.param)) is not None and \
                chain.base.parent_block() is step_block and can_move(u, chain.base, step_block):
            new = _fused(u, chain)
            if new is not None:
                step_block.insert_op_before(new, chain.base)
                erase_op(u)
                for op in reversed([chain.base, *chain.between]):
                    erase_op(op)
                fused += 1
                continue
        if ops.index(producer) + 1 == ops.index(u):
            moved += 1  # already right after its gradient
            continue
        if not can_move(u, producer, step_block):
            stayed += 1
            continue
        u.detach()
        step_block.insert_op_after(u, producer)
        moved += 1
    return fused, moved, stayed


@dataclass(frozen=True)
class ReorderUpdatePass(ModulePass):
    """Move each update right after its gradient and fuse SGD into the gradient op, so no
    gradient outlives the op computing it. See the module docstring."""

    name = "reorder-update"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        step = require_train_step(op, NAME)
        params = param_table(op)
        reorder(step.body.block, list(find_updates(step, params).ops()))

