"""What the training passes (`sparse-update`, `prune-backward`, `reorder-update`) read
from a level-2 module: `@train_step`, its loss, the `train.param`s by layer, and which
ops update which parameter.

An *update* of a parameter is any op of `@train_step` that writes a trainable
`train.param` (its `ParamEffects` WRITE effects): `train.sgd`, `train.adam`, the fused
ops of reorder-update, and whatever optimizer op declares its effects the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, SymbolRefAttr
from xdsl.ir import Operation, SSAValue
from xdsl.traits import MemoryEffectKind, get_effects
from xdsl.utils.exceptions import PassFailedException

from tinymlir.dialects import train
from tinymlir.passes.macs import find_loss

LAYER_PARAM = re.compile(r"layer(\d+)\.(weight|bias)")
"""The names autodiff gives layer parameters: `layer<i>.weight`, `layer<i>.bias`."""


def require_train_step(module: ModuleOp, pass_name: str) -> func.FuncOp:
    for op in module.body.block.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == "train_step":
            if not op.body.blocks:
                break
            return op
    raise PassFailedException(f"{pass_name}: the module has no func.func @train_step (run autodiff first)")


def require_loss(step: func.FuncOp, pass_name: str) -> Operation:
    loss = find_loss(step)
    if loss is None or loss.parent_block() is not step.body.block:
        raise PassFailedException(
            f"{pass_name}: @train_step has no loss (train.softmax_cross_entropy or train.mse in its body)")
    return loss


def _symbols(op: Operation, kinds: tuple[MemoryEffectKind, ...]) -> set[str]:
    effects = get_effects(op) if op.get_trait(train.ParamEffects) is not None else None
    if not effects:
        return set()
    return {e.value.root_reference.data for e in effects
            if e.kind in kinds and isinstance(e.value, SymbolRefAttr)}


def params_written(op: Operation) -> set[str]:
    """The `train.param` symbols `op` writes."""
    return _symbols(op, (MemoryEffectKind.WRITE,))


def params_read(op: Operation) -> set[str]:
    """The `train.param` symbols `op` reads (a `train.load`'s, an optimizer's)."""
    return _symbols(op, (MemoryEffectKind.READ,))


def param_table(module: ModuleOp) -> dict[str, train.ParamOp]:
    return {op.sym_name.data: op for op in module.body.block.ops if isinstance(op, train.ParamOp)}


@dataclass
class Layer:
    index: int
    weight: train.ParamOp | None = None
    bias: train.ParamOp | None = None


def layers(params: dict[str, train.ParamOp]) -> dict[int, Layer]:
    """The layers that have parameters, by index (autodiff's numbering)."""
    out: dict[int, Layer] = {}
    for name, p in params.items():
        m = LAYER_PARAM.fullmatch(name)
        if m:
            layer = out.setdefault(int(m.group(1)), Layer(int(m.group(1))))
            setattr(layer, m.group(2), p)
    return dict(sorted(out.items()))


@dataclass
class Updates:
    """The update ops of `@train_step`, by the trainable parameter they update."""

    by_param: dict[str, list[Operation]] = field(default_factory=dict)

    def of(self, name: str) -> list[Operation]:
        return self.by_param.get(name, [])

    def ops(self) -> Iterator[Operation]:
        seen: set[Operation] = set()
        for ops in self.by_param.values():
            for op in ops:
                if op not in seen:
                    seen.add(op)
                    yield op


def find_updates(step: func.FuncOp, params: dict[str, train.ParamOp]) -> Updates:
    updates = Updates()
    for op in step.body.walk():
        for name in sorted(params_written(op)):
            p = params.get(name)
            if p is not None and p.is_trainable:
                updates.by_param.setdefault(name, []).append(op)
    return updates


def grad_of(update: Operation) -> SSAValue | None:
    """The gradient operand of an update op (`grad`), None for fused ops."""
    g = getattr(update, "grad", None)
    return g if isinstance(g, SSAValue) else None


def erase_op(op: Operation) -> None:
    op.detach()
    op.erase()


def symbol_uses(module: ModuleOp) -> set[str]:
    """Every symbol name a property or attribute of an op of `module` refers to."""
    used: set[str] = set()
    for op in module.walk():
        for attr in (*op.properties.values(), *op.attributes.values()):
            if isinstance(attr, SymbolRefAttr):
                used.add(attr.root_reference.data)
    return used
