"""`split-sparse-params`: keep only the trained channels of a sparsely updated weight in
SRAM (level 5, after `convert-quant-to-cmsisnn`).

Sparse update trains a fraction of a layer's output channels (`channels` of its
`tk.conv_weight_grad_sgd`). A C parameter array is either flash (`const`) or SRAM, so
without this pass the whole weight sits in SRAM. Here a weight `@W` updated on channels
`S` becomes two params, `@W.train` = its rows `S` (trainable, SRAM) and `@W.rest` =
the other rows (frozen, flash), and the layer's bias `@B` (if a param) becomes `@B.train`
and `@B.rest` the same way (both trainable when `@B` was). Then, in every function:

    y = conv(x, W, B)          ->  y_s = conv(x, W.train, B.train)      multipliers[S]
                                   y_r = conv(x, W.rest, B.rest)        the others
                                   y   = tk.merge_channels y_s, y_r channels S
    dx = conv_input_grad(dy, W) ->  dx = tk.add(conv_input_grad(dy_s, W.train), conv_input_grad(dy_r, W.rest))
    update W on S with dy       ->  update W.train with dy_s            dy_s = tk.gather_channels dy channels S
    update B with dy            ->  update B.train with dy_s, B.rest with dy_r

Meaning. The forward results are bitwise the same (each output channel is computed by
the same kernel arithmetic) and so are the updates with nearest rounding; an input
gradient sums its channels in two parts, so it may round differently in float32 (the C
follows the same IR, so interpreter and C still agree bit for bit); stochastic rounding
draws in a different order for the split bias.

Optimizer state (momentum SGD's velocity, Adam's m and v) follows: a split weight's
state already holds just its trained rows (`convert-train-to-tk` cut it), so it is
`@W.train`'s whole and renamed after it (`@W.m` -> `@W.train.m`); a split bias's state
splits with it (`@B.m` -> `@B.train.m`, `@B.rest.m`).

A weight is left whole (no error) when it is not a plain convolution / fully connected
weight, when its bias is updated on a channel subset, or when the split would not save
SRAM (every channel trained). Depthwise weights are never split (their channels are
tied to their input's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, StringAttr, SymbolRefAttr, TensorType, i32
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from tinymlir.dialects import cmsisnn, tk, train
from tinymlir.dialects.nn import ints
from tinymlir.interpreter.train_impls import initial_value

LAYER_OPS = (cmsisnn.ConvolveWrapperS8Op, cmsisnn.FullyConnectedS8Op)


@dataclass
class _Split:
    weight: str
    bias: str | None
    channels: tuple[int, ...]
    rest: tuple[int, ...]


def _loads(module: ModuleOp, name: str) -> list[train.LoadOp]:
    return [op for op in module.walk() if isinstance(op, train.LoadOp) and op.param.root_reference.data == name]


def _updates(module: ModuleOp, name: str) -> list[Operation]:
    return [op for op in module.walk() if isinstance(op, tk.SGD_OPS) and op.param.root_reference.data == name]


def _plan(module: ModuleOp, update: tk.ConvWeightGradSGDOp) -> _Split | None:
    """The split of the weight `update` trains, or None where it cannot or need not be split."""
    name = update.param.root_reference.data
    p = train.lookup_param(update, update.param)
    ch = update.channel_list
    if p is None or ch is None:
        return None
    count = p.type.get_shape()[0]
    if len(ch) == count or len(_updates(module, name)) != 1:
        return None
    biases: set[str | None] = set()
    for load in _loads(module, name):
        for use in load.result.uses:
            user = use.operation
            if isinstance(user, LAYER_OPS) and use.index == 1:
                b = user.bias
                biases.add(b.owner.param.root_reference.data if b is not None and isinstance(b.owner, train.LoadOp)
                           else ("?" if b is not None else None))
            elif not (isinstance(user, tk.ConvInputGradOp) and use.index == 1):
                return None
    if len(biases) > 1 or "?" in biases:
        return None
    bias = next(iter(biases), None)
    if bias is not None:
        if any(u.channels is not None for u in _updates(module, bias)):
            return None
        for load in _loads(module, bias):
            if any(not (isinstance(u.operation, LAYER_OPS) and u.index == 2) for u in load.result.uses):
                return None
    rest = tuple(c for c in range(count) if c not in set(ch))
    return _Split(name, bias, tuple(ch), rest)


def _retype(t: TensorType, rows: int) -> TensorType:
    return TensorType(t.element_type, [rows, *t.get_shape()[1:]])


def _split_param(module: ModuleOp, name: str, parts: Sequence[tuple[str, Sequence[int], bool]],
                 names: Callable[[str], str] | None = None) -> None:
    """Replace param `name` by params holding the given rows (suffix, rows, trainable),
    named `name.suffix` (or `names(suffix)`)."""
    p = next(op for op in module.body.block.ops if isinstance(op, train.ParamOp) and op.sym_name.data == name)
    data = initial_value(p)
    for suffix, rows, trainable in parts:
        t = _retype(p.type, len(rows))
        new = train.ParamOp(f"{name}.{suffix}" if names is None else names(suffix), t,
                            np.ascontiguousarray(data[list(rows)]), trainable=trainable)
        module.body.block.insert_op_before(new, p)
    module.body.block.erase_op(p)


class _Builder:
    """Inserts ops before an anchor op; makes each gather of a gradient once."""

    def __init__(self, split: _Split):
        self.split = split
        self.gathers: dict[tuple[SSAValue, bool], SSAValue] = {}

    def load(self, name: str, like: SSAValue, rows: int, before: Operation) -> SSAValue:
        op = train.LoadOp(name, _retype(like.type, rows))  # type: ignore[arg-type]
        op.result.name_hint = name.replace(".", "_")
        Rewriter.insert_op(op, InsertPoint.before(before))
        return op.result

    def gathered(self, dy: SSAValue, trained: bool, before: Operation) -> SSAValue:
        key = (dy, trained)
        if key not in self.gathers:
            op = tk.GatherChannelsOp(dy, self.split.channels if trained else self.split.rest)
            if dy.name_hint:
                op.result.name_hint = dy.name_hint + ("_train" if trained else "_rest")
            Rewriter.insert_op(op, InsertPoint.before(before))
            self.gathers[key] = op.result
        return self.gathers[key]


def _sub(values: Sequence[int], rows: Sequence[int]) -> list[int]:
    return [values[r] for r in rows] if len(values) > 1 else list(values)


def _split_layer(op: Operation, b: _Builder) -> None:
    s = b.split
    halves = []
    for suffix, rows in (("train", s.channels), ("rest", s.rest)):
        w = b.load(f"{s.weight}.{suffix}", op.operands[1], len(rows), op)
        bias = None if s.bias is None else b.load(f"{s.bias}.{suffix}", op.operands[2], len(rows), op)
        props = dict(op.properties)
        for key in ("multipliers", "shifts"):
            props[key] = DenseArrayBase.from_list(i32, _sub(ints(op.properties[key]), rows))  # type: ignore[arg-type]
        shape = list(op.results[0].type.get_shape())  # type: ignore[attr-defined]
        new = type(op).create(operands=[op.operands[0], w, *([bias] if bias is not None else [])],
                              result_types=[TensorType(op.results[0].type.element_type, shape[:-1] + [len(rows)])],  # type: ignore[attr-defined]
                              properties=props, attributes=dict(op.attributes))
        new.results[0].name_hint = (op.results[0].name_hint or "y") + f"_{suffix}"
        Rewriter.insert_op(new, InsertPoint.before(op))
        halves.append(new.results[0])
    merge = tk.MergeChannelsOp(halves[0], halves[1], s.channels)
    merge.result.name_hint = op.results[0].name_hint
    Rewriter.replace_op(op, merge)


def _split_input_grad(op: tk.ConvInputGradOp, b: _Builder) -> None:
    s = b.split
    scales = tk.floats(op.w_scale)
    parts = []
    for suffix, rows, trained in (("train", s.channels, True), ("rest", s.rest, False)):
        w = b.load(f"{s.weight}.{suffix}", op.weight, len(rows), op)
        dy = b.gathered(op.dy, trained, op)
        (sh, sw), (ph, pw), (dh, dw) = op.geometry()
        new = tk.ConvInputGradOp(dy, w, op.result.type, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw),
                                 w_scale=scales[list(rows)].tolist())
        Rewriter.insert_op(new, InsertPoint.before(op))
        parts.append(new.result)
    add = tk.AddOp(parts[0], parts[1])
    add.result.name_hint = op.result.name_hint
    Rewriter.replace_op(op, add)


def _optimizer(op: Operation) -> dict:
    """The optimizer properties (momentum SGD, Adam) of a tk update op, unchanged."""
    return {k: v for k in tk.OPTIMIZER_PROPS if (v := op.properties.get(k)) is not None}


def _state_name(state: str, param: str, suffix: str) -> str:
    """The name of the part `suffix` of the optimizer state `state` of `param`:
    `@B.m` -> `@B.train.m`."""
    return f"{param}.{suffix}{state[len(param):]}" if state.startswith(param + ".") else f"{state}.{suffix}"


def _rename_param(module: ModuleOp, name: str, new_name: str) -> None:
    p = next(op for op in module.body.block.ops if isinstance(op, train.ParamOp) and op.sym_name.data == name)
    p.sym_name = StringAttr(new_name)


def _split_updates(module: ModuleOp, b: _Builder) -> None:
    s = b.split
    for op in _updates(module, s.weight):
        assert isinstance(op, tk.ConvWeightGradSGDOp)
        (sh, sw), (ph, pw), (dh, dw) = op.geometry()
        # optimizer state (convert-train-to-tk made it hold the trained rows) is the new param's
        # whole: renamed after it, `@W.m` -> `@W.train.m`
        optimizer = _optimizer(op)
        for k, ref in op.state_refs().items():
            name = _state_name(ref.root_reference.data, s.weight, "train")
            _rename_param(module, ref.root_reference.data, name)
            optimizer[k] = SymbolRefAttr(name)
        new = tk.ConvWeightGradSGDOp(
            f"{s.weight}.train", b.gathered(op.dy, True, op), op.input, op.lr, stride=(sh, sw), padding=(ph, pw),
            dilation=(dh, dw), x_offset=op.x_offset.value.data, x_scale=float(tk.floats(op.x_scale)[0]),
            factor=tk.floats(op.factor)[list(s.channels)].tolist(), rounding=op.rounding_mode,
            rng=None if op.rng is None else op.rng.root_reference.data, optimizer=optimizer)
        Rewriter.replace_op(op, new)
    if s.bias is None:
        return
    for op in _updates(module, s.bias):
        assert isinstance(op, tk.BiasGradSGDOp)
        factor = tk.floats(op.factor)
        states = {k: r.root_reference.data for k, r in op.state_refs().items()}
        for suffix, rows, trained in (("train", s.channels, True), ("rest", s.rest, False)):
            optimizer = _optimizer(op)
            for k, name in states.items():  # the bias's state splits with it
                optimizer[k] = SymbolRefAttr(_state_name(name, s.bias, suffix))
            new = tk.BiasGradSGDOp(f"{s.bias}.{suffix}", b.gathered(op.dy, trained, op), op.lr,
                                   factor=factor[list(rows)].tolist(), rounding=op.rounding_mode,
                                   rng=None if op.rng is None else op.rng.root_reference.data, optimizer=optimizer)
            Rewriter.insert_op(new, InsertPoint.before(op))
        Rewriter.erase_op(op)
        for name in states.values():
            _split_param(module, name, [("train", s.channels, False), ("rest", s.rest, False)],
                         names=lambda suffix, n=name: _state_name(n, s.bias, suffix))


@dataclass(frozen=True)
class SplitSparseParamsPass(ModulePass):
    """Split each weight trained on a subset of its output channels into a trained part
    (SRAM) and the rest (flash); see the module docstring."""

    name = "split-sparse-params"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        updates = [u for u in op.walk() if isinstance(u, tk.ConvWeightGradSGDOp)]
        for update in updates:
            split = _plan(op, update)
            if split is None:
                continue
            b = _Builder(split)
            bias_trainable = False
            if split.bias is not None:
                bias_trainable = bool(_updates(op, split.bias))
            for user in [u for u in op.walk() if isinstance(u, (*LAYER_OPS, tk.ConvInputGradOp))]:
                w = user.operands[1]
                if isinstance(w.owner, train.LoadOp) and w.owner.param.root_reference.data == split.weight:
                    (_split_layer if isinstance(user, LAYER_OPS) else _split_input_grad)(user, b)  # type: ignore[operator]
            _split_updates(op, b)
            for load in _loads(op, split.weight) + ([] if split.bias is None else _loads(op, split.bias)):
                if not load.result.uses:
                    Rewriter.erase_op(load)
            _split_param(op, split.weight, [("train", split.channels, True), ("rest", split.rest, False)])
            if split.bias is not None:
                _split_param(op, split.bias, [("train", split.channels, bias_trainable),
                                              ("rest", split.rest, bias_trainable)])
