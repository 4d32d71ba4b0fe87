"""`fold-constants`: evaluate nn/quant ops whose operands are all constants.

The values are computed by the reference interpreter's own op implementations
(`tinymlir/interpreter/`), so folding cannot change what the program computes: the
folded constant holds exactly the array the interpreter would have produced at run time.

`constant_value` and `materialize_constant` are plain functions because the other
folding passes (`fold-batch-norm`, `fuse-qdq`) read and write constants the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import BytesAttr, DenseIntOrFPElementsAttr, ModuleOp, TensorType
from xdsl.interpreter import Interpreter
from xdsl.ir import Operation, OpResult, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern
from xdsl.traits import ConstantLike, Pure
from xdsl.transforms.dead_code_elimination import dce

from tinymlir.dialects import quant
from tinymlir.dialects.quant import UniformQuantizedType
from tinymlir.interpreter import expected_dtype, make_interpreter
from tinymlir.interpreter.nn_impls import dense_to_numpy

FOLDABLE_DIALECTS = ("nn", "quant")


def constant_value(value: SSAValue) -> np.ndarray | None:
    """The array held by an `arith.constant` (dense) or `quant.constant` (integer storage),
    or None when `value` is not such a constant."""
    owner = value.owner
    if isinstance(owner, quant.ConstantOp):
        return owner.numpy()
    if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, DenseIntOrFPElementsAttr):
        return dense_to_numpy(owner.value)
    return None


def materialize_constant(data: np.ndarray, result_type: TensorType) -> Operation | None:
    """A constant op of `result_type` holding `data`: `quant.constant` for quantized tensors,
    `arith.constant` for float and integer tensors. None if the type cannot hold `data`."""
    if tuple(data.shape) != tuple(result_type.get_shape()):
        return None
    et = result_type.element_type
    if isinstance(et, UniformQuantizedType):
        return quant.ConstantOp(np.asarray(data), result_type)
    try:
        dtype = expected_dtype(result_type)
    except (AttributeError, TypeError):  # index, i1...: no numpy dtype the interpreter uses
        return None
    data = np.asarray(data)
    if dtype.kind in "iub" and data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        return None  # NaN/inf has no integer value: leave the op to run
    with np.errstate(over="ignore", invalid="ignore"):  # float64 -> float32 overflow is inf, as at run time
        raw = np.ascontiguousarray(data.astype(dtype).astype(dtype.newbyteorder("<")))
    return arith.ConstantOp(DenseIntOrFPElementsAttr(result_type, BytesAttr(raw.tobytes())), result_type)


def _is_constant(value: SSAValue) -> bool:
    return isinstance(value, OpResult) and isinstance(value.owner, (arith.ConstantOp, quant.ConstantOp))


@dataclass
class FoldConstantOp(RewritePattern):
    """Replace a Pure nn/quant op with constant operands by the constant it evaluates to."""

    interpreter: Interpreter
    max_elements: int

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        if op.dialect_name() not in FOLDABLE_DIALECTS or not op.has_trait(Pure) or op.has_trait(ConstantLike):
            return
        if not op.operands or not all(_is_constant(v) for v in op.operands):
            return
        types = [r.type for r in op.results]
        if not all(isinstance(t, TensorType) and t.element_count() <= self.max_elements for t in types):
            return
        args = tuple(constant_value(v) for v in op.operands)
        try:
            with np.errstate(all="ignore"):  # folding computes what the program would: NaN stays NaN
                results = self.interpreter.run_op(op, args)
        except Exception:  # no implementation, or a numeric failure: leave the op to run later
            return
        new_ops = [materialize_constant(np.asarray(r), t) for r, t in zip(results, types)]  # type: ignore[arg-type]
        if any(c is None for c in new_ops):
            return
        rewriter.replace(op, new_ops)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FoldConstantsPass(ModulePass):
    """Fold every Pure nn/quant op whose operands are all constants into a constant.

    Input: any module. Operands count as constant when defined by `arith.constant`
    (dense) or `quant.constant`. Each such op is evaluated with the reference
    interpreter's implementation of it, then replaced by an `arith.constant` (float or
    integer tensors) or a `quant.constant` (quantized tensors); dead constants are
    removed. Ops whose results have more than `max-elements` elements are kept, so a
    large computation is not turned into a large blob.

    Output: no nn/quant op has only constant operands (up to the size limit).
    Run it after `fuse-qdq`: folding `quant.dequantize` of a weight first would hide
    the DQ -> op -> Q patterns that `fuse-qdq` raises to quant ops.
    """

    name = "fold-constants"

    max_elements: int = 1_000_000

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        pattern = FoldConstantOp(make_interpreter(op), self.max_elements)
        PatternRewriteWalker(pattern).rewrite_module(op)
        dce(op)
