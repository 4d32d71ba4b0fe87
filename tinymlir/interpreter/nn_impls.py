"""Numpy semantics of the `nn` dialect (and of `arith.constant` on tensors).

Float ops compute in float64 and store float32, so they are at least as accurate as
onnxruntime's float32 kernels. Data-movement ops work on any dtype, so they also move
the integer storage of quantized tensors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xdsl.dialects import arith
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, TensorType
from xdsl.interpreter import Interpreter, InterpreterFunctions, impl, register_impls

from tinymlir.dialects import nn
from tinymlir.dialects.nn import ints
from tinymlir.interpreter import kernels


def dense_to_numpy(attr: DenseIntOrFPElementsAttr) -> np.ndarray:
    """The values of a dense attribute as a numpy array of its element type."""
    et = attr.get_element_type()
    width = getattr(et, "bitwidth", None) or et.width.data  # type: ignore[union-attr]
    kind = "f" if "Float" in type(et).__name__ else "i"
    dtype = np.dtype("bool") if kind == "i" and width == 1 else np.dtype(f"<{kind}{max(width, 8) // 8}")
    shape = attr.get_shape()
    data = np.frombuffer(attr.data.data, dtype=dtype)
    if data.size == 1 and np.prod(shape) != 1:
        data = np.broadcast_to(data, shape)
    return data.reshape(shape).copy()


def _reshape_to_result(x: np.ndarray, op: nn.FlattenOp | nn.ReshapeOp) -> np.ndarray:
    assert isinstance(op.result.type, TensorType)
    return x.reshape(op.result.type.get_shape())


def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


@register_impls
class NNFunctions(InterpreterFunctions):
    @impl(arith.ConstantOp)
    def run_constant(self, interpreter: Interpreter, op: arith.ConstantOp, args: tuple[Any, ...]):
        value = op.value
        if isinstance(value, DenseIntOrFPElementsAttr):
            return (dense_to_numpy(value),)
        return (value.value.data,)  # type: ignore[union-attr]

    @impl(nn.Conv2dOp)
    def run_conv2d(self, interpreter: Interpreter, op: nn.Conv2dOp, args: tuple[Any, ...]):
        x, w, *b = args
        y = kernels.conv2d(x, w, ints(op.strides), ints(op.pads), ints(op.dilations), op.groups.value.data)
        if b:
            y += b[0].astype(np.float64)[None, :, None, None]
        return (_f32(y),)

    @impl(nn.GemmOp)
    def run_gemm(self, interpreter: Interpreter, op: nn.GemmOp, args: tuple[Any, ...]):
        a, b, *c = (v.astype(np.float64) for v in args)
        a = a.T if op.trans_a.value.data else a
        b = b.T if op.trans_b.value.data else b
        y = op.alpha.value.data * (a @ b)
        if c:
            y = y + op.beta.value.data * c[0]
        return (_f32(y),)

    @impl(nn.MatMulOp)
    def run_matmul(self, interpreter: Interpreter, op: nn.MatMulOp, args: tuple[Any, ...]):
        return (_f32(np.matmul(args[0].astype(np.float64), args[1].astype(np.float64))),)

    @impl(nn.AddOp)
    def run_add(self, interpreter: Interpreter, op: nn.AddOp, args: tuple[Any, ...]):
        return (_f32(args[0] + args[1]),)

    @impl(nn.SubOp)
    def run_sub(self, interpreter: Interpreter, op: nn.SubOp, args: tuple[Any, ...]):
        return (_f32(args[0] - args[1]),)

    @impl(nn.MulOp)
    def run_mul(self, interpreter: Interpreter, op: nn.MulOp, args: tuple[Any, ...]):
        return (_f32(args[0] * args[1]),)

    @impl(nn.DivOp)
    def run_div(self, interpreter: Interpreter, op: nn.DivOp, args: tuple[Any, ...]):
        return (_f32(args[0] / args[1]),)

    @impl(nn.ReluOp)
    def run_relu(self, interpreter: Interpreter, op: nn.ReluOp, args: tuple[Any, ...]):
        return (np.maximum(args[0], np.float32(0)),)

    @impl(nn.ClipOp)
    def run_clip(self, interpreter: Interpreter, op: nn.ClipOp, args: tuple[Any, ...]):
        lo, hi = np.float32(op.min.value.data), np.float32(op.max.value.data)
        return (np.minimum(np.maximum(args[0], lo), hi),)

    @impl(nn.SoftmaxOp)
    def run_softmax(self, interpreter: Interpreter, op: nn.SoftmaxOp, args: tuple[Any, ...]):
        x = args[0].astype(np.float64)
        e = np.exp(x - x.max(axis=op.axis.value.data, keepdims=True))
        return (_f32(e / e.sum(axis=op.axis.value.data, keepdims=True)),)

    @impl(nn.BatchNormOp)
    def run_batch_norm(self, interpreter: Interpreter, op: nn.BatchNormOp, args: tuple[Any, ...]):
        x, scale, bias, mean, var = (v.astype(np.float64) for v in args)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        eps = np.float64(np.float32(op.epsilon.value.data))
        y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * scale.reshape(shape) + bias.reshape(shape)
        return (_f32(y),)

    @impl(nn.GlobalAvgPoolOp)
    def run_global_avg_pool(self, interpreter: Interpreter, op: nn.GlobalAvgPoolOp, args: tuple[Any, ...]):
        x = args[0]
        return (_f32(x.astype(np.float64).mean(axis=tuple(range(2, x.ndim)), keepdims=True)),)

    @impl(nn.AvgPoolOp)
    def run_avg_pool(self, interpreter: Interpreter, op: nn.AvgPoolOp, args: tuple[Any, ...]):
        return (kernels.pool2d(args[0], ints(op.kernel), ints(op.strides), ints(op.pads), "avg",
                               op.count_include_pad.value.data),)

    @impl(nn.MaxPoolOp)
    def run_max_pool(self, interpreter: Interpreter, op: nn.MaxPoolOp, args: tuple[Any, ...]):
        return (kernels.pool2d(args[0], ints(op.kernel), ints(op.strides), ints(op.pads), "max"),)

    @impl(nn.FlattenOp)
    def run_flatten(self, interpreter: Interpreter, op: nn.FlattenOp, args: tuple[Any, ...]):
        return (_reshape_to_result(args[0], op),)

    @impl(nn.ReshapeOp)
    def run_reshape(self, interpreter: Interpreter, op: nn.ReshapeOp, args: tuple[Any, ...]):
        return (_reshape_to_result(args[0], op),)

    @impl(nn.TransposeOp)
    def run_transpose(self, interpreter: Interpreter, op: nn.TransposeOp, args: tuple[Any, ...]):
        return (np.ascontiguousarray(np.transpose(args[0], ints(op.perm))),)

    @impl(nn.ConcatOp)
    def run_concat(self, interpreter: Interpreter, op: nn.ConcatOp, args: tuple[Any, ...]):
        return (np.concatenate(args, axis=op.axis.value.data),)

    @impl(nn.PadOp)
    def run_pad(self, interpreter: Interpreter, op: nn.PadOp, args: tuple[Any, ...]):
        x = args[0]
        p = ints(op.pads)
        widths = [(p[i], p[i + x.ndim]) for i in range(x.ndim)]
        # On a quantized tensor the pad value is a stored integer, as ONNX Pad between Q and DQ.
        return (np.pad(x, widths, constant_values=np.array(op.value.value.data).astype(x.dtype)),)
