"""`convert-layout`: make the quantized level NHWC, with CMSIS-NN's filter layouts.

The `quant` ops are defined on NCHW tensors (OIHW weights), and a layout is not part of
their meaning: so this pass does not change what any op computes. It changes where the
data lives. Every 4-D quantized value passed between ops becomes NHWC, every convolution
weight becomes a constant in the layout CMSIS-NN reads (OHWI, or [1, KH, KW, C] for a
depthwise filter), and each layout-sensitive op reads them through explicit
`nn.transpose` adaptors, so the interpreter runs the result bit for bit as before:

    %x = nn.transpose %x_nhwc {perm = array<i64: 0, 3, 1, 2>}      NHWC -> NCHW view
    %w = nn.transpose %w_ohwi {perm = array<i64: 0, 3, 1, 2>}      OHWI constant -> OIHW view
    %y = quant.conv2d %x, %w, %b ...
    %y_nhwc = nn.transpose %y {perm = array<i64: 0, 2, 3, 1>}      NCHW -> NHWC

`convert-quant-to-cmsisnn` absorbs the adaptors into the cmsisnn ops, which are NHWC by
definition; only the transposes at the function boundary stay. See `ConvertLayoutPass`.
The layout helpers here are shared with that pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, TensorType, i64
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.transforms.dead_code_elimination import dce
from xdsl.utils.exceptions import VerifyException

from tinymlir.dialects import nn, quant
from tinymlir.dialects.nn import ints, shape_of
from tinymlir.dialects.quant import UniformQuantizedType
from tinymlir.passes.fold_constants import constant_value

TO_NHWC = (0, 2, 3, 1)  # NCHW -> NHWC, and a conv filter OIHW -> OHWI
TO_NCHW = (0, 3, 1, 2)  # NHWC -> NCHW, and OHWI -> OIHW
OIHW_TO_1HWC = (1, 2, 3, 0)  # depthwise filter [C, 1, KH, KW] -> [1, KH, KW, C]


# -- layout helpers (shared with convert-quant-to-cmsisnn) ----------------------------
def inverse(perm: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


def is_quantized(value: SSAValue) -> bool:
    t = value.type
    return isinstance(t, TensorType) and isinstance(t.element_type, UniformQuantizedType)


def transposed_type(t: Attribute, perm: Sequence[int]) -> TensorType:
    """The type of `transpose(value of type t, perm)`; a per-channel axis moves along."""
    assert isinstance(t, TensorType)
    shape = t.get_shape()
    et = t.element_type
    if isinstance(et, UniformQuantizedType) and et.is_per_channel:
        et = UniformQuantizedType(et.storage_name, et.scale_array().tolist(), et.zp_array().tolist(),
                                  axis=list(perm).index(et.axis.data))
    return TensorType(et, [shape[p] for p in perm])


def transpose(value: SSAValue, perm: Sequence[int]) -> nn.TransposeOp:
    op = nn.TransposeOp(value, transposed_type(value.type, perm), perm)
    if value.name_hint:
        op.result.name_hint = value.name_hint + ("_nhwc" if tuple(perm) == TO_NHWC else "")
    return op


def transposed_from(value: SSAValue, perm: Sequence[int]) -> SSAValue | None:
    """`x` if `value` is `nn.transpose x` with this `perm`, else None."""
    owner = value.owner
    if isinstance(owner, nn.TransposeOp) and ints(owner.perm) == tuple(perm):
        return owner.input
    return None


def is_depthwise(op: quant.Conv2dOp) -> bool:
    """A grouped convolution with one input channel per group (`groups` = input channels)."""
    groups = op.groups.value.data
    return groups > 1 and shape_of(op.weight)[1] == 1


def filter_perm(op: quant.Conv2dOp) -> tuple[int, ...]:
    """The permutation from the OIHW weight of `op` to CMSIS-NN's filter layout."""
    return OIHW_TO_1HWC if is_depthwise(op) else TO_NHWC


def moves_no_data(shape: Sequence[int], perm: Sequence[int]) -> bool:
    """Whether transposing a tensor of `shape` by `perm` keeps its elements in memory
    order (it only moves dimensions of size 1), i.e. is a reshape."""
    order = [p for p in perm if shape[p] != 1]
    return order == sorted(order)


def nhwc_input(value: SSAValue, user: Operation) -> tuple[list[Operation], SSAValue]:
    """The NHWC form of the 4-D NCHW `value` for `user`: the source of an NHWC -> NCHW
    adaptor, an NCHW -> NHWC transpose of it made for an earlier user, or a new one."""
    src = transposed_from(value, TO_NCHW)
    if src is not None:
        return [], src
    for use in value.uses:
        t = use.operation
        if isinstance(t, nn.TransposeOp) and ints(t.perm) == TO_NHWC and t.is_before_in_block(user):
            return [], t.result
    op = transpose(value, TO_NHWC)
    return [op], op.result


def can_transpose(t: Attribute, perm: Sequence[int]) -> bool:
    """Whether `nn.transpose` accepts a tensor of type `t` with `perm`. A per-channel
    quantized type whose axis moves (a depthwise filter's, 0 -> 3) needs nn.transpose
    to accept the permuted axis; until its verifier does, such a weight stays as it is."""
    et = t.element_type if isinstance(t, TensorType) else None
    if not (isinstance(et, UniformQuantizedType) and et.is_per_channel) or perm[et.axis.data] == et.axis.data:
        return True
    probe = nn.TransposeOp(SSAValue.get(quant.ConstantOp(np.zeros(t.get_shape(), et.storage_dtype), t)),  # type: ignore[union-attr]
                           transposed_type(t, perm), perm)
    try:
        probe.verify()
    except VerifyException:
        return False
    return True


def permuted_weight(value: SSAValue, perm: Sequence[int]) -> tuple[list[Operation], SSAValue]:
    """`value` in the layout `perm`: the source of an inverse transpose, a permuted copy
    of a constant (per-channel axis and all), or a new transpose."""
    src = transposed_from(value, inverse(perm))
    if src is not None:
        return [], src
    data = constant_value(value)
    if isinstance(value.owner, quant.ConstantOp) and data is not None:
        const = quant.ConstantOp(np.transpose(data, perm), transposed_type(value.type, perm))
        const.result.name_hint = value.name_hint
        return [const], const.result
    op = transpose(value, perm)
    return [op], op.result


def with_operands(op: Operation, operands: Sequence[SSAValue], result_type: Attribute) -> Operation:
    """A copy of the one-result `op` with new operands and result type, same properties."""
    new = type(op).create(operands=list(operands), result_types=[result_type],
                          properties=dict(op.properties), attributes=dict(op.attributes))
    new.results[0].name_hint = op.results[0].name_hint
    return new


def _is_adapted(op: Operation, weight_ok: bool = True) -> bool:
    """Whether a layout-sensitive op already reads NHWC data through adaptors (makes the
    pass idempotent)."""
    if transposed_from(op.operands[0], TO_NCHW) is None or not weight_ok:
        return False
    uses = list(op.results[0].uses)
    return len(uses) == 1 and isinstance(t := uses[0].operation, nn.TransposeOp) and ints(t.perm) == TO_NHWC


def _adapt(op: Operation, rewriter: PatternRewriter, weight: tuple[list[Operation], SSAValue] | None = None) -> None:
    """Rewrite the NCHW `op` to read its first operand (and `weight`) through adaptors
    and hand its result on as NHWC; uses that still need NCHW get a transpose back."""
    ops, x = nhwc_input(op.operands[0], op)
    view = nn.TransposeOp(x, transposed_type(x.type, TO_NCHW), TO_NCHW)
    view.result.name_hint = op.operands[0].name_hint
    operands: list[SSAValue] = [view.result]
    ops.append(view)
    if weight is not None:
        w_ops, w = weight
        w_view = nn.TransposeOp(w, op.operands[1].type, inverse(filter_perm(op)))  # type: ignore[arg-type]
        w_view.result.name_hint = op.operands[1].name_hint
        ops += [*w_ops, w_view]
        operands.append(w_view.result)
    operands += op.operands[len(operands):]
    new = with_operands(op, operands, op.results[0].type)
    out = transpose(new.results[0], TO_NHWC)
    back = nn.TransposeOp(out.result, op.results[0].type, TO_NCHW)
    back.result.name_hint = op.results[0].name_hint
    rewriter.replace(op, [*ops, new, out, back], [back.result])


def _nhwc_operands(values: Sequence[SSAValue], user: Operation) -> tuple[list[Operation], list[SSAValue]] | None:
    """NHWC forms of 4-D operands of a layout-independent op, when at least one of them
    already is NHWC data behind an adaptor (otherwise None: nothing to gain)."""
    if any(len(shape_of(v)) != 4 for v in values):
        return None
    if all(transposed_from(v, TO_NCHW) is None for v in values):
        return None
    ops: list[Operation] = []
    out: list[SSAValue] = []
    for v in values:
        new_ops, x = nhwc_input(v, user)
        ops += new_ops
        out.append(x)
    return ops, out


def _propagate(op: Operation, rewriter: PatternRewriter, operands: Sequence[SSAValue],
               result_perm: Sequence[int] = TO_NHWC, properties: dict[str, Attribute] | None = None) -> None:
    """Run the layout-independent `op` on NHWC operands; its NCHW result becomes a
    transpose of the NHWC one."""
    nhwc = _nhwc_operands(operands, op)
    if nhwc is None:
        return
    ops, values = nhwc
    new = with_operands(op, values, transposed_type(op.results[0].type, result_perm))
    if properties:
        new.properties.update(properties)
    back = nn.TransposeOp(new.results[0], op.results[0].type, inverse(result_perm))
    back.result.name_hint = op.results[0].name_hint
    rewriter.replace(op, [*ops, new, back], [back.result])


# -- layout-sensitive ops: NCHW inside, NHWC outside ------------------------------------
class Conv2dToNHWC(RewritePattern):
    """quant.conv2d: NHWC input and output through adaptors, the weight a constant in
    CMSIS-NN's layout (OHWI, depthwise [1, KH, KW, C]) read through a transpose."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.Conv2dOp, rewriter: PatternRewriter) -> None:
        perm = filter_perm(op)
        movable = can_transpose(op.weight.type, perm)
        if _is_adapted(op, not movable or transposed_from(op.weight, inverse(perm)) is not None):
            return
        _adapt(op, rewriter, permuted_weight(op.weight, perm) if movable else None)


class GlobalAvgPoolToNHWC(RewritePattern):
    """quant.global_avg_pool: NHWC input and [N, 1, 1, C] output through adaptors."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.GlobalAvgPoolOp, rewriter: PatternRewriter) -> None:
        if not _is_adapted(op):
            _adapt(op, rewriter)


class MaxPoolToNHWC(RewritePattern):
    """nn.max_pool of a quantized tensor: NHWC input and output through adaptors."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.MaxPoolOp, rewriter: PatternRewriter) -> None:
        if is_quantized(op.input) and not _is_adapted(op):
            _adapt(op, rewriter)


# -- layout-independent ops: run them on NHWC data ----------------------------------------
class AddToNHWC(RewritePattern):
    """quant.add is element-wise: add the NHWC tensors."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.AddOp, rewriter: PatternRewriter) -> None:
        _propagate(op, rewriter, [op.lhs, op.rhs])


class RequantizeToNHWC(RewritePattern):
    """quant.requantize is element-wise (per-tensor): requantize the NHWC tensor."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.RequantizeOp, rewriter: PatternRewriter) -> None:
        _propagate(op, rewriter, [op.input])


class PadToNHWC(RewritePattern):
    """nn.pad of a quantized 4-D tensor: pad the NHWC tensor (pads permuted)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.PadOp, rewriter: PatternRewriter) -> None:
        if not is_quantized(op.input):
            return
        p = ints(op.pads)
        if len(p) != 8:
            return
        pads = [p[i] for i in TO_NHWC] + [p[4 + i] for i in TO_NHWC]
        _propagate(op, rewriter, [op.input], properties={"pads": nn.int_array(pads)})


class ConcatToNHWC(RewritePattern):
    """nn.concat of quantized 4-D tensors: concatenate the NHWC tensors (axis moved)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.ConcatOp, rewriter: PatternRewriter) -> None:
        if not is_quantized(op.result) or len(shape_of(op.result)) != 4:
            return
        axis = TO_NHWC.index(op.axis.value.data % 4)
        _propagate(op, rewriter, list(op.inputs), properties={"axis": IntegerAttr(axis, i64)})


class FlattenOfNHWC(RewritePattern):
    """nn.flatten of an adaptor that moves no data (a GAP's [N, C, 1, 1]): flatten the
    NHWC tensor itself, same elements in the same order."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.FlattenOp, rewriter: PatternRewriter) -> None:
        src = transposed_from(op.input, TO_NCHW)
        if src is None or not moves_no_data(shape_of(src), TO_NCHW):
            return
        if _flattened_shape(shape_of(src), op.axis.value.data) == shape_of(op.result):
            rewriter.replace(op, nn.FlattenOp(src, op.result.type, op.axis.value.data))
        else:
            rewriter.replace(op, nn.ReshapeOp(src, op.result.type))


class ReshapeOfNHWC(RewritePattern):
    """nn.reshape of an adaptor that moves no data: reshape the NHWC tensor itself."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.ReshapeOp, rewriter: PatternRewriter) -> None:
        src = transposed_from(op.input, TO_NCHW)
        if src is None or not moves_no_data(shape_of(src), TO_NCHW):
            return
        rewriter.replace(op, nn.ReshapeOp(src, op.result.type))


def _flattened_shape(shape: Sequence[int], axis: int) -> tuple[int, int]:
    if axis < 0:
        axis += len(shape)
    return int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64))


class FullyConnectedOfFlattenedNHWC(RewritePattern):
    """quant.fully_connected of `flatten(NHWC -> NCHW adaptor)` with a constant weight:
    flatten the NHWC tensor and permute the weight's columns to match (TFLite's order)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.FullyConnectedOp, rewriter: PatternRewriter) -> None:
        flat = op.input.owner
        if not isinstance(flat, nn.FlattenOp) or flat.axis.value.data != 1 or not op.input.has_one_use():
            return
        src = transposed_from(flat.input, TO_NCHW)
        w = constant_value(op.weight)
        if src is None or w is None or not isinstance(op.weight.owner, quant.ConstantOp):
            return
        n, h, wd, c = shape_of(src)
        m = w.shape[0]
        data = w.reshape(m, c, h, wd).transpose(0, 2, 3, 1).reshape(m, -1)
        new_w = quant.ConstantOp(data, op.weight.type)  # type: ignore[arg-type]
        new_w.result.name_hint = op.weight.name_hint
        new_flat = nn.FlattenOp(src, flat.result.type, 1)
        new_flat.result.name_hint = flat.result.name_hint
        operands = [new_flat.result, new_w.result, *op.operands[2:]]
        rewriter.replace(op, [new_w, new_flat, with_operands(op, operands, op.result.type)])


@dataclass(frozen=True)
class ConvertLayoutPass(ModulePass):
    """Make the quantized level NHWC without changing a single number.

    Input: the quantized level (`quant` ops and `nn` data-movement ops on quantized
    tensors, NCHW as everywhere above), e.g. after `fuse-qdq` or `quantize-ptq`.

    Output: the same program, in which
    - each layout-sensitive op (`quant.conv2d`, `quant.global_avg_pool`, `nn.max_pool`
      of quantized data) reads its input through an `nn.transpose` NHWC -> NCHW and hands
      its result on through a transpose NCHW -> NHWC; a convolution's weight is a
      `quant.constant` in CMSIS-NN's layout (OHWI, or [1, KH, KW, C] for depthwise, the
      per-channel axis permuted with it) read through a transpose;
    - layout-independent ops (`quant.add`, `quant.requantize`, `nn.pad`, `nn.concat`)
      run on the NHWC tensors directly (pads and axis permuted);
    - `nn.flatten` / `nn.reshape` of an [N, C, 1, 1] tensor (a global average pool's)
      reads the NHWC tensor, which holds the same bytes; a `quant.fully_connected` of a
      flattened [N, C, H, W] tensor reads the NHWC one with its weight's columns permuted;
    - at the boundary, a 4-D value coming from elsewhere (the input quantize, a function
      argument) is transposed to NHWC once, and a 4-D value leaving the NHWC world (a
      function result, a dequantize, an op not listed here) is transposed back.
    So the function signature is unchanged and the interpreter gives bitwise the same
    results. `convert-quant-to-cmsisnn` then drops the adaptors. Running the pass twice
    changes nothing the second time.

    Option `to`: the target layout; only "nhwc" (CMSIS-NN's) exists.
    """

    name = "convert-layout"

    to: str = "nhwc"

    def __post_init__(self) -> None:
        if self.to != "nhwc":
            raise ValueError(f"convert-layout: unsupported layout '{self.to}', the only one is 'nhwc'")

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        patterns = GreedyRewritePatternApplier([
            Conv2dToNHWC(), GlobalAvgPoolToNHWC(), MaxPoolToNHWC(), AddToNHWC(), RequantizeToNHWC(),
            PadToNHWC(), ConcatToNHWC(), FlattenOfNHWC(), ReshapeOfNHWC(), FullyConnectedOfFlattenedNHWC(),
        ])
        # One walk in program order: producers are rewritten before their users, which
        # then find the NHWC value behind the producer's adaptor.
        PatternRewriteWalker(patterns, apply_recursively=False).rewrite_module(op)
        dce(op)
