"""`qas`: Quantization-Aware Scaling of the gradients of quantized parameters.

Input (level 2, after `autodiff`): `train.sgd` / `train.adam` updates of quantized `train.param`s whose
gradient is w.r.t. the stored integers q (`train.scale_grad ... {exponent = 1}` of the real
gradient, so G_q = s G_W per output channel c, s = the param's scale: s_w[c] for an int8
weight, s_x s_w[c] for an int32 bias).

Output: before each such update, `train.scale_grad @p, %g {exponent = -2}`: G_q is scaled by
s[c]^-2, as Lin et al. 2022 (eq. 2-3) do. Why: with q = W / s, the integer weight is 1/s
times the real one but its gradient s times the real gradient, so ||q|| / ||G_q|| =
s^-2 ||W|| / ||G_W||: SGD on the integers sees a per-channel learning rate s^2 (~1e-5 for
int8 CNNs) times fp32's. After QAS, lr * s^-2 * G_q = lr * G_W / s, i.e. the real weight
moves by lr * G_W: fp32's SGD step, each layer's ||W|| / ||G|| as in fp32, then rounded to the
int8 / int32 grid by `train.sgd`. Float params and other updates are left alone; an
update whose gradient already went through QAS is not scaled twice.

    %g = train.scale_grad @layer3.weight, %dw {exponent = 1 : i64} : ...
    %q = train.scale_grad @layer3.weight, %g {exponent = -2 : i64} : ...   // added
    train.sgd @layer3.weight, %q, %lr {rounding = "nearest"} : ...
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from tinymlir.dialects import train

QAS_EXPONENT = -2


def _already_scaled(op: train.SGDOp | train.AdamOp) -> bool:
    g = op.grad.owner
    return (isinstance(g, train.ScaleGradOp) and g.param == op.param
            and g.exponent.value.data == QAS_EXPONENT)


class ScaleQuantizedUpdate(RewritePattern):
    """Insert the QAS `train.scale_grad` before a `train.sgd` (with or without momentum)
    or `train.adam` of a quantized param."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: train.SGDOp | train.AdamOp, rewriter: PatternRewriter) -> None:
        param = train.lookup_param(op, op.param)
        if param is None or param.quantized_type is None or _already_scaled(op):
            return
        channels = None if op.channels is None else op.channels.get_values()
        scaled = train.ScaleGradOp(op.grad, op.param, QAS_EXPONENT, channels=channels)
        rewriter.insert(scaled)  # before `op`, the default insertion point
        op.operands[0] = scaled.result
        rewriter.notify_op_modified(op)


@dataclass(frozen=True)
class QASPass(ModulePass):
    """Scale the gradient of every quantized param's update by s^-2 per output channel
    (Quantization-Aware Scaling); see the module docstring."""

    name = "qas"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(ScaleQuantizedUpdate(), apply_recursively=False).rewrite_module(op)
