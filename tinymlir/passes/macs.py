"""Multiply-accumulate counts of the IR, read from the ops' shapes (no interpretation).

Used by `prune-backward{stats=true}` and `bench/training_macs.py`.

What counts: every multiply-accumulate of a convolution or matrix product, forward and
backward, float or quantized:

| op | MACs |
| --- | --- |
| `nn.conv2d`, `quant.conv2d` | N * O * OH * OW * (C / groups) * KH * KW |
| `train.conv2d_input_grad` | the same, for the convolution it transposes |
| `train.conv2d_weight_grad`, `train.conv2d_weight_grad_sgd` | N * rows * OH * OW * (C / groups) * KH * KW, rows = output channels computed (`channels`) |
| `nn.gemm`, `quant.fully_connected`, `train.fully_connected_input_grad` | M * N * K |
| `train.fully_connected_weight_grad(_sgd)` | rows * K * N (rows: the output channels computed) |
| `nn.matmul` | product of the batch dims * M * N * K |

Element-wise ops, pooling, reductions (`train.bias_grad`), losses and optimizer updates
count 0: they are linear in the activation size and small next to the convolutions, and
this is how the paper counts (MACs of conv/linear layers).

In `@train_step`, the *forward* part is every op before the loss
(`train.softmax_cross_entropy` / `train.mse`), the *backward* part every op after it
(gradients and updates).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from math import prod

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Attribute, Operation, SSAValue

from tinymlir.dialects import nn, quant, train


def _shape(v: SSAValue | Attribute) -> tuple[int, ...]:
    t = v.type if isinstance(v, SSAValue) else v
    assert isinstance(t, TensorType), t
    return tuple(t.get_shape())


def _groups(op: Operation) -> int:
    return op.groups.value.data  # type: ignore[attr-defined]


def _conv_macs(out_shape: tuple[int, ...], weight_shape: tuple[int, ...]) -> int:
    """MACs of a convolution with output [N, O, OH, OW] and weight [O', C/g, KH, KW]
    (O' = the output channels computed; weight_shape[0] is ignored)."""
    n, o, oh, ow = out_shape
    return n * o * oh * ow * prod(weight_shape[1:])


def _conv2d(op: nn.Conv2dOp | quant.Conv2dOp) -> int:
    return _conv_macs(_shape(op.result), _shape(op.weight))


def _input_grad(op: train.Conv2dInputGradOp) -> int:
    return _conv_macs(_shape(op.dy), _shape(op.weight))


def _weight_grad(op: train.Conv2dWeightGradOp) -> int:
    n, _, oh, ow = _shape(op.dy)
    rows, *rest = _shape(op.result)
    return n * rows * oh * ow * prod(rest)


def _weight_grad_sgd(op: Operation) -> int:
    """The fused weight gradient + update: the weight shape comes from its param."""
    param = train.lookup_param(op, op.param)  # type: ignore[attr-defined]
    if param is None:
        return 0
    ws = _shape(param.type)
    channels = op.channels  # type: ignore[attr-defined]
    rows = ws[0] if channels is None else len(nn.ints(channels))
    n, _, oh, ow = _shape(op.dy)  # type: ignore[attr-defined]
    return n * rows * oh * ow * prod(ws[1:])


def _fc_input_grad(op: Operation) -> int:
    """dx [N, K] = dy [N, M] @ W [M, K]."""
    n, m = _shape(op.dy)  # type: ignore[attr-defined]
    return n * m * _shape(op.result)[1]  # type: ignore[attr-defined]


def _fc_weight_grad(op: Operation) -> int:
    """dW [rows, K] = dy[:, rows]^T @ x [N, K]."""
    rows, k = _shape(op.result)  # type: ignore[attr-defined]
    return rows * k * _shape(op.dy)[0]  # type: ignore[attr-defined]


def _fc_weight_grad_sgd(op: Operation) -> int:
    n, m = _shape(op.dy)  # type: ignore[attr-defined]
    channels = op.channels  # type: ignore[attr-defined]
    rows = m if channels is None else len(nn.ints(channels))
    return n * rows * _shape(op.input)[1]  # type: ignore[attr-defined]


def _gemm(op: nn.GemmOp) -> int:
    m, n = _shape(op.result)
    a = _shape(op.a)
    return m * n * (a[0] if op.trans_a.value.data else a[1])


def _fully_connected(op: quant.FullyConnectedOp) -> int:
    return prod(_shape(op.result)) * _shape(op.input)[-1]


def _matmul(op: nn.MatMulOp) -> int:
    return prod(_shape(op.result)) * _shape(op.lhs)[-1]


MAC_RULES: dict[str, Callable[[Operation], int]] = {
    "nn.conv2d": _conv2d,  # type: ignore[dict-item]
    "quant.conv2d": _conv2d,  # type: ignore[dict-item]
    "train.conv2d_input_grad": _input_grad,  # type: ignore[dict-item]
    "train.conv2d_weight_grad": _weight_grad,  # type: ignore[dict-item]
    "train.conv2d_weight_grad_sgd": _weight_grad_sgd,
    "nn.gemm": _gemm,  # type: ignore[dict-item]
    "quant.fully_connected": _fully_connected,  # type: ignore[dict-item]
    "train.fully_connected_input_grad": _fc_input_grad,
    "train.fully_connected_weight_grad": _fc_weight_grad,
    "train.fully_connected_weight_grad_sgd": _fc_weight_grad_sgd,
    "nn.matmul": _matmul,  # type: ignore[dict-item]
}
"""MACs per op name; an op not listed counts 0."""


def op_macs(op: Operation) -> int:
    rule = MAC_RULES.get(op.name)
    return rule(op) if rule is not None else 0


@dataclass
class MacCount:
    """MACs and op counts of a list of ops, by op name."""

    macs: int = 0
    ops: int = 0
    macs_by_op: Counter[str] = field(default_factory=Counter)
    ops_by_op: Counter[str] = field(default_factory=Counter)

    def add(self, op: Operation) -> None:
        m = op_macs(op)
        self.macs += m
        self.ops += 1
        self.macs_by_op[op.name] += m
        self.ops_by_op[op.name] += 1

    @classmethod
    def of(cls, ops: Iterable[Operation]) -> MacCount:
        count = cls()
        for op in ops:
            for inner in op.walk():
                count.add(inner)
        return count


LOSS_OPS = (train.SoftmaxCrossEntropyOp, train.MSEOp)


def find_loss(step: func.FuncOp) -> Operation | None:
    """The loss op of a `@train_step`: the first softmax_cross_entropy / mse of its body."""
    for op in step.body.walk():
        if isinstance(op, LOSS_OPS):
            return op
    return None


def split_at_loss(step: func.FuncOp) -> tuple[list[Operation], Operation | None, list[Operation]]:
    """(ops before the loss, the loss op, ops after it) of the top-level block of `step`;
    without a loss, every op is forward."""
    ops = list(step.body.block.ops)
    loss = find_loss(step)
    if loss is None or loss.parent_block() is not step.body.block:
        return ops, None, []
    i = ops.index(loss)
    return ops[:i], loss, ops[i + 1:]


@dataclass
class TrainStepMacs:
    forward: MacCount
    backward: MacCount

    @property
    def total(self) -> int:
        return self.forward.macs + self.backward.macs


def train_step_macs(module: ModuleOp, name: str = "train_step") -> TrainStepMacs:
    """Forward and backward MACs of `@train_step` (KeyError if the module has none)."""
    for op in module.body.block.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == name:
            before, loss, after = split_at_loss(op)
            return TrainStepMacs(MacCount.of(before + ([loss] if loss is not None else [])), MacCount.of(after))
    raise KeyError(f"no func.func @{name}")


def format_macs(n: int) -> str:
    """12_345_678 -> '12.35M' (k, M, G)."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)
