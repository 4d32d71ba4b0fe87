"""`prune-backward`: remove every computation of `@train_step` that no update needs.

Input: a level-2 module, typically after `sparse-update`, whose `@train_step` still
computes the gradients of the parameters it froze.

Output: the same `@train_step` without the ops whose results nothing uses and that have
no effect but reading (pure ops, `train.load`): no weight gradient of a frozen weight, no
input gradient below the earliest trained layer (nor the gradients, masks and saved values
feeding only those), and — as sparse-update left them — weight gradients of partially
trained weights computed for their selected channels only. What stays is exactly what the
updates and the returned loss depend on, so the updated parameters and the loss are the
same, bit for bit (tests/test_sparse_prune_reorder.py).

Option `stats=true` prints to stderr what was removed (ops by kind and their MACs) and the
forward / backward MACs of `@train_step` before and after (tinymlir/passes/macs.py).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.traits import IsTerminator, MemoryEffectKind, is_side_effect_free, only_has_effect

from tinymlir.passes.macs import MacCount, format_macs, train_step_macs
from tinymlir.passes.training import erase_op, require_loss, require_train_step

NAME = "prune-backward"


def _only_computes(op: Operation) -> bool:
    """No effect but computing its results (pure) or reading params (train.load)."""
    return not op.has_trait(IsTerminator) and (is_side_effect_free(op) or only_has_effect(op, MemoryEffectKind.READ))


def dead_ops(step: func.FuncOp) -> list[Operation]:
    """The ops of `step`'s body that only compute and whose results nothing live uses,
    in program order."""
    dead: set[Operation] = set()
    # Reverse order: every user of an op comes after it, so one sweep finds chains of dead ops.
    for op in reversed(list(step.body.block.ops)):
        if _only_computes(op) and all(use.operation in dead for r in op.results for use in r.uses):
            dead.add(op)
    return [op for op in step.body.block.ops if op in dead]


def prune(step: func.FuncOp) -> tuple[MacCount, MacCount]:
    """Erase the dead ops of `step`; returns the MACs and ops removed before and after the loss."""
    loss = require_loss(step, NAME)
    ops = list(step.body.block.ops)
    cut = ops.index(loss)
    dead = dead_ops(step)
    position = {op: i for i, op in enumerate(ops)}
    removed_fw = MacCount.of(op for op in dead if position[op] < cut)
    removed_bw = MacCount.of(op for op in dead if position[op] > cut)
    for op in reversed(dead):  # users first, so nothing erased is still used
        erase_op(op)
    return removed_fw, removed_bw


def _kinds(count: MacCount) -> str:
    parts = [f"{n} {name}" + (f" ({format_macs(count.macs_by_op[name])} MACs)" if count.macs_by_op[name] else "")
             for name, n in sorted(count.ops_by_op.items(), key=lambda kv: (-kv[1], kv[0]))]
    return ", ".join(parts) if parts else "nothing"


@dataclass(frozen=True)
class PruneBackwardPass(ModulePass):
    """Remove the backward computations (and saved values) of `@train_step` that no
    parameter update needs. See the module docstring."""

    name = "prune-backward"

    stats: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        step = require_train_step(op, NAME)
        before = train_step_macs(op)
        removed_fw, removed_bw = prune(step)
        if not self.stats:
            return
        after = train_step_macs(op)
        out = sys.stderr
        print(f"{NAME}: removed {removed_bw.ops} backward ops, {format_macs(removed_bw.macs)} MACs: "
              f"{_kinds(removed_bw)}", file=out)
        if removed_fw.ops:
            print(f"{NAME}: removed {removed_fw.ops} forward ops (values only the pruned backward used): "
                  f"{_kinds(removed_fw)}", file=out)
        print(f"{NAME}: forward {format_macs(after.forward.macs)} MACs; backward {format_macs(before.backward.macs)} "
              f"-> {format_macs(after.backward.macs)} MACs ({before.backward.ops} -> {after.backward.ops} ops)",
              file=out)
