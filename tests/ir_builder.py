"""Build small test functions directly as xDSL IR."""

from collections.abc import Callable, Sequence

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Operation, Region, SSAValue


def build(arg_types: Sequence, body: Callable[..., Sequence[SSAValue]]) -> ModuleOp:
    """`func @forward(args) { body }`; `body(emit, *args)` returns the results, `emit(op)`
    appends an op and returns its result."""
    block = Block(arg_types=list(arg_types))
    ops: list[Operation] = []

    def emit(op: Operation) -> SSAValue:
        ops.append(op)
        return op.results[0]

    outs = list(body(emit, *block.args))
    block.add_ops([*ops, func.ReturnOp(*outs)])
    module = ModuleOp([func.FuncOp("forward", (list(arg_types), [o.type for o in outs]), Region(block))])
    module.verify()
    return module
