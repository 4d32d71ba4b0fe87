"""`int8-io`: functions take and return int8 tensors instead of float ones (the
`inference_input_type = int8` of TensorFlow Lite), optionally NHWC.

On a microcontroller the camera or sensor driver produces integers; a float interface
would cost 4 bytes per input element and a quantization pass. For every function:

- an f32 tensor argument used only by `quant.quantize` ops of one (per-tensor) type
  becomes an argument of that quantized type, and the quantizes disappear;
- a result computed by a per-tensor `quant.dequantize` is returned before it, quantized.

With `layout=nhwc`, such 4-D arguments and results are NHWC (a `nn.transpose` to and
from the NCHW the quant ops use, which `convert-layout` then cancels), so the C
function reads and writes images in the order cameras deliver them. `layout=nchw` keeps
the model's own order.

Meaning: the function now computes on the stored integers it is given, so it equals
the float function composed with the quantization it dropped (bit for bit, on the
integers the dropped `quant.quantize` would have produced).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import Float32Type, FunctionType, ModuleOp, TensorType
from xdsl.ir import Block, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from tinymlir.dialects import nn, quant
from tinymlir.dialects.quant import UniformQuantizedType
from tinymlir.passes.convert_layout import TO_NCHW, TO_NHWC, transposed_type

LAYOUTS = ("nhwc", "nchw")


def _per_tensor(t) -> bool:
    return isinstance(t, TensorType) and isinstance(t.element_type, UniformQuantizedType) \
        and not t.element_type.is_per_channel


def _quantize_type(arg: SSAValue):
    """The one quantized type all uses of the f32 tensor `arg` quantize it to, or None."""
    if not (isinstance(arg.type, TensorType) and isinstance(arg.type.element_type, Float32Type)):
        return None
    users = [u.operation for u in arg.uses]
    if not users or not all(isinstance(op, quant.QuantizeOp) for op in users):
        return None
    types = {op.result.type for op in users}
    t = next(iter(types))
    return t if len(types) == 1 and _per_tensor(t) else None


@dataclass(frozen=True)
class Int8IOPass(ModulePass):
    """Make function arguments and results quantized int8 tensors where they are only
    quantized / were just dequantized (see the module docstring). Option
    `layout=nhwc|nchw` (default nhwc): the order of 4-D arguments and results."""

    name = "int8-io"

    layout: str = "nhwc"

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"int8-io: layout must be one of {', '.join(LAYOUTS)}, got '{self.layout}'")

    def _nhwc(self, t) -> bool:
        return self.layout == "nhwc" and len(t.get_shape()) == 4

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for f in [o for o in op.walk() if isinstance(o, func.FuncOp)]:
            if f.body.blocks:
                self._function(f)

    def _function(self, f: func.FuncOp) -> None:
        block: Block = f.body.blocks[0]
        for arg in list(block.args):
            qt = _quantize_type(arg)
            if qt is None:
                continue
            users = [u.operation for u in arg.uses]
            new_t = transposed_type(qt, TO_NHWC) if self._nhwc(qt) else qt
            hint = arg.name_hint
            new_arg = Rewriter.replace_value_with_new_type(arg, new_t)  # the integer input
            new_arg.name_hint = hint
            value: SSAValue = new_arg
            if self._nhwc(qt):
                view = nn.TransposeOp(new_arg, qt, TO_NCHW)
                view.result.name_hint = hint
                Rewriter.insert_op(view, InsertPoint.at_start(block))
                value = view.result
            for q in users:
                q.result.replace_all_uses_with(value)
                Rewriter.erase_op(q)
        ret = block.last_op
        assert isinstance(ret, func.ReturnOp)
        outs = []
        for v in ret.arguments:
            owner = v.owner
            if isinstance(owner, quant.DequantizeOp) and _per_tensor(owner.input.type):
                x = owner.input
                if self._nhwc(x.type):
                    t = nn.TransposeOp(x, transposed_type(x.type, TO_NHWC), TO_NHWC)
                    t.result.name_hint = v.name_hint
                    Rewriter.insert_op(t, InsertPoint.before(ret))
                    x = t.result
                outs.append(x)
            else:
                outs.append(v)
        new_ret = func.ReturnOp(*outs)
        Rewriter.replace_op(ret, new_ret)
        for v in list(block.ops):
            if isinstance(v, quant.DequantizeOp) and not v.result.uses:
                Rewriter.erase_op(v)
        f.function_type = FunctionType.from_lists([a.type for a in block.args], [v.type for v in outs])
