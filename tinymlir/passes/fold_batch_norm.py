"""`fold-batch-norm`: remove inference batch-norms by folding them into constants.

    batch_norm(conv2d(x, W, b?), g, beta, m, v)  ->  conv2d(x, W', b')
    batch_norm(x, g, beta, m, v)                 ->  add(mul(x, f), c)

with f = g / sqrt(v + eps), W' = W * f (per output channel), b' = (b - m) * f + beta and
c = beta - m * f, all computed in float64 and stored as float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.transforms.dead_code_elimination import dce

from tinymlir.dialects import nn
from tinymlir.dialects.nn import ints
from tinymlir.passes.fold_constants import constant_value, materialize_constant


def batch_norm_affine(op: nn.BatchNormOp) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel (f, c) in float64 with batch_norm(x) = x * f + c, or None when a
    parameter is not a float constant. eps is the float32 attribute, as the interpreter."""
    params = [constant_value(v) for v in (op.scale, op.bias, op.mean, op.var)]
    if any(p is None or p.dtype.kind != "f" for p in params):
        return None
    g, beta, mean, var = (p.astype(np.float64) for p in params)  # type: ignore[union-attr]
    eps = np.float64(np.float32(op.epsilon.value.data))
    with np.errstate(all="ignore"):  # NaN/inf for a negative variance, as at run time
        f = g / np.sqrt(var + eps)
        return f, beta - mean * f


def _constant_of(data: np.ndarray, like: TensorType, shape: tuple[int, ...], name: str):
    op = materialize_constant(data.reshape(shape), TensorType(like.element_type, shape))
    assert op is not None
    op.results[0].name_hint = name
    return op


def _foldable_conv(op: nn.BatchNormOp) -> nn.Conv2dOp | None:
    """The conv feeding `op`, if only `op` uses it and its weight and bias are float constants."""
    conv = op.input.owner
    if not isinstance(conv, nn.Conv2dOp) or not conv.result.has_one_use():
        return None
    w = constant_value(conv.weight)
    if w is None or w.dtype.kind != "f":
        return None
    if conv.bias is not None and ((b := constant_value(conv.bias)) is None or b.dtype.kind != "f"):
        return None
    return conv


class FoldBatchNormIntoConv(RewritePattern):
    """batch_norm(conv2d(x, W, b?)) with constant W, b and parameters  ->  conv2d(x, W', b')."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.BatchNormOp, rewriter: PatternRewriter) -> None:
        conv = _foldable_conv(op)
        affine = batch_norm_affine(op)
        if conv is None or affine is None:
            return
        f, c = affine
        w = constant_value(conv.weight)
        assert w is not None
        b = constant_value(conv.bias) if conv.bias is not None else np.zeros(w.shape[0])
        assert b is not None
        w_new = w.astype(np.float64) * f.reshape(-1, 1, 1, 1)
        b_new = b.astype(np.float64) * f + c  # = (b - m) * f + beta
        wt = conv.weight.type
        assert isinstance(wt, TensorType)
        w_op = _constant_of(w_new, wt, tuple(w.shape), "weight")
        b_op = _constant_of(b_new, wt, (w.shape[0],), "bias")
        new = nn.Conv2dOp(
            conv.input, w_op.results[0], b_op.results[0], op.result.type,
            strides=ints(conv.strides), pads=ints(conv.pads), dilations=ints(conv.dilations),
            groups=conv.groups.value.data,
        )
        rewriter.replace(op, [w_op, b_op, new])
        rewriter.erase(conv)


class BatchNormToMulAdd(RewritePattern):
    """batch_norm(x) with constant parameters, not foldable into a conv  ->  add(mul(x, f), c),
    f and c of shape [C, 1, ..., 1] so that they broadcast along axis 1."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.BatchNormOp, rewriter: PatternRewriter) -> None:
        if _foldable_conv(op) is not None:
            return
        affine = batch_norm_affine(op)
        if affine is None:
            return
        f, c = affine
        xt = op.input.type
        assert isinstance(xt, TensorType)
        shape = (len(f),) + (1,) * (len(xt.get_shape()) - 2)
        f_op, c_op = _constant_of(f, xt, shape, "bn_scale"), _constant_of(c, xt, shape, "bn_shift")
        mul = nn.MulOp(op.input, f_op.results[0], xt)
        add = nn.AddOp(mul.result, c_op.results[0], xt)
        rewriter.replace(op, [f_op, c_op, mul, add])


@dataclass(frozen=True)
class FoldBatchNormPass(ModulePass):
    """Remove every `nn.batch_norm` whose parameters are float constants.

    Input: float nn IR (`arith.constant` parameters). Output: a batch-norm that alone
    uses the result of an `nn.conv2d` with constant weight (and bias) is folded into that
    conv's weight and bias (the conv gets a bias if it had none); any other becomes
    `nn.mul` + `nn.add` with per-channel constants shaped [C, 1, 1] (for NCHW). Dead
    constants are removed. Batch-norms with non-constant parameters are left alone.

    Meaning: equal to the batch-norm in real arithmetic. The folded constants are
    computed in float64 and rounded once to float32, so results move by a few float32
    ulps of the larger terms (the tests check rtol 1e-5 relative to the output's range).
    """

    name = "fold-batch-norm"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        # Non-finite parameters fold to the NaN/inf that nn.batch_norm would compute at run
        # time; numpy's RuntimeWarnings about them would only add lines to stderr.
        with np.errstate(all="ignore"):
            PatternRewriteWalker(GreedyRewritePatternApplier([FoldBatchNormIntoConv(), BatchNormToMulAdd()])).rewrite_module(op)
        dce(op)
